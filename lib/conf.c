/*
 * conf.c: the imapd.conf reader.
 *
 * The grammar follows what Cyrus 3.6.1 itself accepts (see conf.h); the
 * few places where we are stricter (NUL bytes, very long lines, empty
 * option names, non-regular include files) are errors rather than
 * surprises.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "names.h"

/* An imapd.conf is a few kilobytes; anything this big is not one. */
#define CONF_MAX_FILE		(16 * 1024 * 1024)
#define CONF_MAX_KEY		256

struct conf_ent {
	char		*key;		/* lower case */
	char		*value;
	const char	*file;		/* points into conf->files */
	int		 line;
};

struct conf_seen {
	dev_t		 dev;
	ino_t		 ino;
};

struct conf {
	struct conf_ent	*ents;
	size_t		 nents, cap;
	char		**files;	/* every file read, for messages */
	size_t		 nfiles;
	struct conf_seen *seen;		/* identities of files read */
	size_t		 nseen;
};

/*
 * Option names of Cyrus 3.6.1 (as listed by its cyr_info conf-all),
 * sorted for bsearch.  sasl_* and partition-* are matched by prefix.
 */
static const char *const conf_cyrus_keys[] = {
	"acl_admin_implies_write", "addressbookprefix", "admins",
	"afspts_localrealms", "afspts_mycell", "allowallsubscribe",
	"allowanonymouslogin", "allowapop", "allowdeleted", "allownewnews",
	"allowplaintext", "allowsetacl", "allowusermoves", "altnamespace",
	"altprefix", "annotation_allow_undefined", "annotation_callout",
	"annotation_callout_disable_append", "annotation_db",
	"annotation_db_path", "annotation_definitions",
	"annotation_enable_legacy_commands", "anyoneuseracl",
	"anysievefolder", "aps_topic", "aps_topic_caldav",
	"aps_topic_carddav", "archive_after", "archive_days",
	"archive_enabled", "archive_keepflagged", "archive_maxsize",
	"auditlog", "auth_mech", "autocreate_inbox_folders",
	"autocreate_post", "autocreate_quota", "autocreate_quota_messages",
	"autocreate_sieve_compiled_script", "autocreate_sieve_folders",
	"autocreate_sieve_script", "autocreate_sieve_script_compile",
	"autocreate_sieve_script_compiled", "autocreate_subscribe_folders",
	"autocreate_subscribe_sharedfolders",
	"autocreate_subscribe_sharedfolders_all", "autocreate_users",
	"autocreateinboxfolders", "autocreatequota", "autocreatequotamsg",
	"autoexpunge", "autosievefolders", "autosubscribe_all_sharedfolders",
	"autosubscribeinboxfolders", "autosubscribesharedfolders",
	"backup_compact_maxsize", "backup_compact_minsize",
	"backup_compact_work_threshold", "backup_db", "backup_db_path",
	"backup_keep_previous", "backup_retention", "backup_retention_days",
	"backup_staging_path", "boundary_limit",
	"caldav_accept_invalid_rrules", "caldav_allowattach",
	"caldav_allowcalendaradmin", "caldav_allowscheduling",
	"caldav_create_attach", "caldav_create_default",
	"caldav_create_sched", "caldav_historical_age", "caldav_maxdatetime",
	"caldav_mindatetime", "caldav_realm", "calendar_component_set",
	"calendar_default_displayname", "calendar_user_address_set",
	"calendarprefix", "carddav_allowaddmember",
	"carddav_allowaddressbookadmin", "carddav_realm",
	"carddav_repair_vcard", "caringo_hostname", "caringo_port", "chatty",
	"client_bind", "client_bind_name", "client_timeout",
	"commandmintimer", "configdirectory", "conversations",
	"conversations_counted_flags", "conversations_db",
	"conversations_expire_after", "conversations_expire_days",
	"conversations_keep_existing", "conversations_max_guidexists",
	"conversations_max_guidinfolder", "conversations_max_guidrecords",
	"conversations_max_thread", "createonpost", "crossdomains",
	"crossdomains_onlyother", "cyrus_group", "cyrus_user",
	"dav_lock_timeout", "dav_realm", "davdriveprefix",
	"davnotificationsprefix", "debug", "debug_command",
	"debug_writefail_guid", "defaultacl", "defaultdomain",
	"defaultpartition", "defaultsearchtier", "defaultserver",
	"delete_mode", "delete_unsubscribe", "deletedprefix", "deleteright",
	"disable_shared_namespace", "disable_user_namespace",
	"disconnect_on_vanished_mailbox", "duplicate_db", "duplicate_db_path",
	"duplicatesuppression", "event_content_inclusion_mode",
	"event_content_size", "event_exclude_flags",
	"event_exclude_specialuse", "event_extra_params", "event_groups",
	"event_notifier", "expunge_mode", "failedloginpause",
	"fastmailsharing", "flushseenstate", "foolstupidclients",
	"force_sasl_client_mech", "fulldirhash",
	"generate_compiled_sieve_script", "hashimapspool", "http_h2_altsvc",
	"http_jwt_key_dir", "http_jwt_max_age", "httpallowcompress",
	"httpallowcors", "httpallowedurls", "httpallowtrace",
	"httpcontentmd5", "httpdocroot", "httpkeepalive", "httplogheaders",
	"httpmodules", "httpprettytelemetry", "httptimeout",
	"icalendar_max_size", "idlesocket", "ignorereference", "imapidlepoll",
	"imapidletimeout", "imapidresponse", "imapmagicplus", "imipnotifier",
	"implicit_owner_rights", "improved_mboxlist_sort", "iolog",
	"ischedule_dkim_domain", "ischedule_dkim_key_file",
	"ischedule_dkim_required", "ischedule_dkim_selector",
	"jmap_emailsearch_db_path", "jmap_imagesize_annot",
	"jmap_inlinedcids_annot", "jmap_mail_max_size_attachments_per_email",
	"jmap_max_calls_in_request", "jmap_max_catenate_items",
	"jmap_max_concurrent_requests", "jmap_max_concurrent_upload",
	"jmap_max_delayed_send", "jmap_max_objects_in_get",
	"jmap_max_objects_in_set", "jmap_max_size_blob_set",
	"jmap_max_size_request", "jmap_max_size_upload",
	"jmap_nonstandard_extensions", "jmap_preview_annot",
	"jmap_preview_length", "jmap_pushpoll", "jmap_querycache_max_age",
	"jmap_set_has_attachment", "jmap_vacation",
	"jmappushsubscriptionfolder", "jmapsubmission_deleteonsend",
	"jmapsubmissionfolder", "jmapuploadfolder", "ldap_authz", "ldap_base",
	"ldap_bind_dn", "ldap_ca_dir", "ldap_ca_file", "ldap_ciphers",
	"ldap_client_cert", "ldap_client_key", "ldap_deref",
	"ldap_domain_base_dn", "ldap_domain_filter",
	"ldap_domain_name_attribute", "ldap_domain_result_attribute",
	"ldap_domain_scope", "ldap_filter", "ldap_group_base",
	"ldap_group_filter", "ldap_group_scope", "ldap_id", "ldap_mech",
	"ldap_member_attribute", "ldap_member_base", "ldap_member_filter",
	"ldap_member_method", "ldap_member_scope", "ldap_password",
	"ldap_realm", "ldap_referrals", "ldap_restart", "ldap_sasl",
	"ldap_sasl_authc", "ldap_sasl_authz", "ldap_sasl_mech",
	"ldap_sasl_password", "ldap_sasl_realm", "ldap_scope", "ldap_servers",
	"ldap_size_limit", "ldap_start_tls", "ldap_time_limit",
	"ldap_timeout", "ldap_tls_cacert_dir", "ldap_tls_cacert_file",
	"ldap_tls_cert", "ldap_tls_check_peer", "ldap_tls_ciphers",
	"ldap_tls_key", "ldap_uri", "ldap_user_attribute", "ldap_verify_peer",
	"ldap_version", "literalminus", "lmtp_catchall_mailbox",
	"lmtp_downcase_rcpt", "lmtp_exclude_specialuse",
	"lmtp_fuzzy_mailbox_match", "lmtp_over_quota_perm_failure",
	"lmtp_preparse", "lmtp_strict_quota", "lmtp_strict_rfc2821",
	"lmtpsocket", "lmtptxn_timeout", "lock_debugtime", "loginrealms",
	"loginuseacl", "logtimestamps", "mailbox_default_options",
	"mailbox_initial_flags", "mailbox_legacy_dirs",
	"mailbox_maxmessages_addressbook", "mailbox_maxmessages_calendar",
	"mailbox_maxmessages_email", "mailnotifier",
	"master_bind_errors_fatal", "maxargssize", "maxheaderlines",
	"maxliteral", "maxlogins_per_host", "maxlogins_per_user",
	"maxmessagesize", "maxquoted", "maxword", "mboxkey_db", "mboxlist_db",
	"mboxlist_db_path", "mboxname_lockpath", "metapartition_files",
	"munge8bit", "mupdate_authname", "mupdate_config",
	"mupdate_connections_max", "mupdate_password", "mupdate_port",
	"mupdate_realm", "mupdate_retry_delay", "mupdate_server",
	"mupdate_username", "mupdate_workers_max", "mupdate_workers_maxspare",
	"mupdate_workers_minspare", "mupdate_workers_start", "netscapeurl",
	"newsaddheaders", "newsgroups", "newsmaster", "newspeer",
	"newspostuser", "newsprefix", "newsrc_db_path", "nntptimeout",
	"notesmailbox", "notify_external", "notifysocket",
	"object_storage_dummy_spool", "object_storage_enabled",
	"openio_account", "openio_autocreate", "openio_namespace",
	"openio_proxy_timeout", "openio_rawx_timeout", "openio_verbosity",
	"partition_select_exclude", "partition_select_mode",
	"partition_select_soft_usage_limit", "partition_select_usage_reinit",
	"plaintextloginalert", "plaintextloginpause", "popexpiretime",
	"popminpoll", "poppollpadding", "popsubfolders", "poptimeout",
	"popuseacl", "popuseimapflags", "postmaster", "postspec", "postuser",
	"proc_path", "prometheus_enabled", "prometheus_need_auth",
	"prometheus_stats_dir", "prometheus_update_freq", "proxy_authname",
	"proxy_compress", "proxy_password", "proxy_realm",
	"proxyd_allow_status_referral", "proxyd_disable_mailbox_referrals",
	"proxyservers", "ptloader_sock", "pts_module", "ptscache_db",
	"ptscache_db_path", "ptscache_timeout", "ptskrb5_convert524",
	"ptskrb5_strip_default_realm", "qosmarking", "quota_db",
	"quota_db_path", "quota_use_conversations", "quotawarn",
	"quotawarnkb", "quotawarnmsg", "readonly", "reject8bit",
	"restore_authname", "restore_password", "restore_realm",
	"reverseacls", "reverseuniqueids", "rfc2046_strict", "rfc2047_utf8",
	"rfc3028_strict", "rss_feedlist_template", "rss_feeds", "rss_maxage",
	"rss_maxitems", "rss_maxsynopsis", "rss_realm", "sasl_maximum_layer",
	"sasl_minimum_layer", "search_attachment_extractor_url",
	"search_batchsize", "search_engine", "search_fuzzy_always",
	"search_index_headers", "search_index_language", "search_index_parts",
	"search_index_skip_domains", "search_index_skip_users",
	"search_indexed_db", "search_maxsize", "search_maxtime",
	"search_normalisation_max", "search_query_language",
	"search_queryscan", "search_skipdiacrit", "search_skiphtml",
	"search_snippet_length", "search_stopword_path", "search_whitespace",
	"seenstate_db", "sendmail", "sendmail_auth_id", "serverinfo",
	"serverlist", "serverlist_select_mode",
	"serverlist_select_soft_usage_limit",
	"serverlist_select_usage_reinit", "servername", "sharedprefix",
	"sieve_allowreferrals", "sieve_duplicate_max_expiration",
	"sieve_extensions", "sieve_folder", "sieve_maxscripts",
	"sieve_maxscriptsize", "sieve_sasl_send_unsolicited_capability",
	"sieve_use_lmtp_reject", "sieve_utf8fileinto",
	"sieve_vacation_max_response", "sieve_vacation_min_response",
	"sievedir", "sievenotifier", "sieveusehomedir", "singleinstancestore",
	"skiplist_always_checkpoint", "skiplist_unsafe", "smtp_auth_authname",
	"smtp_auth_password", "smtp_auth_realm", "smtp_backend", "smtp_host",
	"soft_noauth", "sortcache_db", "specialuse_extra",
	"specialuse_nochildren", "specialuse_protect", "specialusealways",
	"sql_database", "sql_engine", "sql_hostnames", "sql_passwd",
	"sql_user", "sql_usessl", "srs_alwaysrewrite", "srs_domain",
	"srs_hashlength", "srs_secrets", "srs_separator", "srvtab",
	"statuscache", "statuscache_db", "statuscache_db_path",
	"submitservers", "subscription_db", "suppress_capabilities",
	"sync_authname", "sync_batchsize", "sync_cache_db",
	"sync_cache_db_path", "sync_host", "sync_log", "sync_log_chain",
	"sync_log_channels", "sync_log_unsuppressable_channels",
	"sync_password", "sync_port", "sync_realm", "sync_reconnect_maxwait",
	"sync_repeat_interval", "sync_rightnow_channel", "sync_shutdown_file",
	"sync_timeout", "sync_try_imap", "syslog_facility", "syslog_prefix",
	"tcp_keepalive", "tcp_keepalive_cnt", "tcp_keepalive_idle",
	"tcp_keepalive_intvl", "telemetry_bysessionid", "temp_path",
	"timeout", "tls_ca_file", "tls_ca_path", "tls_cert_file",
	"tls_cipher_list", "tls_ciphers", "tls_client_ca_dir",
	"tls_client_ca_file", "tls_client_cert", "tls_client_certs",
	"tls_client_key", "tls_crl_file", "tls_eccurve", "tls_key_file",
	"tls_prefer_server_ciphers", "tls_required", "tls_server_ca_dir",
	"tls_server_ca_file", "tls_server_cert", "tls_server_dhparam",
	"tls_server_key", "tls_session_timeout", "tls_sessions_db",
	"tls_sessions_db_path", "tls_versions", "tlscache_db",
	"tlscache_db_path", "uidl_format", "umask", "unix_group_enable",
	"unixhierarchysep", "userdeny_db", "userdeny_db_path",
	"username_tolower", "userprefix", "vcard_max_size", "virtdomains",
	"virusscan_notification_subject", "virusscan_notification_template",
	"websocket_timeout", "xbackup_enabled", "zoneinfo_db",
	"zoneinfo_db_path", "zoneinfo_dir",
};

/*
 * syncpipe's own options, which Cyrus does not know.  Unsorted; add new
 * names before the NULL.
 */
static const char *const conf_own_keys[] = {
	NULL
};

/*
 * Per-host or per-service forms that exist only with a prefix
 * ("<shorthost>_mechs", "<shorthost>_client_cert").
 */
static const char *const conf_suffix_keys[] = {
	"client_cert", "client_key", "mechs", NULL
};

static void conf_err(char *, size_t, const char *, ...)
    __attribute__((format(printf, 3, 4)));

static void
conf_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int
conf_isblank(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int
conf_iskeychar(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* NULL on allocation failure. */
struct conf *
conf_new(void)
{
	return calloc(1, sizeof(struct conf));
}

void
conf_free(struct conf *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nents; i++) {
		free(c->ents[i].key);
		free(c->ents[i].value);
	}
	free(c->ents);
	for (i = 0; i < c->nfiles; i++)
		free(c->files[i]);
	free(c->files);
	free(c->seen);
	free(c);
}

static struct conf_ent *
conf_find(const struct conf *c, const char *key)
{
	size_t i;

	for (i = 0; i < c->nents; i++)
		if (strcasecmp(c->ents[i].key, key) == 0)
			return &c->ents[i];
	return NULL;
}

/* Remember a file name; returns the stored copy or NULL. */
static const char *
conf_addfile(struct conf *c, const char *name)
{
	char **nf, *s;

	if ((s = strdup(name)) == NULL)
		return NULL;
	nf = reallocarray(c->files, c->nfiles + 1, sizeof(*nf));
	if (nf == NULL) {
		free(s);
		return NULL;
	}
	c->files = nf;
	c->files[c->nfiles++] = s;
	return s;
}

static int
conf_append(struct conf *c, const char *key, size_t keylen,
    const char *value, const char *file, int line)
{
	struct conf_ent *ne, *e;
	size_t i, ncap;

	if (c->nents == c->cap) {
		ncap = c->cap ? c->cap * 2 : 32;
		ne = reallocarray(c->ents, ncap, sizeof(*ne));
		if (ne == NULL)
			return -1;
		c->ents = ne;
		c->cap = ncap;
	}
	e = &c->ents[c->nents];
	if ((e->key = strndup(key, keylen)) == NULL)
		return -1;
	if ((e->value = strdup(value)) == NULL) {
		free(e->key);
		return -1;
	}
	for (i = 0; e->key[i] != '\0'; i++)
		e->key[i] = tolower((unsigned char)e->key[i]);
	e->file = file;
	e->line = line;
	c->nents++;
	return 0;
}

/*
 * Set or replace key.  Values set this way have no file; an allocation
 * failure leaves the config unchanged.
 */
void
conf_set(struct conf *c, const char *key, const char *value)
{
	struct conf_ent *e;
	char *v;

	if (c == NULL || key == NULL || value == NULL)
		return;
	if ((e = conf_find(c, key)) != NULL) {
		if ((v = strdup(value)) == NULL)
			return;
		free(e->value);
		e->value = v;
		e->file = NULL;
		e->line = 0;
		return;
	}
	(void)conf_append(c, key, strlen(key), value, NULL, 0);
}

/* Read a regular file of at most CONF_MAX_FILE bytes. */
static char *
conf_slurp(const char *path, size_t *lenp, struct stat *stp, char *err,
    size_t errlen)
{
	struct stat st;
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	ssize_t n;
	int fd;

	/* O_NONBLOCK so that a FIFO cannot hang us before the check. */
	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) == -1) {
		conf_err(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		conf_err(err, errlen, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= CONF_MAX_FILE) {
				conf_err(err, errlen, "%s: file too large",
				    path);
				goto fail;
			}
			cap = cap ? cap * 2 : 4096;
			if ((nb = realloc(buf, cap)) == NULL) {
				conf_err(err, errlen, "%s: out of memory",
				    path);
				goto fail;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			conf_err(err, errlen, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += n;
	}
	close(fd);
	*lenp = len;
	*stp = st;
	return buf;
fail:
	close(fd);
	free(buf);
	return NULL;
}

static int conf_parse_text(struct conf *, const char *, size_t,
    const char *, int, char *, size_t);

/*
 * The include path relative to the directory of the including file.
 * Returns malloc'd memory or NULL.
 */
static char *
conf_include_path(const char *from, const char *path)
{
	const char *slash;
	size_t dirlen, len;
	char *res;

	if (path[0] == '/' || (slash = strrchr(from, '/')) == NULL)
		return strdup(path);
	dirlen = slash - from + 1;
	len = dirlen + strlen(path) + 1;
	if ((res = malloc(len)) == NULL)
		return NULL;
	memcpy(res, from, dirlen);
	strlcpy(res + dirlen, path, len - dirlen);
	return res;
}

/*
 * Include loops and repeats are caught by file identity, which also
 * sees through different spellings of one path.  Cyrus refuses a file
 * included twice even without a loop; so do we.
 */
static int
conf_seen(struct conf *c, const struct stat *st)
{
	struct conf_seen *ns;
	size_t i;

	for (i = 0; i < c->nseen; i++)
		if (c->seen[i].dev == st->st_dev &&
		    c->seen[i].ino == st->st_ino)
			return 1;
	ns = reallocarray(c->seen, c->nseen + 1, sizeof(*ns));
	if (ns == NULL)
		return -1;
	c->seen = ns;
	c->seen[c->nseen].dev = st->st_dev;
	c->seen[c->nseen].ino = st->st_ino;
	c->nseen++;
	return 0;
}

static int
conf_include(struct conf *c, const char *from, int line, const char *path,
    int depth, char *err, size_t errlen)
{
	struct stat st;
	char *full, *text;
	size_t len;
	int rc = -1, seen;

	if (depth >= CONF_MAX_INCLUDE_DEPTH) {
		conf_err(err, errlen, "%s:%d: includes nested too deeply",
		    from, line);
		return -1;
	}
	if ((full = conf_include_path(from, path)) == NULL) {
		conf_err(err, errlen, "%s:%d: out of memory", from, line);
		return -1;
	}
	if ((text = conf_slurp(full, &len, &st, err, errlen)) == NULL) {
		char why[512];

		/* Say where the include came from. */
		strlcpy(why, err, sizeof(why));
		conf_err(err, errlen, "%s:%d: @include: %s", from, line, why);
	} else if ((seen = conf_seen(c, &st)) != 0)
		conf_err(err, errlen, seen == 1 ?
		    "%s:%d: @include: %s: file included twice" :
		    "%s:%d: @include: %s: out of memory", from, line, full);
	else
		rc = conf_parse_text(c, text, len, full, depth + 1, err,
		    errlen);
	free(text);
	free(full);
	return rc;
}

/* One logical line, continuations joined; trims and checks it. */
static int
conf_line(struct conf *c, char *s, const char *file, int line, int depth,
    char *err, size_t errlen)
{
	struct conf_ent *dup;
	char *key, *end, *v;
	size_t keylen;
	int directive;

	while (conf_isblank((unsigned char)*s))
		s++;
	if (*s == '\0' || *s == '#')
		return 0;
	if ((directive = (*s == '@'))) {
		key = ++s;
		while (conf_iskeychar((unsigned char)*s))
			s++;
		if (*s != ':' || s - key != 7 ||
		    strncasecmp(key, "include", 7) != 0) {
			conf_err(err, errlen, "%s:%d: invalid directive",
			    file, line);
			return -1;
		}
		v = s + 1;
	} else {
		key = s;
		while (conf_iskeychar((unsigned char)*s))
			s++;
		if (*s != ':') {
			conf_err(err, errlen, "%s:%d: invalid option name "
			    "(expected \"key: value\")", file, line);
			return -1;
		}
		if (s == key) {
			conf_err(err, errlen, "%s:%d: empty option name",
			    file, line);
			return -1;
		}
		v = s + 1;
	}
	keylen = s - key;
	while (conf_isblank((unsigned char)*v))
		v++;
	end = v + strlen(v);
	while (end > v && conf_isblank((unsigned char)end[-1]))
		end--;
	*end = '\0';
	if (*v == '\0') {
		conf_err(err, errlen, "%s:%d: empty option value", file, line);
		return -1;
	}
	if (directive)
		return conf_include(c, file, line, v, depth, err, errlen);
	if (keylen >= CONF_MAX_KEY) {
		conf_err(err, errlen, "%s:%d: option name too long",
		    file, line);
		return -1;
	}
	key[keylen] = '\0';
	if ((dup = conf_find(c, key)) != NULL) {
		conf_err(err, errlen, "%s:%d: option '%s' given twice "
		    "(first at %s:%d)", file, line, dup->key,
		    dup->file ? dup->file : "(set)", dup->line);
		return -1;
	}
	if (conf_append(c, key, keylen, v, file, line) == -1) {
		conf_err(err, errlen, "%s:%d: out of memory", file, line);
		return -1;
	}
	return 0;
}

/*
 * Split text into logical lines: a backslash right before the newline
 * joins the next physical line verbatim (Cyrus 3.6 does exactly this;
 * it has no indentation-based continuation).
 */
static int
conf_parse_text(struct conf *c, const char *text, size_t len,
    const char *name, int depth, char *err, size_t errlen)
{
	const char *file, *p = text, *end = text + len, *nl;
	char *buf;
	size_t blen, plen;
	int line = 0, start;
	int rc = 0;

	if ((file = conf_addfile(c, name)) == NULL) {
		conf_err(err, errlen, "%s: out of memory", name);
		return -1;
	}
	if ((buf = malloc(CONF_MAX_LINE + 1)) == NULL) {
		conf_err(err, errlen, "%s: out of memory", name);
		return -1;
	}
	while (p < end && rc == 0) {
		blen = 0;
		start = line + 1;
		for (;;) {
			line++;
			nl = memchr(p, '\n', end - p);
			plen = (nl ? nl : end) - p;
			if (memchr(p, '\0', plen) != NULL) {
				conf_err(err, errlen, "%s:%d: NUL byte",
				    file, line);
				rc = -1;
				break;
			}
			if (plen > CONF_MAX_LINE - blen) {
				conf_err(err, errlen, "%s:%d: line longer "
				    "than %d bytes", file, start,
				    CONF_MAX_LINE);
				rc = -1;
				break;
			}
			memcpy(buf + blen, p, plen);
			blen += plen;
			p = nl ? nl + 1 : end;
			if (blen == 0 || buf[blen - 1] != '\\' || nl == NULL)
				break;
			blen--;
			/*
			 * Backslash-newline as the very last bytes: Cyrus
			 * drops the whole unfinished line, and so must we
			 * to read the same file the same way.  Without the
			 * newline the backslash stays (handled above).
			 */
			if (p >= end) {
				blen = 0;
				break;
			}
		}
		if (rc != 0)
			break;
		buf[blen] = '\0';
		rc = conf_line(c, buf, file, start, depth, err, errlen);
	}
	free(buf);
	return rc;
}

/*
 * Parse text as the contents of a file called name.  An @include is read
 * from disk relative to name's directory.
 */
struct conf *
conf_parse(const char *text, size_t len, const char *name, char *err,
    size_t errlen)
{
	struct conf *c;
	char ebuf[256];

	if (err == NULL || errlen == 0) {
		err = ebuf;
		errlen = sizeof(ebuf);
	}
	err[0] = '\0';
	if (name == NULL)
		name = "(config)";
	if ((c = conf_new()) == NULL) {
		conf_err(err, errlen, "%s: out of memory", name);
		return NULL;
	}
	if (conf_parse_text(c, text, len, name, 0, err, errlen) != 0) {
		conf_free(c);
		return NULL;
	}
	return c;
}

/* Read the file at path and everything it includes. */
struct conf *
conf_load(const char *path, char *err, size_t errlen)
{
	struct conf *c;
	struct stat st;
	char ebuf[256], *text;
	size_t len;

	if (err == NULL || errlen == 0) {
		err = ebuf;
		errlen = sizeof(ebuf);
	}
	err[0] = '\0';
	if (path == NULL)
		path = CONF_DEFAULT_PATH;
	if ((text = conf_slurp(path, &len, &st, err, errlen)) == NULL)
		return NULL;
	if ((c = conf_new()) == NULL || conf_seen(c, &st) != 0) {
		conf_err(err, errlen, "%s: out of memory", path);
		conf_free(c);
		free(text);
		return NULL;
	}
	if (conf_parse_text(c, text, len, path, 0, err, errlen) != 0) {
		conf_free(c);
		c = NULL;
	}
	free(text);
	return c;
}

static const struct conf_ent *
conf_lookup(const struct conf *c, const char *prefix, const char *key)
{
	struct conf_ent *e;
	char pk[CONF_MAX_KEY * 2 + 2];

	if (c == NULL || key == NULL)
		return NULL;
	if (prefix != NULL && *prefix != '\0') {
		if ((size_t)snprintf(pk, sizeof(pk), "%s_%s", prefix, key) <
		    sizeof(pk) && (e = conf_find(c, pk)) != NULL)
			return e;
	}
	return conf_find(c, key);
}

/* Where a value came from, for messages. */
static void
conf_where(const struct conf_ent *e, char *buf, size_t len)
{
	if (e->file != NULL)
		snprintf(buf, len, "%s:%d: ", e->file, e->line);
	else
		buf[0] = '\0';
}

/* The value of prefix_key or key, or def; the result lives as long as c. */
const char *
conf_get(const struct conf *c, const char *prefix, const char *key,
    const char *def)
{
	const struct conf_ent *e;

	if ((e = conf_lookup(c, prefix, key)) == NULL)
		return def;
	return e->value;
}

/*
 * Cyrus 3.6.1 decides on the first one or two bytes, case-sensitively:
 * "1", "y...", "t...", "on..." are on; "0", "n...", "f...", "of..." are
 * off.  So "yes", "true", "10" and "tru" are on, "True" and "2" errors.
 */
static int
conf_switch_value(const char *v)
{
	switch (v[0]) {
	case '1': case 'y': case 't':
		return 1;
	case '0': case 'n': case 'f':
		return 0;
	case 'o':
		if (v[1] == 'n')
			return 1;
		if (v[1] == 'f')
			return 0;
		break;
	}
	return -1;
}

/* On, off, def when unset, or -1 with err. */
int
conf_getswitch(const struct conf *c, const char *prefix, const char *key,
    int def, char *err, size_t errlen)
{
	const struct conf_ent *e;
	char where[300];
	int r;

	if ((e = conf_lookup(c, prefix, key)) == NULL)
		return def;
	if ((r = conf_switch_value(e->value)) == -1) {
		conf_where(e, where, sizeof(where));
		conf_err(err, errlen, "%s%s: not a switch: '%s'", where,
		    e->key, e->value);
	}
	return r;
}

/*
 * Like Cyrus: strtoll with base 0, so "0x10" is 16 and "010" is 8, a
 * '+' or '-' sign is allowed and out-of-range values saturate.
 */
int
conf_getint(const struct conf *c, const char *prefix, const char *key,
    int64_t def, int64_t *out, char *err, size_t errlen)
{
	const struct conf_ent *e;
	char where[300], *end;
	long long v;

	if ((e = conf_lookup(c, prefix, key)) == NULL) {
		*out = def;
		return 0;
	}
	errno = 0;
	v = strtoll(e->value, &end, 0);
	if (end == e->value || *end != '\0' ||
	    conf_isblank((unsigned char)e->value[0])) {
		conf_where(e, where, sizeof(where));
		conf_err(err, errlen, "%s%s: not an integer: '%s'", where,
		    e->key, e->value);
		return -1;
	}
	*out = v;
	return 0;
}

static int
conf_unit(char u, int64_t *mult)
{
	switch (u) {
	case 'd':
		*mult = 86400;
		return 0;
	case 'h':
		*mult = 3600;
		return 0;
	case 'm':
		*mult = 60;
		return 0;
	case 's':
		*mult = 1;
		return 0;
	}
	return -1;
}

/*
 * "[-]{digits unit}[digits]": units d, h, m, s (lower case only), may
 * repeat ("1h1h"), a trailing bare number is in defunit.  "-" alone is
 * 0, as Cyrus has it.  -1 for junk or overflow.
 */
static int
conf_parse_duration(const char *s, char defunit, int64_t *out)
{
	int64_t total = 0, n, mult;
	int neg = 0, digits;

	if (*s == '-') {
		neg = 1;
		s++;
	}
	while (*s != '\0') {
		n = 0;
		digits = 0;
		while (*s >= '0' && *s <= '9') {
			if (n > (INT64_MAX - (*s - '0')) / 10)
				return -1;
			n = n * 10 + (*s - '0');
			s++;
			digits++;
		}
		if (digits == 0)
			return -1;
		if (*s == '\0') {
			if (conf_unit(defunit, &mult) == -1)
				return -1;
		} else if (conf_unit(*s++, &mult) == -1)
			return -1;
		if (n > INT64_MAX / mult || total > INT64_MAX - n * mult)
			return -1;
		total += n * mult;
	}
	*out = neg ? -total : total;
	return 0;
}

/* Seconds in *out; def (a duration string) when unset; -1 with err. */
int
conf_getduration(const struct conf *c, const char *prefix, const char *key,
    const char *def, char defunit, int64_t *out, char *err, size_t errlen)
{
	const struct conf_ent *e;
	char where[300];

	if ((e = conf_lookup(c, prefix, key)) == NULL) {
		if (def == NULL) {
			*out = 0;
			return 0;
		}
		if (conf_parse_duration(def, defunit, out) == -1) {
			conf_err(err, errlen, "%s: bad default duration '%s'",
			    key, def);
			return -1;
		}
		return 0;
	}
	if (conf_parse_duration(e->value, defunit, out) == -1) {
		conf_where(e, where, sizeof(where));
		conf_err(err, errlen, "%s%s: not a duration: '%s'", where,
		    e->key, e->value);
		return -1;
	}
	return 0;
}

/* partition-<name>; NULL when name is not a valid partition name. */
const char *
conf_partition_path(const struct conf *c, const char *name)
{
	char key[80];

	if (name == NULL || !partition_name_valid(name))
		return NULL;
	snprintf(key, sizeof(key), "partition-%s", name);
	return conf_get(c, NULL, key, NULL);
}

/* configdirectory, default /var/lib/cyrus. */
const char *
conf_configdir(const struct conf *c)
{
	return conf_get(c, NULL, "configdirectory", "/var/lib/cyrus");
}

/* fn gets file NULL and line 0 for values given with conf_set. */
void
conf_foreach(const struct conf *c, void (*fn)(const char *, const char *,
    const char *, int, void *), void *arg)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->nents; i++)
		fn(c->ents[i].key, c->ents[i].value, c->ents[i].file,
		    c->ents[i].line, arg);
}

static int
conf_keycmp(const void *a, const void *b)
{
	return strcmp(a, *(const char *const *)b);
}

static int
conf_known_plain(const char *key)
{
	size_t i;

	if (strncmp(key, "sasl_", 5) == 0 && key[5] != '\0')
		return 1;
	if (strncmp(key, "partition-", 10) == 0)
		return partition_name_valid(key + 10);
	if (bsearch(key, conf_cyrus_keys, sizeof(conf_cyrus_keys) /
	    sizeof(conf_cyrus_keys[0]), sizeof(conf_cyrus_keys[0]),
	    conf_keycmp) != NULL)
		return 1;
	for (i = 0; conf_own_keys[i] != NULL; i++)
		if (strcmp(key, conf_own_keys[i]) == 0)
			return 1;
	return 0;
}

/*
 * Known as is, or as <prefix>_<known>, where the prefix (a channel,
 * service or host name) may itself hold underscores.
 */
int
conf_known_key(const char *key)
{
	char lk[CONF_MAX_KEY];
	const char *p;
	size_t i;

	if (key == NULL || strlen(key) >= sizeof(lk))
		return 0;
	for (i = 0; key[i] != '\0'; i++)
		lk[i] = tolower((unsigned char)key[i]);
	lk[i] = '\0';
	if (conf_known_plain(lk))
		return 1;
	for (p = strchr(lk, '_'); p != NULL; p = strchr(p + 1, '_')) {
		if (p == lk || p[1] == '\0')
			continue;
		if (conf_known_plain(p + 1))
			return 1;
		for (i = 0; conf_suffix_keys[i] != NULL; i++)
			if (strcmp(p + 1, conf_suffix_keys[i]) == 0)
				return 1;
	}
	return 0;
}
