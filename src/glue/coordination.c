/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * coordination: call groups and locks across the Asterisk servers that share
 * memcached. The functions MCDGROUP, MCDGROUP_COUNT, MCDLOCK, MCDTRYLOCK and
 * MCDUNLOCK; the channel datastore that ends a channel's memberships and
 * releases its locks when it is destroyed, however it ends; and the thread
 * that runs the core's tick off the call path. The design is in
 * src/core/coord.h and the README.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include "asterisk.h"

#include "asterisk/app.h"
#include "asterisk/astobj2.h"
#include "asterisk/channel.h"
#include "asterisk/datastore.h"
#include "asterisk/linkedlists.h"
#include "asterisk/lock.h"
#include "asterisk/logger.h"
#include "asterisk/module.h"
#include "asterisk/paths.h"
#include "asterisk/pbx.h"
#include "asterisk/strings.h"
#include "asterisk/utils.h"

#include "glue/internal.h"

/* This Asterisk's members and locks: one for the module's life, whatever the reloads. */
static struct mcd_coord *coord;

/* --- the channel's memberships and locks, ended with the channel --- */

struct membership {
	AST_LIST_ENTRY(membership) entry;
	char category[MCD_NAME_MAX + 1];
	char group[MCD_NAME_MAX + 1];
};

struct held {
	AST_LIST_ENTRY(held) entry;
	char name[MCD_NAME_MAX + 1];
	char token[MCD_TOKEN_MAX];
};

struct channel_state {
	AST_LIST_ENTRY(channel_state) entry;
	AST_LIST_HEAD_NOLOCK(, membership) groups;
	AST_LIST_HEAD_NOLOCK(, held) locks;
};

/* The tick thread's: its wake-up, and the states of destroyed channels it has to end. */
AST_MUTEX_DEFINE_STATIC(tick_lock);
static ast_cond_t tick_cond;
static AST_LIST_HEAD_NOLOCK_STATIC(ended, channel_state);

/* A destroyed channel leaves its groups and releases its locks, no hangup handler needed;
 * its datastores go with the channel locked, so the network is left to the tick thread. */
static void channel_state_destroy(void *data)
{
	ast_mutex_lock(&tick_lock);
	AST_LIST_INSERT_TAIL(&ended, (struct channel_state *) data, entry);
	ast_cond_signal(&tick_cond);
	ast_mutex_unlock(&tick_lock);
}

static void end_channel_state(struct channel_state *state)
{
	struct mcd_live *live = mcd_live_get();
	struct membership *m;
	struct held *h;

	while ((m = AST_LIST_REMOVE_HEAD(&state->groups, entry))) {
		if (live) {
			mcd_report_log("MCDGROUP leave", m->group, mcd_group_leave_noreply(live->client, coord,
				m->category, m->group));
		}
		ast_free(m);
	}
	while ((h = AST_LIST_REMOVE_HEAD(&state->locks, entry))) {
		if (live) {
			mcd_report_log("MCDLOCK release", h->name, mcd_unlock(live->client, coord, h->name, h->token));
		}
		ast_free(h);
	}
	ao2_cleanup(live);
	ast_free(state);
	/* The module stays loaded while a channel holds memberships or locks of it. */
	ast_module_unref(AST_MODULE_SELF);
}

/* A masquerade appends the datastores of the channel that goes to the one that stays (both
 * locked): where it has a state already, this one's memberships and locks join it. */
static void channel_state_fixup(void *data, struct ast_channel *old_chan, struct ast_channel *new_chan);

static const struct ast_datastore_info channel_state_info = {
	.type = "res_memcached coordination",
	.destroy = channel_state_destroy,
	.chan_fixup = channel_state_fixup,
};

/* The state's membership in category, or NULL. */
static struct membership *membership_in(struct channel_state *state, const char *category)
{
	struct membership *m;

	AST_LIST_TRAVERSE(&state->groups, m, entry) {
		if (!strcmp(m->category, category)) {
			break;
		}
	}
	return m;
}

static void channel_state_fixup(void *data, struct ast_channel *old_chan, struct ast_channel *new_chan)
{
	struct channel_state *moving = data;
	struct ast_datastore *ds = ast_channel_datastore_find(new_chan, &channel_state_info, NULL);
	struct channel_state *staying = ds ? ds->data : NULL;
	struct membership *m;

	(void) old_chan;
	if (!staying || staying == moving) {
		return;
	}
	/* One group per category: a second one stays where it was, and ends with the channel. */
	AST_LIST_TRAVERSE_SAFE_BEGIN(&moving->groups, m, entry) {
		if (!membership_in(staying, m->category)) {
			AST_LIST_REMOVE_CURRENT(entry);
			AST_LIST_INSERT_TAIL(&staying->groups, m, entry);
		}
	}
	AST_LIST_TRAVERSE_SAFE_END;
	AST_LIST_APPEND_LIST(&staying->locks, &moving->locks, entry);
}

/* The channel's state (chan locked), made when create and missing; NULL if none. */
static struct channel_state *channel_state(struct ast_channel *chan, int create)
{
	struct ast_datastore *ds = ast_channel_datastore_find(chan, &channel_state_info, NULL);
	struct channel_state *state;

	if (ds || !create) {
		return ds ? ds->data : NULL;
	}
	if (!(ds = ast_datastore_alloc(&channel_state_info, NULL))) {
		return NULL;
	}
	if (!(state = ast_calloc(1, sizeof(*state)))) {
		ast_datastore_free(ds);
		return NULL;
	}
	ds->data = state;
	ast_module_ref(AST_MODULE_SELF);
	ast_channel_datastore_add(chan, ds);
	return state;
}

/* A call that needs a channel, made without one (the CLI, say). */
static int needs_channel(const char *cmd)
{
	ast_log(LOG_WARNING, "%s needs a channel: its groups and locks end with the channel\n", cmd);
	return 0;
}

/* --- MCDGROUP, MCDGROUP_COUNT --- */

/* The channel's group in category into buf, "" for none. */
static void channel_group(struct ast_channel *chan, const char *category, char *buf, size_t len)
{
	struct channel_state *state;
	struct membership *m;

	buf[0] = '\0';
	ast_channel_lock(chan);
	if ((state = channel_state(chan, 0)) && (m = membership_in(state, category))) {
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
		return needs_channel(cmd);
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
		return needs_channel(cmd);
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
		rc = mcd_group_join(live->client, coord, category, value, limit);
	}
	if (rc == MCD_SUCCESS) {
		struct channel_state *state;
		struct membership *m = NULL;

		ast_channel_lock(chan);
		if ((state = channel_state(chan, 1)) && !(m = membership_in(state, category))
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
			mcd_group_leave(live->client, coord, category, value);
			rc = MCD_MEMORY_ALLOCATION_FAILURE;
		} else if (current[0]) {
			/* One group per category: joining another leaves the one before. */
			mcd_report_log("MCDGROUP leave", current, mcd_group_leave(live->client, coord, category, current));
		}
	}
	mcd_report(chan, cmd, value, rc);
	return 0;
}

static struct ast_custom_function group_function = {
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

static struct ast_custom_function group_count_function = {
	.name = "MCDGROUP_COUNT",
	.read2 = group_count_read,
};

/* --- MCDLOCK, MCDTRYLOCK, MCDUNLOCK --- */

/* The token of lock name if the channel holds it (copied into token), else 0. */
static int channel_holds(struct ast_channel *chan, const char *name, char *token)
{
	struct channel_state *state;
	struct held *h = NULL;

	ast_channel_lock(chan);
	if ((state = channel_state(chan, 0))) {
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
		return needs_channel(cmd);
	}
	if (ast_strlen_zero(args.name) || (!ast_strlen_zero(args.ttl)
		&& mcd_parse_long(args.ttl, 1, MCD_TTL_MAX, &ttl))) {
		ast_log(LOG_WARNING, "Syntax: %s(name[,ttl]), ttl in seconds from 1\n", cmd);
		return mcd_refuse(chan);
	}
	/* A channel that holds the lock holds it still, as with LOCK(). */
	if (channel_holds(chan, args.name, token)) {
		ast_str_set(buf, len, "1");
		mcd_report(chan, cmd, args.name, MCD_SUCCESS);
		return 0;
	}
	if ((live = mcd_live_get())) {
		const struct mcd_settings *s = mcd_client_settings(live->client);

		rc = mcd_lock(live->client, coord, args.name, ttl ? ttl : s->lock_ttl_s, wait ? s->lock_wait_ms : 0,
			ast_channel_name(chan), token);
	}
	if (rc == MCD_SUCCESS) {
		struct channel_state *state;
		struct held *h = ast_calloc(1, sizeof(*h));

		ast_channel_lock(chan);
		if (h && (state = channel_state(chan, 1))) {
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
			mcd_unlock(live->client, coord, args.name, token);
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
		return needs_channel(cmd);
	}
	if (ast_strlen_zero(data)) {
		ast_log(LOG_WARNING, "Syntax: %s(name)\n", cmd);
		return mcd_refuse(chan);
	}
	if (channel_holds(chan, data, token)) {
		struct channel_state *state;
		struct held *h;

		rc = (live = mcd_live_get()) ? mcd_unlock(live->client, coord, data, token) : MCD_NO_SERVERS;
		/* Released, expired or taken by another: either way this channel no longer holds it. */
		ast_channel_lock(chan);
		if ((state = channel_state(chan, 0))) {
			AST_LIST_TRAVERSE_SAFE_BEGIN(&state->locks, h, entry) {
				if (!strcmp(h->name, data)) {
					AST_LIST_REMOVE_CURRENT(entry);
					ast_free(h);
					break;
				}
			}
			AST_LIST_TRAVERSE_SAFE_END;
		}
		ast_channel_unlock(chan);
	}
	if (rc == MCD_SUCCESS) {
		ast_str_set(buf, len, "1");
	}
	mcd_report(chan, cmd, data, rc);
	return 0;
}

static struct ast_custom_function lock_function = {
	.name = "MCDLOCK",
	.read2 = lock_wait_read,
};

static struct ast_custom_function trylock_function = {
	.name = "MCDTRYLOCK",
	.read2 = lock_try_read,
};

static struct ast_custom_function unlock_function = {
	.name = "MCDUNLOCK",
	.read2 = unlock_read,
};

static const struct {
	struct ast_custom_function *acf;
	enum ast_custom_function_escalation escalation; /* joining or locking: AMI, ARI need live_dangerously */
} functions[] = {
	{ &group_function, AST_CFE_WRITE }, { &group_count_function, AST_CFE_NONE },
	{ &lock_function, AST_CFE_READ }, { &trylock_function, AST_CFE_READ }, { &unlock_function, AST_CFE_READ },
};

/* --- the tick, off the call path --- */

static pthread_t ticker = AST_PTHREADT_NULL;
static int stopping;

static struct timeval next_tick(void)
{
	return ast_tvadd(ast_tvnow(), ast_samp2tv(mcd_coord_lease(coord) * 1000 / 4, 1000));
}

static void tick(void)
{
	struct mcd_live *live = mcd_live_get();
	unsigned int corrected;

	if (live && (corrected = mcd_coord_tick(live->client, coord))) {
		ast_log(LOG_NOTICE, "res_memcached: %u group counter(s) brought back to the members "
			"the Asterisk servers publish (an Asterisk gone, or memcached lost them)\n", corrected);
	}
	ao2_cleanup(live);
}

/* Every lease/4 a tick; in between, the ends of destroyed channels, as they come. */
static void *tick_loop(void *unused)
{
	struct timeval next = next_tick();

	(void) unused;
	ast_mutex_lock(&tick_lock);
	while (!stopping) {
		struct channel_state *state = AST_LIST_REMOVE_HEAD(&ended, entry);

		if (state) {
			ast_mutex_unlock(&tick_lock);
			end_channel_state(state);
			ast_mutex_lock(&tick_lock);
		} else if (ast_tvcmp(ast_tvnow(), next) >= 0) {
			ast_mutex_unlock(&tick_lock);
			tick();
			next = next_tick();
			ast_mutex_lock(&tick_lock);
		} else {
			struct timespec until = { .tv_sec = next.tv_sec, .tv_nsec = next.tv_usec * 1000 };

			ast_cond_timedwait(&tick_cond, &tick_lock, &until);
			/* A shorter lease configured meanwhile brings the next tick nearer. */
			next = ast_tvcmp(next_tick(), next) < 0 ? next_tick() : next;
		}
	}
	ast_mutex_unlock(&tick_lock);
	return NULL;
}

/* The node's name: node_id, else Asterisk's systemname, else its entity ID. */
static void node_name(const struct mcd_settings *s, char *buf, size_t len)
{
	if (!ast_strlen_zero(s->node_id)) {
		ast_copy_string(buf, s->node_id, len);
	} else if (!ast_strlen_zero(ast_config_AST_SYSTEM_NAME)
		&& mcd_coord_name_valid(ast_config_AST_SYSTEM_NAME, 1)) {
		ast_copy_string(buf, ast_config_AST_SYSTEM_NAME, len);
	} else {
		ast_eid_to_str(buf, (int) len, &ast_eid_default);
	}
}

void mcd_coordination_configure(const struct mcd_settings *settings)
{
	char node[MCD_NAME_MAX + 1];

	if (coord) {
		node_name(settings, node, sizeof(node));
		mcd_coord_configure(coord, node, settings->group_lease_s);
		ast_verb(2, "res_memcached: groups and locks as node '%s'\n", node);
		ast_mutex_lock(&tick_lock);
		ast_cond_signal(&tick_cond);
		ast_mutex_unlock(&tick_lock);
	}
}

struct mcd_coord *mcd_coordination(void)
{
	return coord;
}

int mcd_coordination_init(void)
{
	struct mcd_settings defaults;

	mcd_settings_defaults(&defaults); /* named and leased once the live client is built */
	if (!(coord = mcd_coord_create("", defaults.group_lease_s))) {
		return -1;
	}
	ast_cond_init(&tick_cond, NULL);
	stopping = 0;
	if (ast_pthread_create_background(&ticker, NULL, tick_loop, NULL)) {
		ticker = AST_PTHREADT_NULL;
		return -1;
	}
	for (size_t i = 0; i < ARRAY_LEN(functions); i++) {
		if (ast_custom_function_register_escalating(functions[i].acf, functions[i].escalation)) {
			return -1;
		}
	}
	return 0;
}

int mcd_coordination_cleanup(void)
{
	struct channel_state *state;
	int res = 0;

	for (size_t i = 0; i < ARRAY_LEN(functions); i++) {
		res |= ast_custom_function_unregister(functions[i].acf);
	}
	if (ticker != AST_PTHREADT_NULL) {
		ast_mutex_lock(&tick_lock);
		stopping = 1;
		ast_cond_signal(&tick_cond);
		ast_mutex_unlock(&tick_lock);
		pthread_join(ticker, NULL);
		ticker = AST_PTHREADT_NULL;
	}
	/* Channels that ended while the thread stopped. */
	ast_mutex_lock(&tick_lock);
	while ((state = AST_LIST_REMOVE_HEAD(&ended, entry))) {
		ast_mutex_unlock(&tick_lock);
		end_channel_state(state);
		ast_mutex_lock(&tick_lock);
	}
	ast_mutex_unlock(&tick_lock);
	if (coord) {
		ast_cond_destroy(&tick_cond);
	}
	mcd_coord_destroy(coord);
	coord = NULL;
	return res;
}
