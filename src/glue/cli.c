/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * cli: the "memcached ..." console commands: settings, servers and
 * statistics, one operation at a time, and flush.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include "asterisk.h"

#include <unistd.h>

#include "asterisk/astobj2.h"
#include "asterisk/cli.h"
#include "asterisk/logger.h"
#include "asterisk/strings.h"
#include "asterisk/utils.h"

#include "glue/internal.h"

/* The console's answer when the module has no client (while it unloads). */
static char *no_client(struct ast_cli_args *a)
{
	ast_cli(a->fd, "res_memcached has no configuration loaded\n");
	return CLI_FAILURE;
}

static char *cli_show_settings(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	const struct mcd_settings *s;
	const struct mcd_option *opt;

	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached show settings";
		e->usage = "Usage: memcached show settings\n"
			"       Show every memcached.conf option as in use (password hidden), with what it does.\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 3) {
		return CLI_SHOWUSAGE;
	}
	if (!(live = mcd_live_get())) {
		return no_client(a);
	}
	s = mcd_client_settings(live->client);
	for (size_t i = 0; (opt = mcd_option_at(i)); i++) {
		char value[MCD_ADDRESS_LEN + 32];

		for (unsigned int n = 0; mcd_option_value(opt, s, n, value, sizeof(value)); n++) {
			char shown[sizeof(value) + 8];

			snprintf(shown, sizeof(shown), "%s%s%s", value, opt->unit[0] ? " " : "", opt->unit);
			ast_cli(a->fd, "%-22s %-24s ; %s\n", opt->name, shown, opt->help);
		}
	}
	ast_cli(a->fd, "%-22s %s\n", "MCDNOREPLY", mcd_client_has_noreply(live->client) ? "offered"
		: "not offered with SASL or replicas: writes are confirmed");
	return CLI_SUCCESS;
}

/* The pools' use: how many connections this Asterisk holds, and may hold, to each server. */
static void show_pools(int fd, struct mcd_client *client)
{
	struct mcd_pool_usage usage[MCD_POOL_KINDS];

	mcd_client_pool_usage(client, usage);
	ast_cli(fd, "Connections of this Asterisk to each server: at most one per pooled handle\n");
	for (int kind = 0; kind < MCD_POOL_KINDS; kind++) {
		if (usage[kind].exists) {
			ast_cli(fd, "  %-16s %u in use, peak %u of %u\n", mcd_pool_name(kind), usage[kind].in_use,
				usage[kind].peak, usage[kind].size);
		}
	}
}

static char *cli_show_servers(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	struct mcd_server_report reports[MCD_MAX_SERVERS];
	unsigned int count;

	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached show servers";
		e->usage = "Usage: memcached show servers\n"
			"       Ask every configured server for its stats and show them, with what it is\n"
			"       (memcached, memcached's proxy, or a proxy without stats such as twemproxy),\n"
			"       and how many connections this Asterisk's pools hold.\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 3) {
		return CLI_SHOWUSAGE;
	}
	if (!(live = mcd_live_get())) {
		return no_client(a);
	}
	count = mcd_server_reports(live->client, reports, ARRAY_LEN(reports));
	ast_cli(a->fd, "%-28s %-14s %-8s %10s %7s %12s %12s  %s\n", "Server", "State", "Version", "Items",
		"Conns", "Hits", "Misses", "Kind");
	for (unsigned int i = 0; i < count; i++) {
		const struct mcd_server_report *r = &reports[i];

		if (r->answered && r->kind == MCD_KIND_MEMCACHED) {
			ast_cli(a->fd, "%-28s %-14s %-8s %10llu %7llu %12llu %12llu  %s\n", r->address,
				mcd_server_state(r), r->version, r->items, r->connections, r->hits, r->misses,
				mcd_server_kind(r));
		} else if (r->answered && r->kind == MCD_KIND_MEMCACHED_PROXY) {
			/* A proxy stores nothing itself: its items and hits would read as the cluster's. */
			ast_cli(a->fd, "%-28s %-14s %-8s %10s %7llu %12s %12s  %s\n", r->address,
				mcd_server_state(r), r->version, "-", r->connections, "-", "-", mcd_server_kind(r));
		} else {
			ast_cli(a->fd, "%-28s %-14s %-8s %10s %7s %12s %12s  %s\n", r->address, mcd_server_state(r),
				"-", "-", "-", "-", "-", mcd_server_kind(r));
		}
	}
	show_pools(a->fd, live->client);
	return CLI_SUCCESS;
}

static char *cli_show_stats(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	struct ast_str *others;

	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached show stats";
		e->usage = "Usage: memcached show stats\n"
			"       Operations since load or \"memcached reset stats\": calls, mean and worst\n"
			"       time, and how many ended with each result other than success.\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 3) {
		return CLI_SHOWUSAGE;
	}
	ast_cli(a->fd, "%-10s %10s %12s %12s  %s\n", "Operation", "Calls", "Mean (us)", "Worst (us)",
		"Other results");
	/* Allocated once: alloca in the loop would grow the stack with every operation. */
	others = ast_str_alloca(512);
	for (int op = 0; op < MCD_OP_COUNT; op++) {
		const struct mcd_op_stats *s = &mcd_module_stats()->ops[op];
		unsigned long calls = s->calls;

		ast_str_reset(others);
		for (int slot = 0; slot < MCD_RESULT_SLOTS; slot++) {
			unsigned long n = s->by_result[slot];
			mcd_rc rc = mcd_result_of_slot(slot);
			if (n && rc != MCD_SUCCESS) {
				ast_str_append(&others, 0, "%s%s=%lu", ast_str_strlen(others) ? " " : "",
					mcd_rc_name(rc), n);
			}
		}
		ast_cli(a->fd, "%-10s %10lu %12lu %12lu%s%s\n", mcd_op_name(op), calls,
			calls ? (unsigned long) s->total_us / calls : 0, (unsigned long) s->worst_us,
			ast_str_strlen(others) ? "  " : "", ast_str_buffer(others));
	}
	return CLI_SUCCESS;
}

static char *cli_reset_stats(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached reset stats";
		e->usage = "Usage: memcached reset stats\n"
			"       Set the counts of \"memcached show stats\" back to zero.\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 3) {
		return CLI_SHOWUSAGE;
	}
	mcd_stats_reset(mcd_module_stats());
	ast_cli(a->fd, "memcached statistics reset\n");
	return CLI_SUCCESS;
}

/* A value as the console shows it: bytes that a terminal would act on (escape sequences, line
 * breaks) are shown escaped, as mcd_escape says. */
static void show_value(int fd, const char *value, size_t len)
{
	char *shown = len < SIZE_MAX / 4 ? ast_malloc(MCD_ESCAPED_SIZE(len)) : NULL;

	if (!shown) {
		ast_cli(fd, "(a value of %zu bytes: no memory to show it)\n", len);
		return;
	}
	ast_cli(fd, "%s\n", mcd_escape(value, len, shown, MCD_ESCAPED_SIZE(len)));
	ast_free(shown);
}

/* memcached get|set|add|delete|incr KEY [VALUE]: one operation, as a dialplan call would do it. */
static char *cli_operation(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	static const char *const choices[] = { "get", "set", "add", "delete", "incr", NULL };
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	const char *op, *key;
	char *value = NULL;
	size_t value_len;
	uint64_t number;
	int64_t delta = 1;
	mcd_rc rc;

	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached {get|set|add|delete|incr}";
		e->usage = "Usage: memcached get KEY\n"
			"       memcached set|add KEY VALUE\n"
			"       memcached delete KEY\n"
			"       memcached incr KEY [INCREMENT]\n"
			"       Run one memcached operation on KEY (prefixkey applies, values use the\n"
			"       configured ttl) and show the result. get shows the value with every byte\n"
			"       other than printable ASCII escaped (\\x1b, \\r, \\n, \\t; a backslash as \\\\),\n"
			"       so that no escape sequence reaches the terminal.\n";
		return NULL;
	case CLI_GENERATE:
		return a->pos == 1 ? ast_cli_complete(a->word, choices, a->n) : NULL;
	}
	if (a->argc < 3 || a->argc > 4) {
		return CLI_SHOWUSAGE;
	}
	op = a->argv[1];
	key = a->argv[2];
	if (((!strcmp(op, "set") || !strcmp(op, "add")) && a->argc != 4)
		|| ((!strcmp(op, "get") || !strcmp(op, "delete")) && a->argc != 3)) {
		return CLI_SHOWUSAGE;
	}
	if (!(live = mcd_live_get())) {
		return no_client(a);
	}
	if (!strcmp(op, "get")) {
		rc = mcd_get(live->client, key, &value, &value_len);
		if (rc == MCD_SUCCESS) {
			show_value(a->fd, value, value_len);
			mcd_value_free(value);
		}
	} else if (!strcmp(op, "set") || !strcmp(op, "add")) {
		rc = mcd_store(live->client, !strcmp(op, "set") ? MCD_STORE_SET : MCD_STORE_ADD, key,
			a->argv[3], strlen(a->argv[3]), mcd_client_settings(live->client)->ttl);
	} else if (!strcmp(op, "delete")) {
		rc = mcd_delete(live->client, key);
	} else {
		if (a->argc == 4 && mcd_parse_increment(a->argv[3], &delta)) {
			rc = MCD_BAD_INCREMENT;
		} else {
			rc = mcd_counter_add(live->client, key, delta, 0, &number);
			if (rc == MCD_SUCCESS) {
				ast_cli(a->fd, "%llu\n", (unsigned long long) number);
			}
		}
	}
	ast_cli(a->fd, "%s\n", mcd_rc_name(rc));
	return CLI_SUCCESS;
}

static char *cli_flush(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	mcd_rc rc;

	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached flush";
		e->usage = "Usage: memcached flush\n"
			"       Drop every item on every configured memcached (all prefixes, all\n"
			"       applications). Asks no confirmation; the log records it.\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 2) {
		return CLI_SHOWUSAGE;
	}
	if (!(live = mcd_live_get())) {
		return no_client(a);
	}
	rc = mcd_flush(live->client);
	/* Remote consoles carry no user name: the console's uid is what can be said. */
	ast_log(LOG_NOTICE, "memcached flush run from the CLI (console fd %d, uid %d): %s\n", a->fd,
		(int) getuid(), mcd_rc_name(rc));
	ast_cli(a->fd, "%s\n", mcd_rc_name(rc));
	return CLI_SUCCESS;
}

static void show_group(const struct mcd_group_report *r, void *arg)
{
	const int fd = *(const int *) arg;
	char category[MCD_ESCAPED_SIZE(MCD_NAME_MAX)], group[MCD_ESCAPED_SIZE(MCD_NAME_MAX)];

	/* Names come from memcached, which any client can write: shown escaped. */
	ast_cli(fd, "%-16s %-32s %8ld %9ld %11ld\n",
		r->category[0] ? mcd_escape(r->category, strlen(r->category), category, sizeof(category)) : "(none)",
		mcd_escape(r->group, strlen(r->group), group, sizeof(group)), r->here, r->cluster, r->published);
}

static char *cli_show_groups(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	struct mcd_coord *coord = mcd_coordination();
	char node[MCD_NAME_MAX + 1];
	unsigned int count;
	int fd;

	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached show groups";
		e->usage = "Usage: memcached show groups\n"
			"       Show every MCDGROUP group with members across the Asterisk servers: this\n"
			"       server's members, the cluster's count, and the sum of what each server counts\n"
			"       there (see the README for when the two differ, and for how long).\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 3) {
		return CLI_SHOWUSAGE;
	}
	if (!(live = mcd_live_get()) || !coord) {
		return no_client(a);
	}
	mcd_coord_node(coord, node, sizeof(node));
	ast_cli(a->fd, "This Asterisk is node '%s'\n", node);
	ast_cli(a->fd, "%-16s %-32s %8s %9s %11s\n", "Category", "Group", "Here", "Cluster", "Published");
	fd = a->fd;
	count = mcd_coord_groups(live->client, coord, show_group, &fd, 10000);
	ast_cli(a->fd, "%u group%s\n", count, count == 1 ? "" : "s");
	return CLI_SUCCESS;
}

static char *cli_reset_group(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	char *group, *category;
	long before, after;
	mcd_rc rc;

	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached reset group";
		e->usage = "Usage: memcached reset group <group>[@<category>]\n"
			"       Set the group's count across the cluster to the sum of the members each\n"
			"       Asterisk server counts there: a repair for what the design does not heal\n"
			"       (memcached evicting keys, say). Logged.\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 4) {
		return CLI_SHOWUSAGE;
	}
	group = ast_strdupa(a->argv[3]);
	if ((category = strchr(group, '@'))) {
		*category++ = '\0';
	}
	rc = mcd_coordination_reset(S_OR(category, ""), group, "the console", &before, &after);
	if (rc == MCD_SUCCESS) {
		ast_cli(a->fd, "%s: %ld member(s) counted before, %ld now\n", mcd_rc_name(rc), before, after);
	} else {
		ast_cli(a->fd, "%s\n", mcd_rc_name(rc));
	}
	return CLI_SUCCESS;
}

static void show_lock(const struct mcd_lock_report *r, void *arg)
{
	const int fd = *(const int *) arg;

	ast_cli(fd, "%-32s %8ld %8ld  %s\n", r->name, r->held_s, r->ttl, r->holder);
}

static char *cli_show_rates(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	struct mcd_rate_seen *seen;
	struct timeval now = ast_tvnow();
	size_t count;

	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached show rates";
		e->usage = "Usage: memcached show rates\n"
			"       Show the MCDRATE limits this server decided on lately, the last decided first:\n"
			"       what counted against each at its last decision (across every Asterisk), and how\n"
			"       many calls this server admitted and refused since.\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 3) {
		return CLI_SHOWUSAGE;
	}
	if (!(seen = ast_malloc(MCD_RATE_BOOK_SIZE * sizeof(*seen)))) {
		return CLI_FAILURE;
	}
	count = mcd_rate_book_list(mcd_rates_book(), seen, MCD_RATE_BOOK_SIZE);
	ast_cli(a->fd, "%-32s %-14s %8s %10s %10s %8s\n", "Name", "Limit", "Count", "Admitted", "Refused", "Last (s)");
	for (size_t i = 0; i < count; i++) {
		char limit[40];

		mcd_rate_describe(&seen[i], limit, sizeof(limit));
		ast_cli(a->fd, "%-32s %-14s %8llu %10llu %10llu %8lld\n", seen[i].name, limit,
			(unsigned long long) seen[i].count, (unsigned long long) seen[i].admitted,
			(unsigned long long) seen[i].refused,
			(long long) (((int64_t) now.tv_sec * 1000 + now.tv_usec / 1000 - seen[i].last_ms) / 1000));
	}
	ast_cli(a->fd, "%zu rate%s\n", count, count == 1 ? "" : "s");
	ast_free(seen);
	return CLI_SUCCESS;
}

static char *cli_show_locks(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	struct mcd_coord *coord = mcd_coordination();
	unsigned int count;
	int fd;

	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached show locks";
		e->usage = "Usage: memcached show locks\n"
			"       Show the MCDLOCK locks this server's channels hold: for how long, for how\n"
			"       long at most (their ttl), and by whom.\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 3) {
		return CLI_SHOWUSAGE;
	}
	if (!coord) {
		return no_client(a);
	}
	ast_cli(a->fd, "%-32s %8s %8s  %s\n", "Lock", "Held (s)", "TTL (s)", "Holder (node, number, channel)");
	fd = a->fd;
	count = mcd_coord_locks(coord, show_lock, &fd);
	ast_cli(a->fd, "%u lock%s\n", count, count == 1 ? "" : "s");
	return CLI_SUCCESS;
}

static struct ast_cli_entry cli_commands[] = {
	AST_CLI_DEFINE(cli_show_settings, "Show res_memcached's settings"),
	AST_CLI_DEFINE(cli_show_servers, "Show each memcached server's state and stats"),
	AST_CLI_DEFINE(cli_show_stats, "Show res_memcached's operation counts and times"),
	AST_CLI_DEFINE(cli_reset_stats, "Reset res_memcached's operation counts"),
	AST_CLI_DEFINE(cli_operation, "Run one memcached operation"),
	AST_CLI_DEFINE(cli_flush, "Drop every item on every memcached server"),
	AST_CLI_DEFINE(cli_show_groups, "Show the MCDGROUP groups across the Asterisk servers"),
	AST_CLI_DEFINE(cli_reset_group, "Set a group's count to what the Asterisk servers count"),
	AST_CLI_DEFINE(cli_show_locks, "Show the MCDLOCK locks this server holds"),
	AST_CLI_DEFINE(cli_show_rates, "Show the MCDRATE limits this server decided on lately"),
};

int mcd_cli_init(void)
{
	return ast_cli_register_multiple(cli_commands, ARRAY_LEN(cli_commands));
}

int mcd_cli_cleanup(void)
{
	return ast_cli_unregister_multiple(cli_commands, ARRAY_LEN(cli_commands));
}
