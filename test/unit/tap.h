/*
 * tap.h: a minimal TAP producer for the C unit tests.  Each test binary
 * prints "ok N - name" / "not ok N - name" lines and a plan at the end;
 * scripts/run-tests counts them.
 */
#ifndef SYNCPIPE_TAP_H
#define SYNCPIPE_TAP_H

#include <stdio.h>
#include <string.h>
#include <inttypes.h>

static int tap_n, tap_failed;

#define ok(cond, ...) do {						\
	int ok_c_ = !!(cond);						\
	printf("%s %d - ", ok_c_ ? "ok" : "not ok", ++tap_n);		\
	printf(__VA_ARGS__);						\
	printf("\n");							\
	if (!ok_c_) {							\
		tap_failed++;						\
		printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
	}								\
} while (0)

#define is_int(got, want, ...) do {					\
	long long is_g_ = (long long)(got), is_w_ = (long long)(want);	\
	ok(is_g_ == is_w_, __VA_ARGS__);				\
	if (is_g_ != is_w_)						\
		printf("#   got %lld, want %lld\n", is_g_, is_w_);	\
} while (0)

#define is_str(got, want, ...) do {					\
	const char *is_g_ = (got), *is_w_ = (want);			\
	int is_e_ = (is_g_ && is_w_) ? strcmp(is_g_, is_w_) == 0 : is_g_ == is_w_; \
	ok(is_e_, __VA_ARGS__);						\
	if (!is_e_)							\
		printf("#   got '%s', want '%s'\n", is_g_ ? is_g_ : "(null)", \
		    is_w_ ? is_w_ : "(null)");				\
} while (0)

static inline int
tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
