/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * dialplan: the functions MCD and MCDCOUNTER and the mcd* applications. Each
 * handler parses its arguments, runs one core operation on the live client,
 * and hands the result to mcd_report (the log and MCDRESULT).
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include "asterisk.h"

#include "asterisk/app.h"
#include "asterisk/astobj2.h"
#include "asterisk/channel.h"
#include "asterisk/logger.h"
#include "asterisk/module.h"
#include "asterisk/pbx.h"
#include "asterisk/strings.h"
#include "asterisk/utils.h"

#include "glue/internal.h"

/* What the channel asks of its writes. */
struct write_options {
	long ttl;                    /* MCDTTL when set and valid, else the fallback */
	int noreply;                 /* MCDNOREPLY is true */
};

/* Read MCDNOREPLY and, for writes that store something (fallback_ttl >= 0), MCDTTL, under
 * one channel lock. An MCDTTL that is not a number in range is logged (escaped: it may hold
 * anything, line breaks included) and not used. */
static struct write_options write_options(struct ast_channel *chan, long fallback_ttl)
{
	struct write_options opts = { .ttl = fallback_ttl, .noreply = 0 };
	char ttl_text[32] = "";

	if (!chan) {
		return opts;
	}
	ast_channel_lock(chan);
	if (fallback_ttl >= 0) {
		ast_copy_string(ttl_text, S_OR(pbx_builtin_getvar_helper(chan, "MCDTTL"), ""),
			sizeof(ttl_text));
	}
	opts.noreply = ast_true(pbx_builtin_getvar_helper(chan, "MCDNOREPLY"));
	ast_channel_unlock(chan);
	if (!ast_strlen_zero(ttl_text) && mcd_parse_long(ttl_text, 0, MCD_TTL_MAX, &opts.ttl)) {
		char shown[MCD_ESCAPED_SIZE(sizeof(ttl_text))];

		ast_log(LOG_WARNING, "MCDTTL '%s' is not a whole number of seconds from 0 to %ld: using %ld\n",
			mcd_escape(ttl_text, strlen(ttl_text), shown, sizeof(shown)), MCD_TTL_MAX, fallback_ttl);
		opts.ttl = fallback_ttl;
	}
	return opts;
}

/* A delete stores nothing: no ttl to read. */
#define NO_TTL -1L

/* How much of a refused number a warning shows (escaped, then cut with "..."). */
#define SHOWN_NUMBER 32

/* --- MCD() --- */

static int mcd_read(struct ast_channel *chan, const char *cmd, char *data, struct ast_str **buf,
	ssize_t len)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	char *value;
	size_t value_len;
	mcd_rc rc;

	ast_str_reset(*buf);
	if (ast_strlen_zero(data)) {
		ast_log(LOG_WARNING, "Syntax: %s(key)\n", cmd);
		return mcd_refuse(chan);
	}
	live = mcd_live_get();
	rc = live ? mcd_get(live->client, data, &value, &value_len) : MCD_NO_SERVERS;
	if (rc == MCD_SUCCESS) {
		ast_str_set_substr(buf, len, value, value_len);
		mcd_value_free(value);
	}
	mcd_report(chan, "MCD read", data, rc);
	return 0;
}

/* Store value under key for MCD() writes and the mcdset family of applications. */
static void store(struct ast_channel *chan, enum mcd_store_mode mode, const char *what,
	const char *key, const char *value)
{
	RAII_VAR(struct mcd_live *, live, mcd_live_get(), ao2_cleanup);
	struct write_options opts;
	mcd_rc rc = MCD_NO_SERVERS;

	if (live) {
		opts = write_options(chan, mcd_client_settings(live->client)->ttl);
		rc = (opts.noreply ? mcd_store_noreply : mcd_store)(live->client, mode, key, value,
			strlen(value), opts.ttl);
	}
	if (rc == MCD_VALUE_TOO_LONG) {
		char shown[MCD_ESCAPED_SIZE(MCD_KEY_MAX)];

		ast_log(LOG_WARNING, "%s '%s': value of %zu bytes is over max_value_length (%ld); nothing written\n",
			what, mcd_escape(key, strlen(key), shown, sizeof(shown)), strlen(value),
			mcd_client_settings(live->client)->max_value_length);
	}
	mcd_report(chan, what, key, rc);
}

static int mcd_write(struct ast_channel *chan, const char *cmd, char *data, const char *value)
{
	if (ast_strlen_zero(data) || !value) {
		ast_log(LOG_WARNING, "Syntax: Set(%s(key)=value)\n", cmd);
		return mcd_refuse(chan);
	}
	store(chan, MCD_STORE_SET, "MCD write", data, value);
	return 0;
}

static struct ast_custom_function mcd_function = {
	.name = "MCD",
	.read2 = mcd_read,
	.write = mcd_write,
};

/* --- MCDCOUNTER() --- */

static int counter_read(struct ast_channel *chan, const char *cmd, char *data,
	struct ast_str **buf, ssize_t len)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	AST_DECLARE_APP_ARGS(args,
		AST_APP_ARG(key);
		AST_APP_ARG(increment);
	);
	struct write_options opts;
	int64_t delta = 0;
	uint64_t value;
	mcd_rc rc = MCD_NO_SERVERS;

	ast_str_reset(*buf);
	AST_STANDARD_APP_ARGS(args, data);
	if (ast_strlen_zero(args.key)) {
		ast_log(LOG_WARNING, "Syntax: %s(key[,increment])\n", cmd);
		return mcd_refuse(chan);
	}
	if (!ast_strlen_zero(args.increment) && mcd_parse_increment(args.increment, &delta)) {
		char key[MCD_ESCAPED_SIZE(MCD_KEY_MAX)], increment[MCD_ESCAPED_SIZE(SHOWN_NUMBER)];

		/* Neither has been checked yet: escaped, so that neither can forge a log line. */
		ast_log(LOG_WARNING, "%s(%s): increment '%s' is not a whole number from -%lld to %lld\n", cmd,
			mcd_escape(args.key, strlen(args.key), key, sizeof(key)),
			mcd_escape(args.increment, strlen(args.increment), increment, sizeof(increment)),
			MCD_INCREMENT_MAX, MCD_INCREMENT_MAX);
		mcd_set_if_changed(chan, "MCDRESULT", mcd_rc_name(MCD_BAD_INCREMENT));
		return 0;
	}
	/* Counters live for ever unless the channel asks otherwise: the configured ttl is for values. */
	opts = write_options(chan, 0);
	live = mcd_live_get();
	if (live && opts.noreply && delta && mcd_client_has_noreply(live->client)) {
		/* Nothing comes back to return: the value stays empty. A read (no step) waits. */
		rc = mcd_counter_add_noreply(live->client, args.key, delta, opts.ttl);
	} else if (live && (rc = mcd_counter_add(live->client, args.key, delta, opts.ttl, &value))
		== MCD_SUCCESS) {
		ast_str_set(buf, len, "%llu", (unsigned long long) value);
	}
	mcd_report(chan, "MCDCOUNTER read", args.key, rc);
	return 0;
}

static int counter_write(struct ast_channel *chan, const char *cmd, char *data, const char *value)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	uint64_t number;
	mcd_rc rc;

	if (ast_strlen_zero(data) || ast_strlen_zero(value) || mcd_parse_uint64(value, &number)) {
		char shown[MCD_ESCAPED_SIZE(SHOWN_NUMBER)];

		ast_log(LOG_WARNING, "Syntax: Set(%s(key)=number), number a whole number from 0; got '%s'\n",
			cmd, mcd_escape(S_OR(value, ""), strlen(S_OR(value, "")), shown, sizeof(shown)));
		return mcd_refuse(chan);
	}
	live = mcd_live_get();
	rc = live ? mcd_counter_set(live->client, data, number, write_options(chan, 0).ttl) : MCD_NO_SERVERS;
	mcd_report(chan, "MCDCOUNTER write", data, rc);
	return 0;
}

static struct ast_custom_function counter_function = {
	.name = "MCDCOUNTER",
	.read2 = counter_read,
	.write = counter_write,
};

/* --- the applications --- */

/* mcdset(key,value) and its siblings: everything after the first comma is the value, as is. */
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
		return mcd_refuse(chan);
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
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	mcd_rc rc;

	if (ast_strlen_zero(data)) {
		ast_log(LOG_WARNING, "Syntax: mcddelete(key)\n");
		return mcd_refuse(chan);
	}
	live = mcd_live_get();
	rc = live ? (write_options(chan, NO_TTL).noreply ? mcd_delete_noreply : mcd_delete)(live->client, data)
		: MCD_NO_SERVERS;
	mcd_report(chan, "mcddelete", data, rc);
	return 0;
}

static int mcdget_exec(struct ast_channel *chan, const char *data)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	char *parse = ast_strdupa(S_OR(data, ""));
	AST_DECLARE_APP_ARGS(args,
		AST_APP_ARG(variable);
		AST_APP_ARG(key);
	);
	char *value = NULL;
	size_t value_len;
	mcd_rc rc;

	AST_STANDARD_APP_ARGS(args, parse);
	if (ast_strlen_zero(args.variable) || ast_strlen_zero(args.key)) {
		ast_log(LOG_WARNING, "Syntax: mcdget(variable,key)\n");
		return mcd_refuse(chan);
	}
	live = mcd_live_get();
	rc = live ? mcd_get(live->client, args.key, &value, &value_len) : MCD_NO_SERVERS;
	/* A failed read empties the variable, as a failed MCD() read returns "". */
	mcd_set_if_changed(chan, args.variable, rc == MCD_SUCCESS ? value : "");
	mcd_value_free(value);
	mcd_report(chan, "mcdget", args.key, rc);
	return 0;
}

/* The longest variable name mcdmget fills, so that "MCDRESULT_" and it fit. */
#define MGET_VARIABLE_MAX 80

/* mcdmget(var1=key1[,var2=key2...]): every key read with one request per server. */
static int mcdmget_exec(struct ast_channel *chan, const char *data)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	char *parse = ast_strdupa(S_OR(data, ""));
	char *pairs[MCD_MGET_MAX + 1];
	char *variables[MCD_MGET_MAX];
	struct mcd_mget_item items[MCD_MGET_MAX];
	unsigned int count = ast_app_separate_args(parse, ',', pairs, ARRAY_LEN(pairs));
	mcd_rc rc = MCD_NO_SERVERS;

	for (unsigned int i = 0; i < count && i < MCD_MGET_MAX; i++) {
		char *key = pairs[i];

		variables[i] = ast_strip(strsep(&key, "="));
		items[i] = (struct mcd_mget_item) { .key = key, .rc = MCD_NO_SERVERS };
		if (ast_strlen_zero(variables[i]) || ast_strlen_zero(key)
			|| strlen(variables[i]) > MGET_VARIABLE_MAX) {
			count = 0;
		}
	}
	if (!count || count > MCD_MGET_MAX) {
		ast_log(LOG_WARNING, "Syntax: mcdmget(variable=key[,variable=key...]), at most %d keys "
			"and variable names of at most %d characters\n", MCD_MGET_MAX, MGET_VARIABLE_MAX);
		return mcd_refuse(chan);
	}
	if ((live = mcd_live_get())) {
		rc = mcd_mget(live->client, items, count);
	}
	for (unsigned int i = 0; i < count; i++) {
		char result_variable[sizeof("MCDRESULT_") + MGET_VARIABLE_MAX];

		/* A key that was not read empties its variable, as mcdget does. */
		mcd_set_if_changed(chan, variables[i], items[i].rc == MCD_SUCCESS ? items[i].value : "");
		snprintf(result_variable, sizeof(result_variable), "MCDRESULT_%s", variables[i]);
		mcd_set_if_changed(chan, result_variable, mcd_rc_name(items[i].rc));
		mcd_report_log("mcdmget", items[i].key, items[i].rc);
		mcd_value_free(items[i].value);
	}
	mcd_set_if_changed(chan, "MCDRESULT", mcd_rc_name(rc));
	return 0;
}

static int mcdtouch_exec(struct ast_channel *chan, const char *data)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
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
		return mcd_refuse(chan);
	}
	live = mcd_live_get();
	rc = live ? mcd_touch(live->client, args.key, ttl) : MCD_NO_SERVERS;
	mcd_report(chan, "mcdtouch", args.key, rc);
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

int mcd_dialplan_init(void)
{
	/* As DB(): a read hands out any value and a counter's read steps it, a write changes what
	 * calls do. The dialplan uses them freely; AMI (Getvar, Setvar) and ARI only where
	 * asterisk.conf says live_dangerously=yes (their users have the Memcached* actions). */
	if (ast_custom_function_register_escalating(&mcd_function, AST_CFE_BOTH)
		|| ast_custom_function_register_escalating(&counter_function, AST_CFE_BOTH)) {
		return -1;
	}
	for (size_t i = 0; i < ARRAY_LEN(applications); i++) {
		if (ast_register_application_xml(applications[i].name, applications[i].exec)) {
			return -1;
		}
	}
	return 0;
}

int mcd_dialplan_cleanup(void)
{
	int res = 0;

	for (size_t i = 0; i < ARRAY_LEN(applications); i++) {
		res |= ast_unregister_application(applications[i].name);
	}
	res |= ast_custom_function_unregister(&counter_function);
	res |= ast_custom_function_unregister(&mcd_function);
	return res;
}
