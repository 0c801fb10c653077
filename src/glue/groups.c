/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * groups: the dialplan's call groups across the cluster, MCDGROUP and
 * MCDGROUP_COUNT. The design is in src/core/coord.h and the README.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include "asterisk.h"

#include "asterisk/app.h"
#include "asterisk/astobj2.h"
#include "asterisk/channel.h"
#include "asterisk/pbx.h"
#include "asterisk/strings.h"
#include "asterisk/utils.h"

#include "glue/coordination.h"

/* --- MCDGROUP, MCDGROUP_COUNT --- */

/* The channel's group in category into buf, "" for none. */
static void channel_group(struct ast_channel *chan, const char *category, char *buf, size_t len)
{
	struct channel_state *state;
	struct membership *m;

	buf[0] = '\0';
	ast_channel_lock(chan);
	if ((state = mcd_channel_state(chan, 0)) && (m = mcd_membership_in(state, category))) {
		ast_copy_string(buf, m->group, len);
	}
	ast_channel_unlock(chan);
}

static int group_read(struct ast_channel *chan, const char *cmd, char *data, struct ast_str **buf,
	ssize_t len)
{
	AST_DECLARE_APP_ARGS(args,
		AST_APP_ARG(category);
		AST_APP_ARG(limit);
	);
	char group[MCD_NAME_MAX + 1];

	ast_str_reset(*buf);
	/* The same arguments as a write: a limit, if given, means nothing here. */
	AST_STANDARD_APP_ARGS(args, data);
	if (!chan) {
		return mcd_needs_channel(cmd);
	}
	channel_group(chan, S_OR(args.category, ""), group, sizeof(group));
	ast_str_set(buf, len, "%s", group);
	return 0;
}

static int group_write(struct ast_channel *chan, const char *cmd, char *data, const char *value)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	AST_DECLARE_APP_ARGS(args,
		AST_APP_ARG(category);
		AST_APP_ARG(limit);
	);
	const char *category;
	char current[MCD_NAME_MAX + 1];
	uint64_t limit = 0;
	mcd_rc rc = MCD_NO_SERVERS;

	AST_STANDARD_APP_ARGS(args, data);
	category = S_OR(args.category, "");
	if (!chan) {
		return mcd_needs_channel(cmd);
	}
	if (ast_strlen_zero(value) || (!ast_strlen_zero(args.limit)
		&& (mcd_parse_uint64(args.limit, &limit) || !limit))) {
		ast_log(LOG_WARNING, "Syntax: Set(%s([category][,limit])=group), limit a whole number from 1\n",
			cmd);
		return mcd_refuse(chan);
	}
	channel_group(chan, category, current, sizeof(current));
	if (!strcmp(current, value)) {
		mcd_report(chan, cmd, value, MCD_SUCCESS);
		return 0;
	}
	if ((live = mcd_live_get())) {
		rc = mcd_group_join(live->client, mcd_coordination(), category, value, limit);
	}
	if (rc == MCD_SUCCESS) {
		struct channel_state *state;
		struct membership *m = NULL;

		ast_channel_lock(chan);
		if ((state = mcd_channel_state(chan, 1)) && !(m = mcd_membership_in(state, category))
			&& (m = ast_calloc(1, sizeof(*m)))) {
			ast_copy_string(m->category, category, sizeof(m->category));
			AST_LIST_INSERT_TAIL(&state->groups, m, entry);
		}
		if (m) {
			ast_copy_string(m->group, value, sizeof(m->group));
		}
		ast_channel_unlock(chan);
		if (!m) {
			/* Joined but not remembered: leave again rather than count a member for ever. */
			mcd_group_leave(live->client, mcd_coordination(), category, value);
			rc = MCD_MEMORY_ALLOCATION_FAILURE;
		} else if (current[0]) {
			/* One group per category: joining another leaves the one before. */
			mcd_report_log("MCDGROUP leave", current,
				mcd_group_leave(live->client, mcd_coordination(), category, current));
		}
	}
	mcd_report(chan, cmd, value, rc);
	return 0;
}

struct ast_custom_function mcd_group_function = {
	.name = "MCDGROUP",
	.read2 = group_read,
	.write = group_write,
};

static int group_count_read(struct ast_channel *chan, const char *cmd, char *data, struct ast_str **buf,
	ssize_t len)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	char *group = ast_strdupa(S_OR(data, ""));
	char *category = strchr(group, '@');
	char channel_own[MCD_NAME_MAX + 1];
	uint64_t count = 0;
	mcd_rc rc = MCD_NO_SERVERS;

	ast_str_reset(*buf);
	if (category) {
		*category++ = '\0';
	}
	/* No group: this channel's group in the category, as GROUP_COUNT does. */
	if (ast_strlen_zero(group) && chan) {
		channel_group(chan, S_OR(category, ""), channel_own, sizeof(channel_own));
		group = channel_own;
	}
	if (ast_strlen_zero(group)) {
		ast_log(LOG_WARNING, "Syntax: %s(group[@category]), or from a channel in a group: %s([@category])\n",
			cmd, cmd);
		return mcd_refuse(chan);
	}
	if ((live = mcd_live_get()) && (rc = mcd_group_count(live->client, S_OR(category, ""), group, &count))
		== MCD_SUCCESS) {
		ast_str_set(buf, len, "%llu", (unsigned long long) count);
	}
	mcd_report(chan, cmd, group, rc);
	return 0;
}

struct ast_custom_function mcd_group_count_function = {
	.name = "MCDGROUP_COUNT",
	.read2 = group_count_read,
};

