/*
 * test_transcripts: every GET/APPLY/RESTORE argument and every "* " data
 * line recorded between a real Cyrus sync_client and sync_server must
 * parse, and print back byte for byte (client literals {N+}, server
 * literals {N}).
 *
 * The transcripts show each side's byte stream one wire line per text
 * line, prefixed "C: " or "S: ".  The streams are rebuilt per side and
 * connection and then read with the dlist parser itself, so literal
 * bytes that contain line ends are handled the way the wire has them.
 */
#include <sys/types.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dlist.h"
#include "prot.h"
#include "tap.h"

#define CUT_TAG		"[cyrus-pair: "
#define MAXCUTS		64

struct side {
	char	*buf;
	size_t	 len, cap;
	size_t	 cuts[MAXCUTS];	/* offsets where bytes were elided */
	int	 ncuts;
};

struct counts {
	int	 checked, failed, skipped;
};

static void
side_add(struct side *s, const char *p, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		while (s->len + n + 1 > s->cap)
			s->cap = s->cap ? s->cap * 2 : 65536;
		s->buf = realloc(s->buf, s->cap);
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->buf[s->len] = '\0';
}

/* Show up to 100 bytes of a wire text on one comment line. */
static void
show(const char *what, const char *p, size_t n)
{
	size_t i;

	printf("#   %s: ", what);
	for (i = 0; i < n && i < 100; i++) {
		if (p[i] == '\r')
			printf("\\r");
		else if (p[i] == '\n')
			printf("\\n");
		else if ((unsigned char)p[i] < 0x20 ||
		    (unsigned char)p[i] >= 0x7f)
			printf("\\x%02x", (unsigned char)p[i]);
		else
			putchar(p[i]);
	}
	printf("%s\n", n > 100 ? "..." : "");
}

/* A sink storing file literals in temporary files, for dlist_print. */
static void *
tmp_open(void *arg, const char *part, const char *guid, uint64_t size)
{
	char path[] = "/tmp/test_transcripts.XXXXXX";
	FILE *f;
	int fd;

	if ((fd = mkstemp(path)) < 0)
		return NULL;
	if ((f = fdopen(fd, "w")) == NULL) {
		close(fd);
		unlink(path);
		return NULL;
	}
	/* The path rides along in the handle list of the caller. */
	snprintf((char *)arg, 64, "%s", path);
	return f;
}

static int
tmp_write(void *arg, void *h, const void *buf, size_t n)
{
	return fwrite(buf, 1, n, h) == n ? 0 : -1;
}

static int
tmp_close(void *arg, void *h, int okk, char **pathp)
{
	int r;

	r = fclose(h);
	if (!okk || r != 0) {
		unlink((char *)arg);
		return -1;
	}
	if (pathp != NULL)
		*pathp = strdup((char *)arg);
	return 0;
}

static void
unlink_files(struct dlist *d)
{
	struct dlist *c;

	if (d->kind == DL_FILE && d->file->path != NULL)
		unlink(d->file->path);
	for (c = d->head; c != NULL; c = c->next)
		unlink_files(c);
}

static int
cut_inside(const struct side *s, size_t from, size_t to)
{
	int i;

	for (i = 0; i < s->ncuts; i++)
		if (s->cuts[i] >= from && s->cuts[i] < to)
			return 1;
	return 0;
}

/*
 * Walk one side's stream command by command; client: litplus 1 and
 * GET/APPLY/RESTORE; server: litplus 0 and "* " lines after the banner.
 */
static void
check_side(const char *file, struct side *s, int client, struct counts *k)
{
	char tmpname[64];
	struct dlist_sink sink = { tmp_open, tmp_write, tmp_close, tmpname };
	struct prot *p, *m;
	struct dlist *d;
	char word[64], err[256];
	size_t start, vstart, vend, end, wl, olen;
	const char *out;
	int ch, banner = 1, r;

	if (s->len == 0)
		return;
	p = prot_new_mem(s->buf, s->len);
	while (prot_peek(p) >= 0) {
		start = (size_t)prot_bytes_in(p);
		wl = 0;
		while ((ch = prot_getc(p)) >= 0 && ch != ' ' && ch != '\r' &&
		    ch != '\n') {
			if (wl < sizeof(word) - 1)
				word[wl++] = (char)ch;
		}
		word[wl] = '\0';
		if (ch != ' ') {
			if (ch == '\r')
				(void)prot_getc(p);
			continue;
		}
		if (!client && strcmp(word, "OK") == 0) {
			/* After STARTTLS the banner comes again. */
			if (prot_peek(p) == 'B')
				banner = 1;
			dlist_eatline(p);
			continue;
		}
		if ((client && strcmp(word, "GET") != 0 &&
		    strcmp(word, "APPLY") != 0 &&
		    strcmp(word, "RESTORE") != 0) ||
		    (!client && (strcmp(word, "*") != 0 || banner))) {
			if (!client && strcmp(word, "*") == 0 &&
			    prot_peek(p) == 'O')
				banner = 0;	/* "* OK" ends the banner */
			dlist_eatline(p);
			continue;
		}
		vstart = (size_t)prot_bytes_in(p);
		r = dlist_parse(p, 1, &sink, &d, err, sizeof(err));
		vend = (size_t)prot_bytes_in(p);
		if (r == 0 && dlist_parse_eol(p) < 0) {
			snprintf(err, sizeof(err), "junk after value");
			r = -1;
		}
		if (r < 0)
			dlist_eatline(p);
		end = (size_t)prot_bytes_in(p);
		if (cut_inside(s, start, end)) {
			k->skipped++;
			if (d != NULL) {
				unlink_files(d);
				dlist_free(d);
			}
			continue;
		}
		k->checked++;
		if (r < 0) {
			k->failed++;
			printf("# %s: %s parse error: %s\n", file,
			    client ? "C" : "S", err);
			show("line", s->buf + start, end - start);
			continue;
		}
		m = prot_new_membuf();
		dlist_print(d, 1, m, client);
		out = prot_membuf(m, &olen);
		if (olen != vend - vstart ||
		    memcmp(out, s->buf + vstart, olen) != 0) {
			k->failed++;
			printf("# %s: %s line not reproduced\n", file,
			    client ? "C" : "S");
			for (wl = 0; wl < olen && wl < vend - vstart &&
			    out[wl] == s->buf[vstart + wl]; wl++)
				;
			printf("#   first difference at byte %zu\n", wl);
			wl = wl > 40 ? wl - 40 : 0;
			show("want", s->buf + vstart + wl, vend - vstart - wl);
			show("got ", out + wl, olen - wl);
		}
		prot_free(m);
		unlink_files(d);
		dlist_free(d);
	}
	prot_free(p);
}

static void
side_reset(struct side *s)
{
	s->len = 0;
	s->ncuts = 0;
}

static int
endswith(const char *s, size_t len, const char *tail, size_t *cut)
{
	size_t tl = strlen(tail);

	if (len < tl || memcmp(s + len - tl, tail, tl) != 0)
		return 0;
	*cut = len - tl;
	return 1;
}

/*
 * Append one transcript line (prefix removed) to its side: restore the
 * line end, and stand filler bytes in for an elided literal middle so
 * the literal keeps its announced length.
 */
static void
add_line(struct side *s, char *body, size_t len)
{
	static char filler[4096];
	char *tag, *close;
	size_t n, more;
	const char *eol = "\r\n";

	if (endswith(body, len, "  [LF only]", &n)) {
		len = n;
		eol = "\n";
	} else if (endswith(body, len, "  [no line end]", &n)) {
		len = n;
		eol = "";
	}
	body[len] = '\0';
	tag = strstr(body, CUT_TAG);
	if (tag != NULL && strstr(tag, "elided]") != NULL &&
	    sscanf(tag, CUT_TAG "%zu more bytes", &more) == 1) {
		close = strstr(tag, "elided]") + strlen("elided]");
		side_add(s, body, (size_t)(tag - body));
		if (s->ncuts < MAXCUTS)
			s->cuts[s->ncuts++] = s->len;
		memset(filler, 'x', sizeof(filler));
		while (more > 0) {
			n = more > sizeof(filler) ? sizeof(filler) : more;
			side_add(s, filler, n);
			more -= n;
		}
		side_add(s, close, len - (size_t)(close - body));
	} else
		side_add(s, body, len);
	side_add(s, eol, strlen(eol));
}

static void
check_file(const char *dir, const char *name, struct counts *total)
{
	struct side c = { 0 }, sv = { 0 };
	struct counts k = { 0, 0, 0 };
	char path[1024], *line = NULL;
	size_t cap = 0;
	ssize_t len;
	FILE *f;
	int inwire = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "r")) == NULL) {
		ok(0, "%s: cannot open", name);
		return;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (strncmp(line, "# ----", 6) == 0) {
			inwire = strstr(line, " wire") != NULL;
			continue;
		}
		if (!inwire)
			continue;
		if (strncmp(line, "=== connection", 14) == 0) {
			check_side(name, &c, 1, &k);
			check_side(name, &sv, 0, &k);
			side_reset(&c);
			side_reset(&sv);
			continue;
		}
		if ((strncmp(line, "C: ", 3) != 0 &&
		    strncmp(line, "S: ", 3) != 0))
			continue;	/* pauses and other annotations */
		if (strncmp(line + 3, CUT_TAG, strlen(CUT_TAG)) == 0 &&
		    strstr(line, "elided]") == NULL)
			continue;	/* "compression starts here" */
		add_line(line[0] == 'C' ? &c : &sv, line + 3,
		    (size_t)len - 3);
	}
	check_side(name, &c, 1, &k);
	check_side(name, &sv, 0, &k);
	fclose(f);
	free(line);
	free(c.buf);
	free(sv.buf);
	ok(k.failed == 0 && k.checked > 0,
	    "%s: %d commands reproduced byte for byte", name, k.checked);
	if (k.skipped > 0)
		printf("# %s: %d commands with cut literals skipped\n", name,
		    k.skipped);
	total->checked += k.checked;
	total->failed += k.failed;
	total->skipped += k.skipped;
}

static int
cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
main(void)
{
	struct counts total = { 0, 0, 0 };
	const char *dir;
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, i, l;
	DIR *dp;

	dir = getenv("TRANSCRIPTS_DIR");
	if (dir == NULL || *dir == '\0')
		dir = "../shared/peer/transcripts";
	if ((dp = opendir(dir)) == NULL) {
		ok(0, "transcripts directory %s exists", dir);
		return tap_done();
	}
	while ((e = readdir(dp)) != NULL) {
		l = strlen(e->d_name);
		if (l > 4 && strcmp(e->d_name + l - 4, ".txt") == 0) {
			names = reallocarray(names, n + 1, sizeof(*names));
			names[n++] = strdup(e->d_name);
		}
	}
	closedir(dp);
	ok(n > 0, "%zu transcripts in %s", n, dir);
	qsort(names, n, sizeof(*names), cmpstr);
	for (i = 0; i < n; i++) {
		check_file(dir, names[i], &total);
		free(names[i]);
	}
	free(names);
	printf("# %d commands checked, %d failed, %d skipped (cut)\n",
	    total.checked, total.failed, total.skipped);
	ok(total.checked >= 100 && total.failed == 0,
	    "%d commands checked in total", total.checked);
	return tap_done();
}
