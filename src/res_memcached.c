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

#include "asterisk/app.h"
#include "asterisk/astobj2.h"
#include "asterisk/channel.h"
#include "asterisk/config.h"
#include "asterisk/logger.h"
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
		const struct mcd_server *server = &settings->servers[i];
		ast_str_append(&servers, 0, "%s%s%s%s:%u", i ? ", " : "", strchr(server->host, ':') ? "[" : "",
			server->host, strchr(server->host, ':') ? "]" : "", server->port);
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
	holder->client = mcd_client_create(&settings, err, sizeof(err));
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

static void set_result(struct ast_channel *chan, mcd_rc rc)
{
	pbx_builtin_setvar_helper(chan, "MCDRESULT", mcd_rc_name(rc));
}

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
	rc = mcd_store(holder->client, mode, key, value, strlen(value),
		call_ttl(chan, default_ttl(holder)));
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
	rc = mcd_counter_add(holder->client, args.key, delta, call_ttl(chan, 0), &value);
	if (rc == MCD_SUCCESS) {
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
	rc = mcd_delete(holder->client, data);
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
	pbx_builtin_setvar_helper(chan, args.variable, rc == MCD_SUCCESS ? value : "");
	if (rc == MCD_SUCCESS) {
		mcd_value_free(value);
	}
	log_failure("mcdget", args.key, rc);
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
};

static int unload_module(void)
{
	int res = 0;

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
