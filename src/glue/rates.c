/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * rates: MCDRATE, a limit on calls per period shared by every Asterisk that
 * uses the same memcached (the counting is the core's, core/rates.c). Besides
 * its answer it sets MCDRATE_COUNT (what counts against the limit now) and
 * MCDRATE_RETRY (whole seconds until a place frees, for a Retry-After).
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include "asterisk.h"

#include "asterisk/app.h"
#include "asterisk/astobj2.h"
#include "asterisk/channel.h"
#include "asterisk/localtime.h"
#include "asterisk/logger.h"
#include "asterisk/module.h"
#include "asterisk/pbx.h"
#include "asterisk/strings.h"
#include "asterisk/utils.h"

#include "core/rates.h"
#include "core/util.h"
#include "glue/internal.h"

/* The rates this Asterisk decided on lately, for the console and the manager. */
static struct mcd_rate_book *book;

struct mcd_rate_book *mcd_rates_book(void)
{
	return book;
}

/* A rate as the console and the manager show it: "20/2s", with its options. */
void mcd_rate_describe(const struct mcd_rate_seen *seen, char *buf, size_t len)
{
	snprintf(buf, len, "%llu/%lds%s%s", (unsigned long long) seen->limit, seen->period_s,
		seen->attempts || seen->fixed ? "," : "", seen->attempts ? (seen->fixed ? "af" : "a") : (seen->fixed ? "f" : ""));
}

#define RATE_SYNTAX "MCDRATE(name,limit,period[,options]): limit a whole number from 1, " \
	"period 1 to 2592000 seconds or with a unit (30, 1m, 1h, 1d), options a, f, p"

/* Asterisk's local clock, as seconds east of UTC now (fixed windows start on it). */
static long local_utc_offset(const struct timeval *now)
{
	struct ast_tm tm;

	ast_localtime(now, &tm, NULL);
	return tm.tm_gmtoff;
}

/* Parse the call into rate (its name pointing into args); 0, or -1 after a warning. */
static int parse_rate(const char *cmd, char *data, struct mcd_rate *rate, int *peek)
{
	AST_DECLARE_APP_ARGS(args,
		AST_APP_ARG(name);
		AST_APP_ARG(limit);
		AST_APP_ARG(period);
		AST_APP_ARG(options);
	);
	char escaped[MCD_ESCAPED_SIZE(24)];
	uint64_t limit;

	AST_STANDARD_APP_ARGS(args, data);
	*rate = (struct mcd_rate) { .name = args.name };
	*peek = 0;
	if (ast_strlen_zero(args.name) || ast_strlen_zero(args.limit) || ast_strlen_zero(args.period)) {
		ast_log(LOG_WARNING, "%s needs a name, a limit and a period: %s\n", cmd, RATE_SYNTAX);
		return -1;
	}
	if (mcd_parse_uint64(args.limit, &limit) || !limit || limit > (uint64_t) MCD_INCREMENT_MAX) {
		ast_log(LOG_WARNING, "%s: limit '%s' is not a whole number from 1: %s\n", cmd,
			mcd_escape(args.limit, strlen(args.limit), escaped, sizeof(escaped)), RATE_SYNTAX);
		return -1;
	}
	if (mcd_rate_parse_period(args.period, &rate->period_s)) {
		ast_log(LOG_WARNING, "%s: period '%s' is out of range: %s\n", cmd,
			mcd_escape(args.period, strlen(args.period), escaped, sizeof(escaped)), RATE_SYNTAX);
		return -1;
	}
	for (const char *o = S_OR(args.options, ""); *o; o++) {
		switch (*o) {
		case 'a':
			rate->attempts = true;
			break;
		case 'f':
			rate->fixed = true;
			break;
		case 'p':
			*peek = 1;
			break;
		default:
			ast_log(LOG_WARNING, "%s: unknown option '%s': %s\n", cmd,
				mcd_escape(args.options, strlen(args.options), escaped, sizeof(escaped)), RATE_SYNTAX);
			return -1;
		}
	}
	rate->limit = limit;
	return 0;
}

static int rate_read(struct ast_channel *chan, const char *cmd, char *data, struct ast_str **buf, ssize_t len)
{
	RAII_VAR(struct mcd_live *, live, mcd_live_get(), ao2_cleanup);
	struct mcd_rate_answer answer = { .admitted = false };
	struct mcd_rate rate;
	struct timeval now = ast_tvnow();
	int peek, admitted;
	int64_t now_ms;
	char text[24], name[MCD_ESCAPED_SIZE(40)];
	mcd_rc rc;

	if (parse_rate(cmd, data, &rate, &peek)) {
		/* Refused for its input: nothing counted. */
		ast_str_set(buf, len, "0");
		return mcd_refuse(chan);
	}
	rate.utc_offset_s = local_utc_offset(&now);
	/* The core reads the clock once it has a connection. */
	rc = !live ? MCD_NO_SERVERS : (peek ? mcd_rate_peek : mcd_rate_check)(live->client, &rate, -1, &answer);
	now_ms = (int64_t) now.tv_sec * 1000 + now.tv_usec / 1000;
	if (mcd_rc_outcome(rc) == MCD_OUTCOME_REFUSED) {
		/* A name memcached cannot take (too long, a ':' or a space): refused, never let
		 * through as if memcached had failed. */
		ast_log(LOG_WARNING, "%s: name '%s' is empty, over %d bytes, or holds ':' or spaces: %s\n", cmd,
			mcd_escape(rate.name, strlen(rate.name), name, sizeof(name)), MCD_NAME_MAX, RATE_SYNTAX);
		ast_str_set(buf, len, "0");
		mcd_set_if_changed(chan, "MCDRESULT", mcd_rc_name(rc));
		return 0;
	}
	if (rc == MCD_SUCCESS || rc == MCD_RATE_LIMITED) {
		if (!peek) {
			mcd_rate_book_note(book, &rate, &answer, now_ms);
		}
		admitted = answer.admitted;
		snprintf(text, sizeof(text), "%llu", (unsigned long long) answer.count);
		mcd_set_if_changed(chan, "MCDRATE_COUNT", text);
		snprintf(text, sizeof(text), "%lld", (long long) ((answer.retry_ms + 999) / 1000));
		mcd_set_if_changed(chan, "MCDRATE_RETRY", text);
	} else {
		/* memcached could not say: memcached.conf decides, MCDRESULT tells why. */
		admitted = !live || mcd_client_settings(live->client)->rate_on_failure == MCD_RATE_ADMIT;
		mcd_set_if_changed(chan, "MCDRATE_COUNT", "");
		mcd_set_if_changed(chan, "MCDRATE_RETRY", "");
	}
	ast_str_set(buf, len, "%d", admitted);
	mcd_report(chan, "MCDRATE", rate.name, rc);
	return 0;
}

static struct ast_custom_function rate_function = {
	.name = "MCDRATE",
	.read2 = rate_read,
};

int mcd_rates_init(void)
{
	if (!(book = mcd_rate_book_create())) {
		return -1;
	}
	/* A read counts: the manager and ARI need live_dangerously, as for MCDCOUNTER. */
	return ast_custom_function_register_escalating(&rate_function, AST_CFE_READ) ? -1 : 0;
}

int mcd_rates_cleanup(void)
{
	int res = ast_custom_function_unregister(&rate_function);

	if (!res) {
		mcd_rate_book_destroy(book);
		book = NULL;
	}
	return res;
}
