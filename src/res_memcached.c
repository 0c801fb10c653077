/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * Asterisk glue only: loading and reloading memcached.conf, the dialplan
 * functions and applications, MCDRESULT and MCDTTL. Everything that talks
 * to memcached lives in mcd_client.c.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

/*** MODULEINFO
	<depend>memcached</depend>
	<support_level>extended</support_level>
 ***/

#include "asterisk.h"

#include <stdatomic.h>

#include "asterisk/app.h"
#include "asterisk/astobj2.h"
#include "asterisk/channel.h"
#include "asterisk/cli.h"
#include "asterisk/config.h"
#include "asterisk/logger.h"
#include "asterisk/manager.h"
#include "asterisk/module.h"
#include "asterisk/pbx.h"
#include "asterisk/strings.h"
#include "asterisk/utils.h"

#include "mcd_client.h"
#include "mcd_util.h"

#define CONFIG_FILE "memcached.conf"

/*! The live client, swapped whole on reload; a call in flight keeps the one it took. */
struct client_holder {
	struct mcd_client *client;
};

static AO2_GLOBAL_OBJ_STATIC(current_client);

/*! Operation counts since load or "memcached reset stats"; every client counts here. */
static struct mcd_stats stats;

static void client_holder_destroy(void *obj)
{
	struct client_holder *holder = obj;

	mcd_client_destroy(holder->client);
}

/*! Read memcached.conf into settings. Unknown options warn; any bad value fails the whole. */
static int read_settings(struct mcd_settings *settings)
{
	struct ast_flags flags = { 0 };
	struct ast_config *cfg = ast_config_load2(CONFIG_FILE, AST_MODULE, flags);
	const char *category = NULL;
	char err[256];
	int bad = 0;

	mcd_settings_defaults(settings);
	if (cfg == CONFIG_STATUS_FILEINVALID) {
		ast_log(LOG_ERROR, "%s cannot be parsed\n", CONFIG_FILE);
		return -1;
	}
	if (!cfg) {
		ast_log(LOG_NOTICE, "%s not found: using the defaults (server localhost:11211)\n", CONFIG_FILE);
	}
	while (cfg && (category = ast_category_browse(cfg, category))) {
		if (strcasecmp(category, "general")) {
			ast_log(LOG_WARNING, "%s: section [%s] is unknown and ignored; options go in [general]\n",
				CONFIG_FILE, category);
			continue;
		}
		for (struct ast_variable *var = ast_variable_browse(cfg, category); var; var = var->next) {
			switch (mcd_settings_apply(settings, var->name, var->value, err, sizeof(err))) {
			case MCD_CONFIG_OK:
				break;
			case MCD_CONFIG_UNKNOWN_OPTION:
				ast_log(LOG_WARNING, "%s line %d: %s, ignored\n", CONFIG_FILE, var->lineno, err);
				break;
			case MCD_CONFIG_BAD_VALUE:
				ast_log(LOG_ERROR, "%s line %d: %s\n", CONFIG_FILE, var->lineno, err);
				bad = 1;
				break;
			}
		}
	}
	if (cfg) {
		ast_config_destroy(cfg);
	}
	if (!bad && mcd_settings_finish(settings, err, sizeof(err))) {
		ast_log(LOG_ERROR, "%s: %s\n", CONFIG_FILE, err);
		bad = 1;
	}
	return bad ? -1 : 0;
}

static void log_settings(const struct mcd_settings *settings)
{
	struct ast_str *servers = ast_str_alloca(MCD_MAX_SERVERS * (MCD_HOST_LEN + 10));

	for (unsigned int i = 0; i < settings->server_count; i++) {
		char address[MCD_ADDRESS_LEN];
		ast_str_append(&servers, 0, "%s%s", i ? ", " : "", mcd_server_address(&settings->servers[i],
			address));
	}
	ast_verb(2, "res_memcached: servers %s; prefix '%s'; ttl %ld s; %s protocol\n",
		ast_str_buffer(servers), settings->prefix, settings->ttl,
		settings->binary_protocol ? "binary" : "text");
}

/*! Build a client from memcached.conf and make it the live one. On failure the old one stays. */
static int load_client(void)
{
	struct mcd_settings settings;
	struct client_holder *holder;
	char err[256];

	if (read_settings(&settings)) {
		return -1;
	}
	holder = ao2_alloc_options(sizeof(*holder), client_holder_destroy, AO2_ALLOC_OPT_LOCK_NOLOCK);
	if (!holder) {
		return -1;
	}
	holder->client = mcd_client_create(&settings, &stats, err, sizeof(err));
	if (!holder->client) {
		ast_log(LOG_ERROR, "%s: %s\n", CONFIG_FILE, err);
		ao2_ref(holder, -1);
		return -1;
	}
	log_settings(mcd_client_settings(holder->client));
	ao2_global_obj_replace_unref(current_client, holder);
	ao2_ref(holder, -1);
	return 0;
}

/*! Set a channel variable, unless it already holds that value. Setting one publishes
 * a VarSet message, which was the largest cost of an operation (bench/profile.py):
 * a loop of successes needs MCDRESULT set once, a value read again needs no new set. */
static void set_if_changed(struct ast_channel *chan, const char *variable, const char *value)
{
	int unchanged = 0;

	if (chan) {
		const char *current;

		ast_channel_lock(chan);
		current = ast_var_find(ast_channel_varshead(chan), variable);
		unchanged = current && !strcmp(current, value);
		ast_channel_unlock(chan);
	}
	if (!unchanged) {
		pbx_builtin_setvar_helper(chan, variable, value);
	}
}

static void set_result(struct ast_channel *chan, mcd_rc rc)
{
	set_if_changed(chan, "MCDRESULT", mcd_rc_name(rc));
}

/* A dead or hung server makes every call fail: its first failure is logged, the
 * rest within this many seconds are counted and told with the next one logged. */
#define FAULT_LOG_WINDOW 10

static atomic_long fault_logged_at;
static atomic_ulong faults_not_logged;

/*! Log a failed operation, unless it was an ordinary answer such as a miss. */
static void log_failure(const char *what, const char *key, mcd_rc rc)
{
	if (mcd_rc_is_answer(rc)) {
		ast_debug(1, "%s '%s': %s\n", what, key ? key : "", mcd_rc_name(rc));
		return;
	}
	if (key && !mcd_key_bytes_valid(key, strlen(key))) {
		/* Never copy control characters from a key into the log. */
		ast_log(LOG_WARNING, "%s of a key with spaces or control characters refused: %s\n",
			what, mcd_rc_name(rc));
		return;
	}
	if (mcd_rc_is_server_fault(rc) || rc == MCD_SERVER_TEMPORARILY_DISABLED) {
		long now = (long) time(NULL);
		unsigned long skipped;

		if (now - atomic_load(&fault_logged_at) < FAULT_LOG_WINDOW) {
			atomic_fetch_add(&faults_not_logged, 1);
			return;
		}
		atomic_store(&fault_logged_at, now);
		skipped = atomic_exchange(&faults_not_logged, 0);
		if (skipped) {
			ast_log(LOG_WARNING, "%s '%s' failed: %s (and %lu more server failures not logged "
				"since the last one)\n", what, S_OR(key, ""), mcd_rc_name(rc), skipped);
			return;
		}
	}
	ast_log(LOG_WARNING, "%s '%s' failed: %s\n", what, S_OR(key, ""), mcd_rc_name(rc));
}

/*! The ttl for this call: the channel's MCDTTL when set and valid, else fallback. */
static long call_ttl(struct ast_channel *chan, long fallback)
{
	char text[32] = "";
	const char *found;
	long ttl;

	if (chan) {
		ast_channel_lock(chan);
	}
	found = pbx_builtin_getvar_helper(chan, "MCDTTL");
	if (found) {
		ast_copy_string(text, found, sizeof(text));
	}
	if (chan) {
		ast_channel_unlock(chan);
	}
	if (ast_strlen_zero(text)) {
		return fallback;
	}
	if (mcd_parse_long(text, 0, MCD_TTL_MAX, &ttl)) {
		ast_log(LOG_WARNING, "MCDTTL '%s' is not a whole number of seconds from 0 to %ld: using %ld\n",
			text, MCD_TTL_MAX, fallback);
		return fallback;
	}
	return ttl;
}

/*! True when the channel asks for fire-and-forget writes (MCDNOREPLY). */
static int call_noreply(struct ast_channel *chan)
{
	int noreply;

	if (!chan) {
		return 0;
	}
	ast_channel_lock(chan);
	noreply = ast_true(pbx_builtin_getvar_helper(chan, "MCDNOREPLY"));
	ast_channel_unlock(chan);
	return noreply;
}

/*! The live client with a reference held, or NULL (and MCDRESULT set) when there is none. */
static struct client_holder *take_client(struct ast_channel *chan)
{
	struct client_holder *holder = ao2_global_obj_ref(current_client);

	if (!holder) {
		set_result(chan, MCD_NO_SERVERS);
	}
	return holder;
}

static long default_ttl(const struct client_holder *holder)
{
	return mcd_client_settings(holder->client)->ttl;
}

static int mcd_read(struct ast_channel *chan, const char *cmd, char *data, struct ast_str **buf,
	ssize_t len)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	char *value;
	size_t value_len;
	mcd_rc rc;

	ast_str_reset(*buf);
	if (ast_strlen_zero(data)) {
		ast_log(LOG_WARNING, "Syntax: %s(key)\n", cmd);
		set_result(chan, MCD_ARGUMENT_NEEDED);
		return 0;
	}
	if (!(holder = take_client(chan))) {
		return 0;
	}
	rc = mcd_get(holder->client, data, &value, &value_len);
	if (rc == MCD_SUCCESS) {
		ast_str_set_substr(buf, len, value, value_len);
		mcd_value_free(value);
	}
	log_failure("MCD read", data, rc);
	set_result(chan, rc);
	return 0;
}

/*! Store value under key for MCD() writes and the mcdset family of applications. */
static void store(struct ast_channel *chan, enum mcd_store_mode mode, const char *what,
	const char *key, const char *value)
{
	RAII_VAR(struct client_holder *, holder, take_client(chan), ao2_cleanup);
	mcd_rc rc;

	if (!holder) {
		return;
	}
	rc = (call_noreply(chan) ? mcd_store_noreply : mcd_store)(holder->client, mode, key, value,
		strlen(value), call_ttl(chan, default_ttl(holder)));
	if (rc == MCD_VALUE_TOO_LONG) {
		ast_log(LOG_WARNING, "%s '%s': value of %zu bytes is over max_value_length (%ld); nothing written\n",
			what, key, strlen(value), mcd_client_settings(holder->client)->max_value_length);
	} else {
		log_failure(what, key, rc);
	}
	set_result(chan, rc);
}

static int mcd_write(struct ast_channel *chan, const char *cmd, char *data, const char *value)
{
	if (ast_strlen_zero(data) || !value) {
		ast_log(LOG_WARNING, "Syntax: Set(%s(key)=value)\n", cmd);
		set_result(chan, MCD_ARGUMENT_NEEDED);
		return 0;
	}
	store(chan, MCD_STORE_SET, "MCD write", data, value);
	return 0;
}

static struct ast_custom_function mcd_function = {
	.name = "MCD",
	.read2 = mcd_read,
	.write = mcd_write,
};

static int counter_read(struct ast_channel *chan, const char *cmd, char *data,
	struct ast_str **buf, ssize_t len)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	AST_DECLARE_APP_ARGS(args,
		AST_APP_ARG(key);
		AST_APP_ARG(increment);
	);
	int64_t delta = 0;
	uint64_t value;
	mcd_rc rc;

	ast_str_reset(*buf);
	AST_STANDARD_APP_ARGS(args, data);
	if (ast_strlen_zero(args.key)) {
		ast_log(LOG_WARNING, "Syntax: %s(key[,increment])\n", cmd);
		set_result(chan, MCD_ARGUMENT_NEEDED);
		return 0;
	}
	if (!ast_strlen_zero(args.increment) && (mcd_parse_int64(args.increment, &delta)
		|| delta > MCD_INCREMENT_MAX || delta < -MCD_INCREMENT_MAX)) {
		ast_log(LOG_WARNING, "%s(%s): increment '%s' is not a whole number from -%lld to %lld\n",
			cmd, args.key, args.increment, MCD_INCREMENT_MAX, MCD_INCREMENT_MAX);
		set_result(chan, MCD_BAD_INCREMENT);
		return 0;
	}
	if (!(holder = take_client(chan))) {
		return 0;
	}
	/* Counters live for ever unless the channel asks otherwise: the configured ttl is for values. */
	if (call_noreply(chan) && mcd_client_has_noreply(holder->client)) {
		/* Nothing comes back to return: the value stays empty. */
		rc = mcd_counter_add_noreply(holder->client, args.key, delta, call_ttl(chan, 0));
	} else if ((rc = mcd_counter_add(holder->client, args.key, delta, call_ttl(chan, 0), &value))
		== MCD_SUCCESS) {
		ast_str_set(buf, len, "%llu", (unsigned long long) value);
	}
	log_failure("MCDCOUNTER read", args.key, rc);
	set_result(chan, rc);
	return 0;
}

static int counter_write(struct ast_channel *chan, const char *cmd, char *data, const char *value)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	uint64_t number;
	mcd_rc rc;

	if (ast_strlen_zero(data) || ast_strlen_zero(value) || mcd_parse_uint64(value, &number)) {
		ast_log(LOG_WARNING, "Syntax: Set(%s(key)=number), number a whole number from 0; got '%s'\n",
			cmd, S_OR(value, ""));
		set_result(chan, MCD_ARGUMENT_NEEDED);
		return 0;
	}
	if (!(holder = take_client(chan))) {
		return 0;
	}
	rc = mcd_counter_set(holder->client, data, number, call_ttl(chan, 0));
	log_failure("MCDCOUNTER write", data, rc);
	set_result(chan, rc);
	return 0;
}

static struct ast_custom_function counter_function = {
	.name = "MCDCOUNTER",
	.read2 = counter_read,
	.write = counter_write,
};

/*! mcdset(key,value) and its siblings: everything after the first comma is the value, as is. */
static int store_exec(struct ast_channel *chan, const char *data, enum mcd_store_mode mode,
	const char *app)
{
	char *parse = ast_strdupa(S_OR(data, ""));
	AST_DECLARE_APP_ARGS(args,
		AST_APP_ARG(key);
		AST_APP_ARG(value);
	);

	AST_STANDARD_RAW_ARGS(args, parse);
	if (ast_strlen_zero(args.key) || args.argc < 2) {
		ast_log(LOG_WARNING, "Syntax: %s(key,value)\n", app);
		set_result(chan, MCD_ARGUMENT_NEEDED);
		return 0;
	}
	store(chan, mode, app, args.key, args.value);
	return 0;
}

static int mcdset_exec(struct ast_channel *chan, const char *data)
{
	return store_exec(chan, data, MCD_STORE_SET, "mcdset");
}

static int mcdadd_exec(struct ast_channel *chan, const char *data)
{
	return store_exec(chan, data, MCD_STORE_ADD, "mcdadd");
}

static int mcdreplace_exec(struct ast_channel *chan, const char *data)
{
	return store_exec(chan, data, MCD_STORE_REPLACE, "mcdreplace");
}

static int mcdappend_exec(struct ast_channel *chan, const char *data)
{
	return store_exec(chan, data, MCD_STORE_APPEND, "mcdappend");
}

static int mcdprepend_exec(struct ast_channel *chan, const char *data)
{
	return store_exec(chan, data, MCD_STORE_PREPEND, "mcdprepend");
}

static int mcddelete_exec(struct ast_channel *chan, const char *data)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	mcd_rc rc;

	if (ast_strlen_zero(data)) {
		ast_log(LOG_WARNING, "Syntax: mcddelete(key)\n");
		set_result(chan, MCD_ARGUMENT_NEEDED);
		return 0;
	}
	if (!(holder = take_client(chan))) {
		return 0;
	}
	rc = (call_noreply(chan) ? mcd_delete_noreply : mcd_delete)(holder->client, data);
	log_failure("mcddelete", data, rc);
	set_result(chan, rc);
	return 0;
}

static int mcdget_exec(struct ast_channel *chan, const char *data)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	char *parse = ast_strdupa(S_OR(data, ""));
	AST_DECLARE_APP_ARGS(args,
		AST_APP_ARG(variable);
		AST_APP_ARG(key);
	);
	char *value;
	size_t value_len;
	mcd_rc rc;

	AST_STANDARD_APP_ARGS(args, parse);
	if (ast_strlen_zero(args.variable) || ast_strlen_zero(args.key)) {
		ast_log(LOG_WARNING, "Syntax: mcdget(variable,key)\n");
		set_result(chan, MCD_ARGUMENT_NEEDED);
		return 0;
	}
	if (!(holder = take_client(chan))) {
		return 0;
	}
	rc = mcd_get(holder->client, args.key, &value, &value_len);
	/* A failed read empties the variable, as a failed MCD() read returns "". */
	set_if_changed(chan, args.variable, rc == MCD_SUCCESS ? value : "");
	if (rc == MCD_SUCCESS) {
		mcd_value_free(value);
	}
	log_failure("mcdget", args.key, rc);
	set_result(chan, rc);
	return 0;
}

/* "MCDRESULT_" and a variable's name. */
#define MGET_VARIABLE_MAX 80

/*! mcdmget(var1=key1[,var2=key2...]): every key read with one request per server. */
static int mcdmget_exec(struct ast_channel *chan, const char *data)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	char *parse = ast_strdupa(S_OR(data, ""));
	char *pairs[MCD_MGET_MAX + 1];
	char *variables[MCD_MGET_MAX];
	struct mcd_mget_item items[MCD_MGET_MAX];
	unsigned int count = ast_app_separate_args(parse, ',', pairs, ARRAY_LEN(pairs));
	mcd_rc rc;

	for (unsigned int i = 0; i < count && i < MCD_MGET_MAX; i++) {
		char *key = pairs[i];

		variables[i] = ast_strip(strsep(&key, "="));
		items[i].key = key;
		if (ast_strlen_zero(variables[i]) || ast_strlen_zero(key)
			|| strlen(variables[i]) > MGET_VARIABLE_MAX) {
			count = 0;
		}
	}
	if (!count || count > MCD_MGET_MAX) {
		ast_log(LOG_WARNING, "Syntax: mcdmget(variable=key[,variable=key...]), at most %d keys "
			"and variable names of at most %d characters\n", MCD_MGET_MAX, MGET_VARIABLE_MAX);
		set_result(chan, MCD_ARGUMENT_NEEDED);
		return 0;
	}
	if (!(holder = take_client(chan))) {
		return 0;
	}
	rc = mcd_mget(holder->client, items, count);
	for (unsigned int i = 0; i < count; i++) {
		char result_variable[sizeof("MCDRESULT_") + MGET_VARIABLE_MAX];

		/* A key that was not read empties its variable, as mcdget does. */
		set_if_changed(chan, variables[i], items[i].rc == MCD_SUCCESS ? items[i].value : "");
		snprintf(result_variable, sizeof(result_variable), "MCDRESULT_%s", variables[i]);
		set_if_changed(chan, result_variable, mcd_rc_name(items[i].rc));
		log_failure("mcdmget", items[i].key, items[i].rc);
		mcd_value_free(items[i].value);
	}
	set_result(chan, rc);
	return 0;
}

static int mcdtouch_exec(struct ast_channel *chan, const char *data)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	char *parse = ast_strdupa(S_OR(data, ""));
	AST_DECLARE_APP_ARGS(args,
		AST_APP_ARG(key);
		AST_APP_ARG(ttl);
	);
	long ttl;
	mcd_rc rc;

	AST_STANDARD_APP_ARGS(args, parse);
	if (ast_strlen_zero(args.key) || ast_strlen_zero(args.ttl)
		|| mcd_parse_long(args.ttl, 0, MCD_TTL_MAX, &ttl)) {
		ast_log(LOG_WARNING, "Syntax: mcdtouch(key,ttl), ttl in seconds from 0 to %ld\n", MCD_TTL_MAX);
		set_result(chan, MCD_ARGUMENT_NEEDED);
		return 0;
	}
	if (!(holder = take_client(chan))) {
		return 0;
	}
	rc = mcd_touch(holder->client, args.key, ttl);
	log_failure("mcdtouch", args.key, rc);
	set_result(chan, rc);
	return 0;
}

static const struct {
	const char *name;
	int (*exec)(struct ast_channel *chan, const char *data);
} applications[] = {
	{ "mcdset", mcdset_exec },
	{ "mcdadd", mcdadd_exec },
	{ "mcdreplace", mcdreplace_exec },
	{ "mcdappend", mcdappend_exec },
	{ "mcdprepend", mcdprepend_exec },
	{ "mcddelete", mcddelete_exec },
	{ "mcdget", mcdget_exec },
	{ "mcdmget", mcdmget_exec },
	{ "mcdtouch", mcdtouch_exec },
};

/* --- CLI --- */

/*! The live client with a reference held, or NULL after saying so on the console. */
static struct client_holder *cli_client(struct ast_cli_args *a)
{
	struct client_holder *holder = ao2_global_obj_ref(current_client);

	if (!holder) {
		ast_cli(a->fd, "res_memcached has no configuration loaded\n");
	}
	return holder;
}

static char *cli_show_settings(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	const struct mcd_settings *s;

	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached show settings";
		e->usage = "Usage: memcached show settings\n"
			"       Show the settings in use, as read from memcached.conf (password hidden).\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 3) {
		return CLI_SHOWUSAGE;
	}
	if (!(holder = cli_client(a))) {
		return CLI_FAILURE;
	}
	s = mcd_client_settings(holder->client);
	for (unsigned int i = 0; i < s->server_count; i++) {
		char address[MCD_ADDRESS_LEN];
		ast_cli(a->fd, "%-22s %s\n", "server", mcd_server_address(&s->servers[i], address));
	}
	ast_cli(a->fd, "%-22s %s\n", "prefixkey", s->prefix);
	ast_cli(a->fd, "%-22s %ld s\n", "ttl", s->ttl);
	ast_cli(a->fd, "%-22s %s\n", "binary_proto", AST_YESNO(s->binary_protocol));
	ast_cli(a->fd, "%-22s %s\n", "hash", mcd_hash_name(s->hash));
	ast_cli(a->fd, "%-22s %s\n", "distribution",
		s->distribution == MCD_DISTRIBUTION_CONSISTENT ? "consistent" : "modula");
	ast_cli(a->fd, "%-22s %ld bytes\n", "max_value_length", s->max_value_length);
	ast_cli(a->fd, "%-22s %ld ms\n", "connect_timeout", s->connect_timeout_ms);
	ast_cli(a->fd, "%-22s %ld ms\n", "timeout", s->timeout_ms);
	ast_cli(a->fd, "%-22s %ld\n", "server_failure_limit", s->server_failure_limit);
	ast_cli(a->fd, "%-22s %ld s\n", "retry_timeout", s->retry_timeout_s);
	ast_cli(a->fd, "%-22s %s\n", "remove_failed_servers", AST_YESNO(s->remove_failed_servers));
	ast_cli(a->fd, "%-22s %ld\n", "replicas", s->replicas);
	ast_cli(a->fd, "%-22s %ld\n", "pool_size", s->pool_size);
	ast_cli(a->fd, "%-22s %ld s\n", "pool_wait", s->pool_wait_s);
	ast_cli(a->fd, "%-22s %s\n", "username", s->username);
	ast_cli(a->fd, "%-22s %s\n", "password", s->password[0] ? "(set, not shown)" : "");
	ast_cli(a->fd, "%-22s %s\n", "MCDNOREPLY", mcd_client_has_noreply(holder->client) ? "offered"
		: "not offered with SASL or replicas: writes are confirmed");
	return CLI_SUCCESS;
}

static char *cli_show_servers(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	struct mcd_server_report reports[MCD_MAX_SERVERS];
	unsigned int count;

	switch (cmd) {
	case CLI_INIT:
		e->command = "memcached show servers";
		e->usage = "Usage: memcached show servers\n"
			"       Ask every configured memcached for its stats and show them.\n";
		return NULL;
	case CLI_GENERATE:
		return NULL;
	}
	if (a->argc != 3) {
		return CLI_SHOWUSAGE;
	}
	if (!(holder = cli_client(a))) {
		return CLI_FAILURE;
	}
	count = mcd_server_reports(holder->client, reports, ARRAY_LEN(reports));
	ast_cli(a->fd, "%-28s %-10s %-10s %12s %8s %12s %12s\n", "Server", "State", "Version", "Items",
		"Conns", "Hits", "Misses");
	for (unsigned int i = 0; i < count; i++) {
		const struct mcd_server_report *r = &reports[i];
		const char *state = r->resting ? "resting" : (r->answered ? "up" : "no answer");
		if (r->answered) {
			ast_cli(a->fd, "%-28s %-10s %-10s %12llu %8llu %12llu %12llu\n", r->address, state,
				r->version, r->items, r->connections, r->hits, r->misses);
		} else {
			ast_cli(a->fd, "%-28s %-10s\n", r->address, state);
		}
	}
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
		const struct mcd_op_stats *s = &stats.ops[op];
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
	mcd_stats_reset(&stats);
	ast_cli(a->fd, "memcached statistics reset\n");
	return CLI_SUCCESS;
}

/*! memcached get|set|add|delete|incr KEY [VALUE]: one operation, as a dialplan call would do it. */
static char *cli_operation(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	static const char *const choices[] = { "get", "set", "add", "delete", "incr", NULL };
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
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
			"       configured ttl) and show the result.\n";
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
	if (!(holder = cli_client(a))) {
		return CLI_FAILURE;
	}
	if (!strcmp(op, "get")) {
		rc = mcd_get(holder->client, key, &value, &value_len);
		if (rc == MCD_SUCCESS) {
			ast_cli(a->fd, "%s\n", value);
			mcd_value_free(value);
		}
	} else if (!strcmp(op, "set") || !strcmp(op, "add")) {
		rc = mcd_store(holder->client, !strcmp(op, "set") ? MCD_STORE_SET : MCD_STORE_ADD, key,
			a->argv[3], strlen(a->argv[3]), mcd_client_settings(holder->client)->ttl);
	} else if (!strcmp(op, "delete")) {
		rc = mcd_delete(holder->client, key);
	} else {
		if (a->argc == 4 && (mcd_parse_int64(a->argv[3], &delta) || delta > MCD_INCREMENT_MAX
			|| delta < -MCD_INCREMENT_MAX)) {
			rc = MCD_BAD_INCREMENT;
		} else {
			rc = mcd_counter_add(holder->client, key, delta, 0, &number);
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
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
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
	if (!(holder = cli_client(a))) {
		return CLI_FAILURE;
	}
	rc = mcd_flush(holder->client);
	/* Remote consoles carry no user name: the console's uid is what can be said. */
	ast_log(LOG_NOTICE, "memcached flush run from the CLI (console fd %d, uid %d): %s\n", a->fd,
		(int) getuid(), mcd_rc_name(rc));
	ast_cli(a->fd, "%s\n", mcd_rc_name(rc));
	return CLI_SUCCESS;
}

/* --- AMI: the same operations for monitoring and web applications --- */

/*! Open a successful response (the operation's own outcome is in Result:); the caller ends it. */
static void ami_start(struct mansession *s, const struct message *m, mcd_rc rc)
{
	const char *id = astman_get_header(m, "ActionID");

	astman_append(s, "Response: Success\r\n");
	if (!ast_strlen_zero(id)) {
		astman_append(s, "ActionID: %s\r\n", id);
	}
	astman_append(s, "Result: %s\r\n", mcd_rc_name(rc));
}

/*! The live client, or NULL after answering the action with an error. */
static struct client_holder *ami_client(struct mansession *s, const struct message *m)
{
	struct client_holder *holder = ao2_global_obj_ref(current_client);

	if (!holder) {
		astman_send_error(s, m, "res_memcached has no configuration loaded");
	}
	return holder;
}

static int ami_get(struct mansession *s, const struct message *m)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	const char *key = astman_get_header(m, "Key");
	char *value;
	size_t value_len;
	mcd_rc rc;

	if (ast_strlen_zero(key)) {
		astman_send_error(s, m, "Key: is required");
		return 0;
	}
	if (!(holder = ami_client(s, m))) {
		return 0;
	}
	rc = mcd_get(holder->client, key, &value, &value_len);
	if (rc == MCD_SUCCESS && strpbrk(value, "\r\n")) {
		/* A line break would end the AMI message early. */
		mcd_value_free(value);
		astman_send_error(s, m, "The value holds a line break; read it with MCD() instead");
		return 0;
	}
	ami_start(s, m, rc);
	astman_append(s, "Key: %s\r\nValue: %s\r\n\r\n", key, rc == MCD_SUCCESS ? value : "");
	if (rc == MCD_SUCCESS) {
		mcd_value_free(value);
	}
	return 0;
}

static int ami_set(struct mansession *s, const struct message *m)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	const char *key = astman_get_header(m, "Key");
	const char *value = astman_get_header(m, "Value");
	const char *ttl_text = astman_get_header(m, "TTL");
	long ttl;

	if (ast_strlen_zero(key)) {
		astman_send_error(s, m, "Key: is required");
		return 0;
	}
	if (!(holder = ami_client(s, m))) {
		return 0;
	}
	ttl = default_ttl(holder);
	if (!ast_strlen_zero(ttl_text) && mcd_parse_long(ttl_text, 0, MCD_TTL_MAX, &ttl)) {
		astman_send_error(s, m, "TTL: must be a whole number of seconds");
		return 0;
	}
	ami_start(s, m, mcd_store(holder->client, MCD_STORE_SET, key, value, strlen(value), ttl));
	astman_append(s, "\r\n");
	return 0;
}

static int ami_delete(struct mansession *s, const struct message *m)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	const char *key = astman_get_header(m, "Key");

	if (ast_strlen_zero(key)) {
		astman_send_error(s, m, "Key: is required");
		return 0;
	}
	if (!(holder = ami_client(s, m))) {
		return 0;
	}
	ami_start(s, m, mcd_delete(holder->client, key));
	astman_append(s, "\r\n");
	return 0;
}

static int ami_increment(struct mansession *s, const struct message *m)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	const char *key = astman_get_header(m, "Key");
	const char *increment = astman_get_header(m, "Increment");
	int64_t delta = 1;
	uint64_t value = 0;
	mcd_rc rc;

	if (ast_strlen_zero(key)) {
		astman_send_error(s, m, "Key: is required");
		return 0;
	}
	if (!ast_strlen_zero(increment) && (mcd_parse_int64(increment, &delta)
		|| delta > MCD_INCREMENT_MAX || delta < -MCD_INCREMENT_MAX)) {
		astman_send_error(s, m, "Increment: must be a whole number from -4294967295 to 4294967295");
		return 0;
	}
	if (!(holder = ami_client(s, m))) {
		return 0;
	}
	rc = mcd_counter_add(holder->client, key, delta, 0, &value);
	ami_start(s, m, rc);
	if (rc == MCD_SUCCESS) {
		astman_append(s, "Value: %llu\r\n", (unsigned long long) value);
	}
	astman_append(s, "\r\n");
	return 0;
}

static int ami_status(struct mansession *s, const struct message *m)
{
	RAII_VAR(struct client_holder *, holder, NULL, ao2_cleanup);
	struct mcd_server_report reports[MCD_MAX_SERVERS];
	const char *id = astman_get_header(m, "ActionID");
	unsigned int count;
	int events = 0;

	if (!(holder = ami_client(s, m))) {
		return 0;
	}
	count = mcd_server_reports(holder->client, reports, ARRAY_LEN(reports));
	astman_send_listack(s, m, "Memcached status will follow", "start");
	for (unsigned int i = 0; i < count; i++, events++) {
		const struct mcd_server_report *r = &reports[i];
		astman_append(s, "Event: MemcachedServer\r\n");
		if (!ast_strlen_zero(id)) {
			astman_append(s, "ActionID: %s\r\n", id);
		}
		astman_append(s, "Server: %s\r\nState: %s\r\nVersion: %s\r\nItems: %llu\r\n"
			"Connections: %llu\r\nHits: %llu\r\nMisses: %llu\r\n\r\n", r->address,
			r->resting ? "resting" : (r->answered ? "up" : "no answer"), r->version, r->items,
			r->connections, r->hits, r->misses);
	}
	for (int op = 0; op < MCD_OP_COUNT; op++, events++) {
		const struct mcd_op_stats *st = &stats.ops[op];
		unsigned long calls = st->calls;
		astman_append(s, "Event: MemcachedOperation\r\n");
		if (!ast_strlen_zero(id)) {
			astman_append(s, "ActionID: %s\r\n", id);
		}
		astman_append(s, "Operation: %s\r\nCalls: %lu\r\nSucceeded: %lu\r\nMeanMicroseconds: %lu\r\n"
			"WorstMicroseconds: %lu\r\n\r\n", mcd_op_name(op), calls,
			(unsigned long) st->by_result[mcd_result_slot(MCD_SUCCESS)],
			calls ? (unsigned long) st->total_us / calls : 0, (unsigned long) st->worst_us);
	}
	astman_send_list_complete_start(s, m, "MemcachedStatusComplete", events);
	astman_send_list_complete_end(s);
	return 0;
}

static const struct {
	const char *name;
	int authority;
	int (*handler)(struct mansession *s, const struct message *m);
} manager_actions[] = {
	{ "MemcachedGet", EVENT_FLAG_REPORTING, ami_get },
	{ "MemcachedSet", EVENT_FLAG_SYSTEM, ami_set },
	{ "MemcachedDelete", EVENT_FLAG_SYSTEM, ami_delete },
	{ "MemcachedIncrement", EVENT_FLAG_SYSTEM, ami_increment },
	{ "MemcachedStatus", EVENT_FLAG_REPORTING, ami_status },
};

static struct ast_cli_entry cli_commands[] = {
	AST_CLI_DEFINE(cli_show_settings, "Show res_memcached's settings"),
	AST_CLI_DEFINE(cli_show_servers, "Show each memcached server's state and stats"),
	AST_CLI_DEFINE(cli_show_stats, "Show res_memcached's operation counts and times"),
	AST_CLI_DEFINE(cli_reset_stats, "Reset res_memcached's operation counts"),
	AST_CLI_DEFINE(cli_operation, "Run one memcached operation"),
	AST_CLI_DEFINE(cli_flush, "Drop every item on every memcached server"),
};

static int unload_module(void)
{
	int res = 0;

	ast_cli_unregister_multiple(cli_commands, ARRAY_LEN(cli_commands));
	for (size_t i = 0; i < ARRAY_LEN(manager_actions); i++) {
		res |= ast_manager_unregister(manager_actions[i].name);
	}
	for (size_t i = 0; i < ARRAY_LEN(applications); i++) {
		res |= ast_unregister_application(applications[i].name);
	}
	res |= ast_custom_function_unregister(&counter_function);
	res |= ast_custom_function_unregister(&mcd_function);
	ao2_global_obj_release(current_client);
	return res;
}

static int load_module(void)
{
	if (load_client()) {
		ast_log(LOG_ERROR, "res_memcached not loaded: fix %s and load it again\n", CONFIG_FILE);
		return AST_MODULE_LOAD_DECLINE;
	}
	if (ast_custom_function_register(&mcd_function)
		|| ast_custom_function_register(&counter_function)) {
		goto error;
	}
	for (size_t i = 0; i < ARRAY_LEN(applications); i++) {
		if (ast_register_application_xml(applications[i].name, applications[i].exec)) {
			goto error;
		}
	}
	if (ast_cli_register_multiple(cli_commands, ARRAY_LEN(cli_commands))) {
		goto error;
	}
	for (size_t i = 0; i < ARRAY_LEN(manager_actions); i++) {
		if (ast_manager_register_xml(manager_actions[i].name, manager_actions[i].authority,
			manager_actions[i].handler)) {
			goto error;
		}
	}
	return AST_MODULE_LOAD_SUCCESS;

error:
	unload_module();
	return AST_MODULE_LOAD_DECLINE;
}

static int reload_module(void)
{
	if (load_client()) {
		ast_log(LOG_ERROR, "%s not reloaded: the previous configuration stays in use\n", CONFIG_FILE);
		return AST_MODULE_LOAD_DECLINE;
	}
	return AST_MODULE_LOAD_SUCCESS;
}

AST_MODULE_INFO(ASTERISK_GPL_KEY, AST_MODFLAG_DEFAULT, "memcached access for the dialplan",
	.support_level = AST_MODULE_SUPPORT_EXTENDED,
	.load = load_module,
	.unload = unload_module,
	.reload = reload_module,
);
