/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * coordination: call groups and locks across the Asterisk servers that share
 * memcached. The channel datastore that ends a channel's memberships and
 * releases its locks when it is destroyed, however it ends; the thread that
 * does those ends; and the thread that runs the core's tick on the monotonic
 * clock, which no number of ending channels can starve. The functions are in
 * groups.c and locks.c; the design in src/core/coord.h and the README.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include "asterisk.h"

#include "asterisk/astobj2.h"
#include "asterisk/channel.h"
#include "asterisk/datastore.h"
#include "asterisk/lock.h"
#include "asterisk/logger.h"
#include "asterisk/module.h"
#include "asterisk/paths.h"
#include "asterisk/pbx.h"
#include "asterisk/strings.h"
#include "asterisk/utils.h"

#include "core/util.h"
#include "glue/coordination.h"

/* This Asterisk's members and locks: one for the module's life, whatever the reloads. */
static struct mcd_coord *coord;

/* The two threads': their wake-ups (on the monotonic clock), and the states of destroyed
 * channels to end. */
AST_MUTEX_DEFINE_STATIC(threads_lock);
static ast_cond_t ended_cond, tick_cond;
static AST_LIST_HEAD_NOLOCK_STATIC(ended, channel_state);
static pthread_t ender = AST_PTHREADT_NULL, ticker = AST_PTHREADT_NULL;
static int stopping;

/* --- the channel's memberships and locks, ended with the channel --- */

/* A destroyed channel leaves its groups and releases its locks, no hangup handler needed;
 * its datastores go with the channel locked, so the network is left to the ender thread. */
static void channel_state_destroy(void *data)
{
	ast_mutex_lock(&threads_lock);
	AST_LIST_INSERT_TAIL(&ended, (struct channel_state *) data, entry);
	ast_cond_signal(&ended_cond);
	ast_mutex_unlock(&threads_lock);
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

struct membership *mcd_membership_in(struct channel_state *state, const char *category)
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
		if (!mcd_membership_in(staying, m->category)) {
			AST_LIST_REMOVE_CURRENT(entry);
			AST_LIST_INSERT_TAIL(&staying->groups, m, entry);
		}
	}
	AST_LIST_TRAVERSE_SAFE_END;
	AST_LIST_APPEND_LIST(&staying->locks, &moving->locks, entry);
}

struct channel_state *mcd_channel_state(struct ast_channel *chan, int create)
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

int mcd_needs_channel(const char *cmd)
{
	ast_log(LOG_WARNING, "%s needs a channel: its groups and locks end with the channel\n", cmd);
	return 0;
}

/* --- the two threads --- */

/* The ends of destroyed channels, as they come. */
static void *ender_loop(void *unused)
{
	(void) unused;
	ast_mutex_lock(&threads_lock);
	while (!stopping || !AST_LIST_EMPTY(&ended)) {
		struct channel_state *state = AST_LIST_REMOVE_HEAD(&ended, entry);

		if (state) {
			ast_mutex_unlock(&threads_lock);
			end_channel_state(state);
			ast_mutex_lock(&threads_lock);
		} else {
			ast_cond_wait(&ended_cond, &threads_lock);
		}
	}
	ast_mutex_unlock(&threads_lock);
	return NULL;
}

/* Log what a tick did that an administrator should know; a state that lasts, once. */
static void log_tick(const struct mcd_tick_report *r)
{
	static int registry_failed, duplicate;

	if (r->retired) {
		ast_log(LOG_NOTICE, "res_memcached: %u Asterisk incarnation(s) retired after their heartbeat "
			"lapsed: their group members no longer count\n", r->retired);
	}
	if (r->rebuilt) {
		ast_log(LOG_NOTICE, "res_memcached: %u group counter(s) memcached had lost were rebuilt from "
			"the counts of the Asterisk servers\n", r->rebuilt);
	}
	if (r->corrected) {
		ast_log(LOG_NOTICE, "res_memcached: %u group count(s) repaired after a failure seen here\n",
			r->corrected);
	}
	if (r->reincarnated) {
		ast_log(LOG_WARNING, "res_memcached: the cluster retired this Asterisk (no heartbeat for a "
			"whole group_lease): its members are counted again under a new incarnation\n");
	}
	if (r->registry_failed && !registry_failed) {
		ast_log(LOG_WARNING, "res_memcached: the cluster's registry of Asterisk servers cannot be read: "
			"no dead Asterisk is retired meanwhile\n");
	} else if (!r->registry_failed && registry_failed) {
		ast_log(LOG_NOTICE, "res_memcached: the cluster's registry of Asterisk servers can be read again\n");
	}
	registry_failed = r->registry_failed;
	if (!!r->duplicate[0] != duplicate) {
		if (r->duplicate[0]) {
			ast_log(LOG_WARNING, "res_memcached: another live Asterisk uses node_id '%s': give each its "
				"own (both are counted, but the console cannot tell them apart)\n", r->duplicate);
		}
		duplicate = !!r->duplicate[0];
	}
}

/* A tick every lease/4 on the monotonic clock (a clock stepped back stalls nothing). */
static void *tick_loop(void *unused)
{
	(void) unused;
	ast_mutex_lock(&threads_lock);
	while (!stopping) {
		struct timespec next = mcd_monotonic_after_ms(mcd_coord_lease(coord) * 1000 / 4);
		struct mcd_live *live;
		struct mcd_tick_report report;

		/* A shorter lease configured meanwhile wakes it, and the next tick comes sooner. */
		while (!stopping && !mcd_monotonic_passed(&next)
			&& ast_cond_timedwait(&tick_cond, &threads_lock, &next) != ETIMEDOUT) {
			struct timespec sooner = mcd_monotonic_after_ms(mcd_coord_lease(coord) * 1000 / 4);

			next = sooner.tv_sec < next.tv_sec ? sooner : next;
		}
		if (stopping) {
			break;
		}
		ast_mutex_unlock(&threads_lock);
		if ((live = mcd_live_get())) {
			mcd_coord_tick(live->client, coord, &report);
			log_tick(&report);
			ao2_ref(live, -1);
		}
		ast_mutex_lock(&threads_lock);
	}
	ast_mutex_unlock(&threads_lock);
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

	if (!coord) {
		return;
	}
	node_name(settings, node, sizeof(node));
	mcd_coord_configure(coord, node, settings->group_lease_s);
	if (settings->remove_failed_servers || settings->replicas) {
		ast_log(LOG_WARNING, "res_memcached: MCDGROUP and MCDLOCK are off (MEMCACHED_NOT_SUPPORTED): with "
			"remove_failed_servers or replicas a counter or a lock could live on two servers at once\n");
	} else {
		ast_verb(2, "res_memcached: groups and locks as node '%s'\n", node);
	}
	ast_mutex_lock(&threads_lock);
	ast_cond_signal(&tick_cond);
	ast_mutex_unlock(&threads_lock);
}

struct mcd_coord *mcd_coordination(void)
{
	return coord;
}

mcd_rc mcd_coordination_reset(const char *category, const char *group, const char *who, long *before,
	long *after)
{
	RAII_VAR(struct mcd_live *, live, mcd_live_get(), ao2_cleanup);
	mcd_rc rc = live && coord ? mcd_group_reset(live->client, category, group, before, after)
		: MCD_NO_SERVERS;

	if (rc == MCD_SUCCESS) {
		ast_log(LOG_NOTICE, "res_memcached: group '%s' (category '%s') reset by %s: %ld member(s) counted, "
			"%ld as the Asterisk servers count them\n", group, category, who, *before, *after);
	}
	return rc;
}

static struct {
	struct ast_custom_function *acf;
	enum ast_custom_function_escalation escalation; /* joining or locking: AMI, ARI need live_dangerously */
} functions[] = {
	{ &mcd_group_function, AST_CFE_WRITE }, { &mcd_group_count_function, AST_CFE_NONE },
	{ &mcd_lock_function, AST_CFE_READ }, { &mcd_trylock_function, AST_CFE_READ },
	{ &mcd_unlock_function, AST_CFE_READ },
};

int mcd_coordination_init(void)
{
	struct mcd_settings defaults;
	pthread_condattr_t attr;

	mcd_settings_defaults(&defaults); /* named and leased once the live client is built */
	if (!(coord = mcd_coord_create("", defaults.group_lease_s))) {
		return -1;
	}
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	ast_cond_init(&tick_cond, &attr);
	pthread_condattr_destroy(&attr);
	ast_cond_init(&ended_cond, NULL);
	stopping = 0;
	if (ast_pthread_create_background(&ender, NULL, ender_loop, NULL)) {
		ender = AST_PTHREADT_NULL;
		return -1;
	}
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
	ast_mutex_lock(&threads_lock);
	stopping = 1;
	ast_cond_broadcast(&ended_cond);
	ast_cond_broadcast(&tick_cond);
	ast_mutex_unlock(&threads_lock);
	/* The ender ends every channel queued before it stops. */
	if (ender != AST_PTHREADT_NULL) {
		pthread_join(ender, NULL);
		ender = AST_PTHREADT_NULL;
	}
	if (ticker != AST_PTHREADT_NULL) {
		pthread_join(ticker, NULL);
		ticker = AST_PTHREADT_NULL;
	}
	/* Without an ender (it could not start), the channels queued are ended here. */
	ast_mutex_lock(&threads_lock);
	while ((state = AST_LIST_REMOVE_HEAD(&ended, entry))) {
		ast_mutex_unlock(&threads_lock);
		end_channel_state(state);
		ast_mutex_lock(&threads_lock);
	}
	ast_mutex_unlock(&threads_lock);
	if (coord) {
		ast_cond_destroy(&tick_cond);
		ast_cond_destroy(&ended_cond);
	}
	mcd_coord_destroy(coord);
	coord = NULL;
	return res;
}
