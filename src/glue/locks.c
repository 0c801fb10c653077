/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * locks: the dialplan's locks across the cluster, MCDLOCK, MCDTRYLOCK and
 * MCDUNLOCK; a channel's locks are released when it ends.
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

/* --- MCDLOCK, MCDTRYLOCK, MCDUNLOCK --- */

/* The token of lock name if the channel holds it (copied into token), else 0. */
static int channel_holds(struct ast_channel *chan, const char *name, char *token)
{
	struct channel_state *state;
	struct held *h = NULL;

	ast_channel_lock(chan);
	if ((state = mcd_channel_state(chan, 0))) {
		AST_LIST_TRAVERSE(&state->locks, h, entry) {
			if (!strcmp(h->name, name)) {
				ast_copy_string(token, h->token, MCD_TOKEN_MAX);
				break;
			}
		}
	}
	ast_channel_unlock(chan);
	return h != NULL;
}

/* The channel no longer holds lock name. */
static void forget_lock(struct ast_channel *chan, const char *name)
{
	struct channel_state *state;
	struct held *h;

	ast_channel_lock(chan);
	if ((state = mcd_channel_state(chan, 0))) {
		AST_LIST_TRAVERSE_SAFE_BEGIN(&state->locks, h, entry) {
			if (!strcmp(h->name, name)) {
				AST_LIST_REMOVE_CURRENT(entry);
				ast_free(h);
				break;
			}
		}
		AST_LIST_TRAVERSE_SAFE_END;
	}
	ast_channel_unlock(chan);
}

/* MCDLOCK(name[,ttl]) and MCDTRYLOCK(name[,ttl]): "1" when the channel holds the lock. */
static int lock_read(struct ast_channel *chan, const char *cmd, char *data, struct ast_str **buf,
	ssize_t len, int wait)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	AST_DECLARE_APP_ARGS(args,
		AST_APP_ARG(name);
		AST_APP_ARG(ttl);
	);
	char token[MCD_TOKEN_MAX];
	long ttl = 0;
	mcd_rc rc = MCD_NO_SERVERS;

	ast_str_set(buf, len, "0");
	AST_STANDARD_APP_ARGS(args, data);
	if (!chan) {
		return mcd_needs_channel(cmd);
	}
	if (ast_strlen_zero(args.name) || (!ast_strlen_zero(args.ttl)
		&& mcd_parse_long(args.ttl, 1, MCD_TTL_MAX, &ttl))) {
		ast_log(LOG_WARNING, "Syntax: %s(name[,ttl]), ttl in seconds from 1\n", cmd);
		return mcd_refuse(chan);
	}
	live = mcd_live_get();
	/* A channel that holds the lock holds it still, as with LOCK(), if memcached agrees: its
	 * ttl may have run out and another taken it. */
	if (channel_holds(chan, args.name, token)) {
		rc = live ? mcd_lock_check(live->client, args.name, token) : MCD_NO_SERVERS;
		if (rc == MCD_SUCCESS) {
			ast_str_set(buf, len, "1");
		}
		if (rc != MCD_NOT_LOCKED) {
			mcd_report(chan, cmd, args.name, rc);
			return 0;
		}
		/* Lost: this node stops reporting it, and the channel may take it again. */
		mcd_unlock(live->client, mcd_coordination(), args.name, token);
		forget_lock(chan, args.name);
		rc = MCD_NO_SERVERS;
	}
	if (live) {
		const struct mcd_settings *s = mcd_client_settings(live->client);

		rc = mcd_lock(live->client, mcd_coordination(), args.name, ttl ? ttl : s->lock_ttl_s,
			wait ? s->lock_wait_ms : 0, ast_channel_name(chan), token);
	}
	if (rc == MCD_SUCCESS) {
		struct channel_state *state;
		struct held *h = ast_calloc(1, sizeof(*h));

		ast_channel_lock(chan);
		if (h && (state = mcd_channel_state(chan, 1))) {
			ast_copy_string(h->name, args.name, sizeof(h->name));
			ast_copy_string(h->token, token, sizeof(h->token));
			AST_LIST_INSERT_TAIL(&state->locks, h, entry);
			h = NULL;
			ast_str_set(buf, len, "1");
		} else {
			rc = MCD_MEMORY_ALLOCATION_FAILURE;
		}
		ast_channel_unlock(chan);
		if (rc != MCD_SUCCESS) {
			/* Taken but not remembered: give it back rather than hold it to its ttl. */
			mcd_unlock(live->client, mcd_coordination(), args.name, token);
		}
		ast_free(h);
	}
	mcd_report(chan, cmd, args.name, rc);
	return 0;
}

static int lock_wait_read(struct ast_channel *chan, const char *cmd, char *data, struct ast_str **buf,
	ssize_t len)
{
	return lock_read(chan, cmd, data, buf, len, 1);
}

static int lock_try_read(struct ast_channel *chan, const char *cmd, char *data, struct ast_str **buf,
	ssize_t len)
{
	return lock_read(chan, cmd, data, buf, len, 0);
}

static int unlock_read(struct ast_channel *chan, const char *cmd, char *data, struct ast_str **buf,
	ssize_t len)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	char token[MCD_TOKEN_MAX];
	mcd_rc rc = MCD_NOT_LOCKED;

	ast_str_set(buf, len, "0");
	if (!chan) {
		return mcd_needs_channel(cmd);
	}
	if (ast_strlen_zero(data)) {
		ast_log(LOG_WARNING, "Syntax: %s(name)\n", cmd);
		return mcd_refuse(chan);
	}
	if (channel_holds(chan, data, token)) {
		rc = (live = mcd_live_get()) ? mcd_unlock(live->client, mcd_coordination(), data, token) : MCD_NO_SERVERS;
		/* Released, expired or taken by another: either way this channel no longer holds it. */
		forget_lock(chan, data);
	}
	if (rc == MCD_SUCCESS) {
		ast_str_set(buf, len, "1");
	}
	mcd_report(chan, cmd, data, rc);
	return 0;
}

struct ast_custom_function mcd_lock_function = {
	.name = "MCDLOCK",
	.read2 = lock_wait_read,
};

struct ast_custom_function mcd_trylock_function = {
	.name = "MCDTRYLOCK",
	.read2 = lock_try_read,
};

struct ast_custom_function mcd_unlock_function = {
	.name = "MCDUNLOCK",
	.read2 = unlock_read,
};

