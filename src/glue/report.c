/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * report: how a dialplan call's outcome reaches the administrator and the
 * dialplan: MCDRESULT on the channel, and the log, where a sick cluster or a
 * full pool is told once per window rather than once per call.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include "asterisk.h"

#include <stdatomic.h>

#include "asterisk/channel.h"
#include "asterisk/logger.h"
#include "asterisk/pbx.h"
#include "asterisk/strings.h"

#include "glue/internal.h"

/* Faults, resting servers, a full pool and a server's errors hit every call at once: the
 * first is logged, the rest within this many seconds are counted and told with the next. */
#define LOG_WINDOW_S 10

static atomic_long window_opened_at;
static atomic_ulong left_out;

/* Setting a channel variable publishes a VarSet message, which was the largest cost of an
 * operation (bench/profile.py): a loop of successes needs MCDRESULT set once. */
void mcd_set_if_changed(struct ast_channel *chan, const char *variable, const char *value)
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

/* True when a line may be logged now; else the line is counted as left out. *skipped is
 * how many were left out since the last line logged. Shared by every kind of trouble. */
static int window_allows(unsigned long *skipped)
{
	long now = (long) time(NULL);

	if (now - atomic_load(&window_opened_at) < LOG_WINDOW_S) {
		atomic_fetch_add(&left_out, 1);
		return 0;
	}
	atomic_store(&window_opened_at, now);
	*skipped = atomic_exchange(&left_out, 0);
	return 1;
}

void mcd_report_log(const char *what, const char *key, mcd_rc rc)
{
	unsigned long skipped = 0;

	switch (mcd_rc_outcome(rc)) {
	case MCD_OUTCOME_ANSWER:
		ast_debug(1, "%s '%s': %s\n", what, S_OR(key, ""), mcd_rc_name(rc));
		return;
	case MCD_OUTCOME_FAULT:
	case MCD_OUTCOME_RESTING:
	case MCD_OUTCOME_OVERLOAD:
	case MCD_OUTCOME_ERROR:
		/* A server's error (a refused login, say) or no servers at all hits every call too. */
		if (!window_allows(&skipped)) {
			return;
		}
		break;
	case MCD_OUTCOME_REFUSED:
	case MCD_OUTCOME_COUNT:
		break;
	}
	if (rc == MCD_NO_SERVERS) {
		char problem[300];

		mcd_live_problem(problem, sizeof(problem));
		if (*problem) {
			ast_log(LOG_WARNING, "%s failed: MEMCACHED_NO_SERVERS: %s%s\n", what, problem,
				skipped ? " (more failures not logged since the last line)" : "");
			return;
		}
	}
	if (key && !mcd_is_token(key, strlen(key))) {
		/* Never copy control characters from a key into the log. */
		ast_log(LOG_WARNING, "%s of a key with spaces or control characters refused: %s\n",
			what, mcd_rc_name(rc));
	} else if (skipped) {
		ast_log(LOG_WARNING, "%s '%s' failed: %s (and %lu more failures of servers or the pool "
			"not logged since the last one)\n", what, S_OR(key, ""), mcd_rc_name(rc), skipped);
	} else {
		ast_log(LOG_WARNING, "%s '%s' failed: %s\n", what, S_OR(key, ""), mcd_rc_name(rc));
	}
}

void mcd_report(struct ast_channel *chan, const char *what, const char *key, mcd_rc rc)
{
	mcd_report_log(what, key, rc);
	mcd_set_if_changed(chan, "MCDRESULT", mcd_rc_name(rc));
}

int mcd_refuse(struct ast_channel *chan)
{
	mcd_set_if_changed(chan, "MCDRESULT", mcd_rc_name(MCD_ARGUMENT_NEEDED));
	return 0;
}

void mcd_report_notice(const char *message)
{
	ast_log(LOG_WARNING, "res_memcached: %s\n", message);
}
