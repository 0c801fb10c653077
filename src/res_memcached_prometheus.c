/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * res_memcached_prometheus: res_memcached's figures on Asterisk's Prometheus
 * endpoint (res_prometheus), at every scrape. A module of its own because
 * res_prometheus offers no optional API: a module that links its symbols
 * does not load without it, and res_memcached must load everywhere
 * (Asterisk 16 has no res_prometheus). The loader orders the three through
 * .requires, and refuses to unload res_memcached or res_prometheus under it.
 * Only a callback is registered: res_prometheus has no way to unregister a
 * metrics provider, and this module can be unloaded.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

/*** MODULEINFO
	<depend>res_prometheus</depend>
	<depend>res_memcached</depend>
	<support_level>extended</support_level>
 ***/

#include "asterisk.h"

#include <inttypes.h>

#include "asterisk/module.h"
#include "asterisk/res_prometheus.h"
#include "asterisk/strings.h"
#include "asterisk/utils.h"

#include "glue/metrics.h"

/* The length of the valid UTF-8 character at p (RFC 3629: no overlong forms, no surrogates),
 * or 0 when p starts none. Reads no further than a NUL. */
static size_t utf8_length(const unsigned char *p)
{
	unsigned char low = 0x80, high = 0xbf;  /* the second byte's range */
	size_t len;

	if (*p < 0x80) {
		return 1;
	} else if (*p >= 0xc2 && *p <= 0xdf) {
		len = 2;
	} else if (*p >= 0xe0 && *p <= 0xef) {
		len = 3;
		low = *p == 0xe0 ? 0xa0 : 0x80;
		high = *p == 0xed ? 0x9f : 0xbf;
	} else if (*p >= 0xf0 && *p <= 0xf4) {
		len = 4;
		low = *p == 0xf0 ? 0x90 : 0x80;
		high = *p == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (p[1] < low || p[1] > high) {
		return 0;
	}
	for (size_t i = 2; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80) {
			return 0;
		}
	}
	return len;
}

/* The one place that decides how a label value is written: value as the text exposition format
 * wants it, into buf of size bytes. Backslash, double quote and newline are escaped (\\, \", \n);
 * a byte that starts no valid UTF-8 character becomes U+FFFD, as one bad label fails the whole
 * scrape. What does not fit is left out by whole characters: an escape is never cut in two. */
static const char *label_value(char *buf, size_t size, const char *value)
{
	const unsigned char *p = (const unsigned char *) value;
	size_t used = 0;

	while (*p) {
		char piece[4];
		size_t len = utf8_length(p), n;

		if (*p == '\\' || *p == '"' || *p == '\n') {
			piece[0] = '\\';
			piece[1] = *p == '\n' ? 'n' : (char) *p;
			n = 2;
			len = 1;
		} else if (len) {
			memcpy(piece, p, len);
			n = len;
		} else {
			memcpy(piece, "\xef\xbf\xbd", 3);
			n = 3;
			len = 1;
		}
		if (used + n >= size) {
			break;
		}
		memcpy(buf + used, piece, n);
		used += n;
		p += len;
	}
	if (size) {
		buf[used] = '\0';
	}
	return buf;
}

/* Label i of a series: every label of every series goes through label_value. */
static void set_label(struct prometheus_metric *series, int i, const char *name, const char *value)
{
	ast_copy_string(series->labels[i].name, name, sizeof(series->labels[i].name));
	label_value(series->labels[i].value, sizeof(series->labels[i].value), value);
}

/* Series that share a name, help and type, printed as one family. */
struct family {
	struct prometheus_metric *series;
	size_t count, max;
	enum prometheus_metric_type type;
	const char *name;
	const char *help;
};

static int family_init(struct family *f, size_t max, enum prometheus_metric_type type, const char *name,
	const char *help)
{
	*f = (struct family) { .max = max, .type = type, .name = name, .help = help };
	return max && !(f->series = ast_calloc(max, sizeof(*f->series))) ? -1 : 0;
}

/* The next series of the family, its value printf-formatted; NULL when the family is full. */
static struct prometheus_metric *family_add(struct family *f, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

static struct prometheus_metric *family_add(struct family *f, const char *format, ...)
{
	struct prometheus_metric *m;
	va_list ap;

	if (f->count == f->max) {
		return NULL;
	}
	m = &f->series[f->count];
	m->type = f->type;
	m->help = f->help;
	ast_copy_string(m->name, f->name, sizeof(m->name));
	va_start(ap, format);
	vsnprintf(m->value, sizeof(m->value), format, ap);
	va_end(ap);
	if (f->count++) {
		AST_LIST_INSERT_TAIL(&f->series[0].children, m, entry);
	}
	return m;
}

static void family_print(struct family *f, struct ast_str **out)
{
	if (f->count) {
		prometheus_metric_to_string(&f->series[0], out);
	}
	ast_free(f->series);
}

static void operations(const struct mcd_metrics *m, struct ast_str **out)
{
	struct family f;
	size_t total = 0;

	for (unsigned int i = 0; i < m->op_count; i++) {
		total += m->ops[i].result_count;
	}
	if (family_init(&f, total, PROMETHEUS_METRIC_COUNTER, "asterisk_memcached_operations_total",
		"res_memcached operations by kind, result (as in MCDRESULT) and outcome, since the module "
		"loaded or memcached reset stats.")) {
		return;
	}
	for (unsigned int i = 0; i < m->op_count; i++) {
		for (unsigned int r = 0; r < m->ops[i].result_count; r++) {
			struct prometheus_metric *s = family_add(&f, "%" PRIu64, m->ops[i].results[r].calls);

			set_label(s, 0, "operation", m->ops[i].name);
			set_label(s, 1, "result", m->ops[i].results[r].name);
			set_label(s, 2, "outcome", m->ops[i].results[r].outcome);
		}
	}
	family_print(&f, out);
}

/* A histogram: res_prometheus formats counters and gauges only, so its lines are written
 * here, in the text format's rules (cumulative buckets, +Inf equal to _count: the snapshot
 * takes the count from the buckets themselves). */
static void durations(const struct mcd_metrics *m, struct ast_str **out)
{
	static const char name[] = "asterisk_memcached_operation_seconds";

	ast_str_append(out, 0, "# HELP %s Time a res_memcached operation took, as the module measured "
		"it around its memcached call.\n# TYPE %s histogram\n", name, name);
	for (unsigned int i = 0; i < m->op_count; i++) {
		const struct mcd_metrics_op *op = &m->ops[i];
		char operation[PROMETHEUS_MAX_LABEL_LENGTH];

		label_value(operation, sizeof(operation), op->name);
		for (int b = 0; b < MCD_METRICS_BUCKETS; b++) {
			ast_str_append(out, 0, "%s_bucket{operation=\"%s\",le=\"%g\"} %" PRIu64 "\n", name, operation,
				m->bucket_us[b] / 1e6, op->at_most[b]);
		}
		ast_str_append(out, 0, "%s_bucket{operation=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name, operation,
			op->calls);
		ast_str_append(out, 0, "%s_sum{operation=\"%s\"} %.6f\n", name, operation, op->total_us / 1e6);
		ast_str_append(out, 0, "%s_count{operation=\"%s\"} %" PRIu64 "\n", name, operation, op->calls);
	}
}

static void servers(const struct mcd_metrics *m, struct ast_str **out)
{
	struct family up = { 0 }, faults = { 0 };

	if (family_init(&up, m->server_count, PROMETHEUS_METRIC_GAUGE, "asterisk_memcached_server_up",
		"1 when res_memcached's last calls found the server answering, 0 when it rests after "
		"faults, faulted last, or speaks the other protocol.")
		|| family_init(&faults, m->server_count, PROMETHEUS_METRIC_GAUGE,
		"asterisk_memcached_server_faults", "Faults in a row res_memcached met on the server.")) {
		/* Those not reached are still empty. */
		ast_free(up.series);
		ast_free(faults.series);
		return;
	}
	for (unsigned int i = 0; i < m->server_count; i++) {
		struct prometheus_metric *is_up = family_add(&up, "%d", m->servers[i].up);
		struct prometheus_metric *in_a_row = family_add(&faults, "%u", m->servers[i].faults);

		set_label(is_up, 0, "server", m->servers[i].address);
		set_label(in_a_row, 0, "server", m->servers[i].address);
	}
	family_print(&up, out);
	family_print(&faults, out);
}

static void pools(const struct mcd_metrics *m, struct ast_str **out)
{
	struct family in_use = { 0 }, peak = { 0 }, size = { 0 };

	/* Handles, not connections: each pooled libmemcached handle holds up to one connection to
	 * each server, so the names say what is counted. */
	if (family_init(&in_use, m->pool_count, PROMETHEUS_METRIC_GAUGE, "asterisk_memcached_pool_handles_in_use",
		"Pooled libmemcached handles held by calls now; each holds up to one connection to each server.")
		|| family_init(&peak, m->pool_count, PROMETHEUS_METRIC_GAUGE, "asterisk_memcached_pool_handles_peak",
		"The most pooled handles held at once since the configuration was loaded.")
		|| family_init(&size, m->pool_count, PROMETHEUS_METRIC_GAUGE, "asterisk_memcached_pool_size",
		"Pooled handles at most (pool_size).")) {
		ast_free(in_use.series);
		ast_free(peak.series);
		ast_free(size.series);
		return;
	}
	for (unsigned int i = 0; i < m->pool_count; i++) {
		struct prometheus_metric *series[] = {
			family_add(&in_use, "%u", m->pools[i].in_use), family_add(&peak, "%u", m->pools[i].peak),
			family_add(&size, "%u", m->pools[i].size),
		};

		for (size_t j = 0; j < ARRAY_LEN(series); j++) {
			set_label(series[j], 0, "pool", m->pools[i].name);
		}
	}
	family_print(&in_use, out);
	family_print(&peak, out);
	family_print(&size, out);
}

static void coordination(const struct mcd_metrics *m, struct ast_str **out)
{
	struct prometheus_metric members = PROMETHEUS_METRIC_STATIC_INITIALIZATION(PROMETHEUS_METRIC_GAUGE,
		"asterisk_memcached_group_members", "Channels of this Asterisk in MCDGROUP groups.", NULL);
	struct prometheus_metric locks = PROMETHEUS_METRIC_STATIC_INITIALIZATION(PROMETHEUS_METRIC_GAUGE,
		"asterisk_memcached_locks_held", "MCDLOCK locks this Asterisk's channels hold.", NULL);

	set_label(&members, 0, "node", m->node);
	set_label(&locks, 0, "node", m->node);
	snprintf(members.value, sizeof(members.value), "%ld", m->group_members);
	snprintf(locks.value, sizeof(locks.value), "%ld", m->locks_held);
	prometheus_metric_to_string(&members, out);
	prometheus_metric_to_string(&locks, out);
}

static void scrape(struct ast_str **out)
{
	struct mcd_metrics *m = ast_calloc(1, sizeof(*m));

	if (!m) {
		return;
	}
	res_memcached_metrics(m);
	operations(m, out);
	durations(m, out);
	servers(m, out);
	pools(m, out);
	coordination(m, out);
	ast_free(m);
}

static struct prometheus_callback callback = {
	.name = "res_memcached",
	.callback_fn = scrape,
};

static int unload_module(void)
{
	prometheus_callback_unregister(&callback);
	return 0;
}

static int load_module(void)
{
	return prometheus_callback_register(&callback) ? AST_MODULE_LOAD_DECLINE : AST_MODULE_LOAD_SUCCESS;
}

AST_MODULE_INFO(ASTERISK_GPL_KEY, AST_MODFLAG_DEFAULT, "res_memcached's figures for Prometheus",
	.support_level = AST_MODULE_SUPPORT_EXTENDED,
	.load = load_module,
	.unload = unload_module,
	.requires = "res_memcached,res_prometheus",
);
