/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * groups: joining, leaving and counting call groups across the cluster, and
 * the tick that keeps each group's counter at the truth the nodes publish.
 * The design is in coord.h and the README.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_private.h"
#include "util.h"

/* The most nodes whose counts are read for a group: with more, the tick corrects nothing. */
#define MAX_NODES 64
/* Ticks in a row a group must be empty everywhere before it leaves the list. */
#define EMPTY_TICKS 2

/* Step group's counter (master) by delta, confirmed, on the pool counter steps go through. */
static mcd_rc step_counter(struct mcd_client *client, const char *master, size_t master_len, int64_t delta,
	uint64_t *members)
{
	struct mcd_call call = { .key_len = master_len };
	mcd_rc rc;

	memcpy(call.key, master, master_len + 1);
	if ((rc = mcd_call_begin(client, mcd_counter_pool(client), &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	return mcd_call_end(client, &call, mcd_counter_step(call.memc, master, master_len, master, master_len,
		delta, 0, members));
}

/* --- joining, leaving, counting --- */

static mcd_rc join(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group, uint64_t limit)
{
	struct mcd_publication p;
	struct local_group *g;
	uint64_t members = 0, ignored;
	mcd_rc rc;

	/* Prepared first: it checks every key of the group, this node's count included. */
	pthread_mutex_lock(&coord->lock);
	rc = mcd_publication(client, coord, category, group, 0, &p);
	pthread_mutex_unlock(&coord->lock);
	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	/* The counter decides: racing joins get distinct values, those past the limit step back. */
	if ((rc = step_counter(client, p.master, p.master_len, 1, &members)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	if (limit && members > limit) {
		step_counter(client, p.master, p.master_len, -1, &ignored);
		return MCD_GROUP_FULL;
	}
	pthread_mutex_lock(&coord->lock);
	if (!(g = mcd_local_group(coord, category, group, true))) {
		pthread_mutex_unlock(&coord->lock);
		step_counter(client, p.master, p.master_len, -1, &ignored);
		return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	}
	g->members++;
	mcd_publication_count(&p, g->members);
	/* Its failure is the tick's to mend: the join itself is counted. */
	mcd_publish_unlock(client, coord, &p, 1);
	return MEMCACHED_SUCCESS;
}

mcd_rc mcd_group_join(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group, uint64_t limit)
{
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_GROUP, started,
		join(client, coord, category, group, limit));
}

static mcd_rc leave(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group, bool noreply)
{
	struct mcd_publication p;
	struct local_group *g;
	uint64_t ignored;
	mcd_rc rc;

	pthread_mutex_lock(&coord->lock);
	if ((rc = mcd_publication(client, coord, category, group, 0, &p)) != MEMCACHED_SUCCESS
		|| !(g = mcd_local_group(coord, category, group, false)) || g->members <= 0) {
		pthread_mutex_unlock(&coord->lock);
		return rc != MEMCACHED_SUCCESS ? rc : MEMCACHED_NOTFOUND;
	}
	g->members--;
	mcd_publication_count(&p, g->members);
	/* On a hangup, the counter's step goes after the count on the same connection: nothing
	 * to wait for. */
	p.step_down = noreply && client->ordered;
	rc = mcd_publish_unlock(client, coord, &p, 1);
	if (p.step_down) {
		return rc;
	}
	/* Confirmed: the channel that leaves (to join another group, say) and then counts sees
	 * its own leave. */
	return step_counter(client, p.master, p.master_len, -1, &ignored);
}

mcd_rc mcd_group_leave(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group)
{
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_GROUP, started,
		leave(client, coord, category, group, false));
}

mcd_rc mcd_group_leave_noreply(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group)
{
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_GROUP, started,
		leave(client, coord, category, group, true));
}

mcd_rc mcd_group_count(struct mcd_client *client, const char *category, const char *group,
	uint64_t *count)
{
	struct mcd_call call;
	uint64_t started = mcd_now_us();
	mcd_rc rc = mcd_group_key(client, category, group, NULL, call.key, &call.key_len);

	*count = 0;
	if (rc == MEMCACHED_SUCCESS && (rc = mcd_call_begin(client, &client->main, &call)) == MEMCACHED_SUCCESS) {
		size_t len;
		uint32_t flags;
		memcached_return_t got;
		char *text = memcached_get(call.memc, call.key, call.key_len, &len, &flags, &got);

		if (text) {
			*count = mcd_uint64_of(text, len);
			free(text);
		}
		/* No counter: nobody is in the group. */
		rc = mcd_call_end(client, &call, got == MEMCACHED_NOTFOUND ? MEMCACHED_SUCCESS : got);
	}
	return mcd_stats_record(client->stats, MCD_OP_GROUP, started, rc);
}

/* --- a group as memcached holds it: its counter and the counts the nodes published --- */

struct group_state {
	uint64_t counter;            /* 0 when missing */
	long others;                 /* the sum of the other nodes' published counts */
	long own;                    /* this node's count as published, -1 when missing */
	bool partial;                /* more nodes are listed than were read */
};

struct group_keys {
	char keys[MAX_NODES + 2][MCD_KEY_MAX + 1];
	const char *key_ptrs[MAX_NODES + 2];
	size_t lens[MAX_NODES + 2];
	size_t count;
	bool partial;
	struct mcd_client *client;   /* for add_node_key */
	const char *category, *group, *node;
	struct group_state *state;   /* for take_item */
};

/* Add node's published count of the group to the keys to read (this node's is there already). */
static void add_node_key(const char *node, void *arg)
{
	struct group_keys *k = arg;

	if (!strcmp(node, k->node)) {
		return;
	}
	if (k->count >= MAX_NODES + 1) {
		k->partial = true;
	} else if (mcd_group_key(k->client, k->category, k->group, node, k->keys[k->count], &k->lens[k->count])
		== MEMCACHED_SUCCESS) {
		k->count++;
	}
}

/* Sort one fetched item into state: the counter (keys[0]), this node's count (keys[1]) or another's. */
static mcd_rc take_item(const memcached_result_st *result, void *arg)
{
	const struct group_keys *k = arg;
	struct group_state *state = k->state;
	const char *key = memcached_result_key_value(result);
	size_t key_len = memcached_result_key_length(result);
	uint64_t value = mcd_uint64_of(memcached_result_value(result), memcached_result_length(result));

	if (key_len == k->lens[0] && !memcmp(key, k->keys[0], key_len)) {
		state->counter = value;
	} else if (key_len == k->lens[1] && !memcmp(key, k->keys[1], key_len)) {
		state->own = (long) value;
	} else {
		state->others += (long) value;
	}
	return MEMCACHED_SUCCESS;
}

/* Read group's counter and the counts of nodes (a space-separated list) with one request. */
static mcd_rc read_group(struct mcd_client *client, const char *node, const char *category,
	const char *group, const char *nodes, struct group_state *state)
{
	struct group_keys *k = calloc(1, sizeof(*k));
	struct mcd_call call;
	mcd_rc rc;

	*state = (struct group_state) { .own = -1 };
	if (!k) {
		return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	}
	if ((rc = mcd_group_key(client, category, group, NULL, k->keys[0], &k->lens[0])) != MEMCACHED_SUCCESS
		|| (rc = mcd_group_key(client, category, group, node, k->keys[1], &k->lens[1])) != MEMCACHED_SUCCESS) {
		free(k);
		return rc;
	}
	k->count = 2;
	k->client = client;
	k->category = category;
	k->group = group;
	k->node = node;
	k->state = state;
	mcd_each_word(nodes, add_node_key, k);
	for (size_t i = 0; i < k->count; i++) {
		k->key_ptrs[i] = k->keys[i];
	}
	call.key_len = k->lens[0];
	memcpy(call.key, k->keys[0], k->lens[0] + 1);
	if ((rc = mcd_call_begin(client, &client->main, &call)) != MEMCACHED_SUCCESS) {
		free(k);
		return rc;
	}
	rc = mcd_mget_each(call.memc, call.key, call.key_len, k->key_ptrs, k->lens, k->count, take_item, k);
	state->partial = k->partial;
	free(k);
	return mcd_call_end(client, &call, rc);
}
/* Step group's counter by -gap, unless another node does it this tick. True when done. */
static bool correct(struct mcd_client *client, struct mcd_coord *coord, const char *node,
	const char *category, const char *group, long gap)
{
	struct mcd_call call;
	char name[2 * MCD_NAME_MAX + 16], guard[MCD_KEY_MAX + 1];
	size_t guard_len;
	uint64_t ignored;
	const long lease_s = mcd_coord_lease(coord);
	bool done = false;
	mcd_rc rc;

	snprintf(name, sizeof(name), "groupfix:%s:%s", category, group);
	if (mcd_group_key(client, category, group, NULL, call.key, &call.key_len) != MEMCACHED_SUCCESS
		|| mcd_client_own_key(client, name, guard, &guard_len) != MEMCACHED_SUCCESS
		|| mcd_call_begin(client, mcd_counter_pool(client), &call) != MEMCACHED_SUCCESS) {
		return false;
	}
	/* One corrector per tick: the guard, beside the counter, lives a quarter of a lease. */
	rc = memcached_add_by_key(call.memc, call.key, call.key_len, guard, guard_len, node, strlen(node),
		(time_t) (lease_s / 4 > 0 ? lease_s / 4 : 1), 0);
	if (rc == MEMCACHED_SUCCESS) {
		/* A step, not a set: the joins and leaves under way are kept. */
		rc = mcd_counter_step(call.memc, call.key, call.key_len, call.key, call.key_len, -gap, 0, &ignored);
		done = rc == MEMCACHED_SUCCESS;
	} else if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) {
		rc = MEMCACHED_SUCCESS;
	}
	mcd_call_end(client, &call, rc);
	return done;
}

/* --- the tick --- */

struct tick {
	struct mcd_client *client;
	struct mcd_coord *coord;
	char node[MCD_NAME_MAX + 1];
	const struct mcd_registry *registry;
	char *missing;               /* " cat:group ..." of this node's groups not listed */
	char *empty;                 /* " cat:group ..." empty everywhere for EMPTY_TICKS ticks */
	unsigned long number;        /* this tick's, in coord->ticks */
	unsigned int corrected;
};

/* Append " category:group" to words (MCD_REGISTRY_MAX), if it fits. */
static void add_word(char *words, const char *category, const char *group)
{
	size_t used = strlen(words);

	if (used + strlen(category) + strlen(group) + 3 < MCD_REGISTRY_MAX) {
		snprintf(words + used, MCD_REGISTRY_MAX - used, " %s:%s", category, group);
	}
}

/* Append to words this node's groups with members that the list groups lacks (coord locked). */
static void add_unlisted(struct mcd_coord *coord, const char *groups, char *words)
{
	for (int b = 0; b < MCD_COORD_BUCKETS; b++) {
		for (struct local_group *g = coord->groups[b]; g; g = g->next) {
			char entry[2 * MCD_NAME_MAX + 2];

			snprintf(entry, sizeof(entry), "%s:%s", g->category, g->group);
			if (g->members > 0 && !mcd_listed(groups, entry)) {
				add_word(words, g->category, g->group);
			}
		}
	}
}

static void reconcile(const char *category, const char *group, void *arg)
{
	struct tick *t = arg;
	struct group_state state;
	struct mcd_publication p;
	struct local_group *g;
	long gap;
	bool again, stale;

	if (read_group(t->client, t->node, category, group, t->registry->nodes, &state) != MEMCACHED_SUCCESS) {
		return;
	}
	pthread_mutex_lock(&t->coord->lock);
	/* Once a tick, though two nodes that listed it at once listed it twice. */
	if (!(g = mcd_local_group(t->coord, category, group, true)) || g->seen_tick == t->number) {
		pthread_mutex_unlock(&t->coord->lock);
		return;
	}
	g->seen_tick = t->number;
	/* This node's count is what it knows. Counts above 0 were refreshed this tick; a count
	 * memcached still holds of a group this node has left (a lost write, an earlier life
	 * of the node) goes to 0. */
	stale = g->members == 0 && state.own > 0;
	gap = (long) state.counter - (state.others + g->members);
	/* The same gap, with the counter and every count as they were a tick ago: no join or
	 * leave is under way anywhere (a busy group can show one gap twice by chance). */
	again = g->gap && g->gap == gap && g->counter == state.counter && g->others == state.others;
	g->gap = gap;
	g->counter = state.counter;
	g->others = state.others;
	g->empty_ticks = !state.counter && !state.others && !g->members ? g->empty_ticks + 1 : 0;
	if (g->empty_ticks >= EMPTY_TICKS) {
		add_word(t->empty, category, group);
		mcd_local_forget(t->coord, category, group);
	}
	if (stale && mcd_publication(t->client, t->coord, category, group, 0, &p) == MEMCACHED_SUCCESS) {
		mcd_publish_unlock(t->client, t->coord, &p, 1);
	} else {
		pthread_mutex_unlock(&t->coord->lock);
	}
	/* A gap that stayed the same for a whole tick is no join or leave under way: the members
	 * of a node gone, or a counter memcached lost. With nodes left unread, the sum is not
	 * known: nothing is corrected. */
	if (again && !state.partial && correct(t->client, t->coord, t->node, category, group, gap)) {
		t->corrected++;
		pthread_mutex_lock(&t->coord->lock);
		if ((g = mcd_local_group(t->coord, category, group, false))) {
			g->gap = 0;
		}
		pthread_mutex_unlock(&t->coord->lock);
	}
}

/* Publish this node's counts of the groups it has members in, and note the unlisted ones. */
static void refresh(struct tick *t)
{
	struct mcd_publication *p = NULL;
	size_t room = 0, count = 0;

	pthread_mutex_lock(&t->coord->lock);
	t->number = ++t->coord->ticks;
	for (int b = 0; b < MCD_COORD_BUCKETS; b++) {
		for (struct local_group *g = t->coord->groups[b]; g; g = g->next) {
			room += g->members > 0;
		}
	}
	if (room && (p = calloc(room, sizeof(*p)))) {
		for (int b = 0; b < MCD_COORD_BUCKETS; b++) {
			for (struct local_group *g = t->coord->groups[b]; g; g = g->next) {
				if (g->members > 0 && mcd_publication(t->client, t->coord, g->category, g->group,
					g->members, &p[count]) == MEMCACHED_SUCCESS) {
					count++;
				}
			}
		}
	}
	add_unlisted(t->coord, t->registry->groups, t->missing);
	mcd_publish_unlock(t->client, t->coord, p, count);
	free(p);
}

unsigned int mcd_coord_tick(struct mcd_client *client, struct mcd_coord *coord)
{
	struct mcd_registry registry = { 0 };
	char *missing = malloc(MCD_REGISTRY_MAX), *empty = malloc(MCD_REGISTRY_MAX);
	struct tick t = { .client = client, .coord = coord, .registry = &registry, .missing = missing,
		.empty = empty };

	if (missing && empty && mcd_registry_read(client, &registry) == MEMCACHED_SUCCESS) {
		missing[0] = empty[0] = '\0';
		mcd_coord_node(coord, t.node, sizeof(t.node));
		mcd_registry_keep(client, coord, &registry);
		refresh(&t);
		mcd_each_listed(registry.groups, reconcile, &t);
		/* Before the missing ones are added: that would change the version read. */
		mcd_registry_unlist_groups(client, &registry, empty);
		mcd_registry_enlist_groups(client, missing);
	}
	mcd_registry_free(&registry);
	free(missing);
	free(empty);
	return t.corrected;
}

/* --- reports --- */

struct report_walk {
	struct mcd_client *client;
	struct mcd_coord *coord;
	char node[MCD_NAME_MAX + 1];
	const char *nodes;
	void (*each)(const struct mcd_group_report *report, void *arg);
	void *arg;
	unsigned int count, max;
};

static void report_group(const char *category, const char *group, void *arg)
{
	struct report_walk *w = arg;
	struct group_state state;
	struct mcd_group_report report = { .cluster = -1, .published = -1 };

	if (w->count >= w->max) {
		return;
	}
	snprintf(report.category, sizeof(report.category), "%s", category);
	snprintf(report.group, sizeof(report.group), "%s", group);
	report.here = mcd_group_local(w->coord, category, group);
	if (read_group(w->client, w->node, category, group, w->nodes, &state) == MEMCACHED_SUCCESS) {
		report.cluster = (long) state.counter;
		report.published = state.others + (state.own > 0 ? state.own : 0);
	}
	w->each(&report, w->arg);
	w->count++;
}

unsigned int mcd_coord_groups(struct mcd_client *client, struct mcd_coord *coord,
	void (*each)(const struct mcd_group_report *report, void *arg), void *arg, unsigned int max)
{
	struct mcd_registry registry = { 0 };
	char *unlisted = malloc(MCD_REGISTRY_MAX);
	struct report_walk w = { .client = client, .coord = coord, .each = each, .arg = arg, .max = max };

	if (unlisted && mcd_registry_read(client, &registry) == MEMCACHED_SUCCESS) {
		mcd_coord_node(coord, w.node, sizeof(w.node));
		w.nodes = registry.nodes;
		mcd_each_listed(registry.groups, report_group, &w);
		/* And this node's groups that its next tick will list. */
		unlisted[0] = '\0';
		pthread_mutex_lock(&coord->lock);
		add_unlisted(coord, registry.groups, unlisted);
		pthread_mutex_unlock(&coord->lock);
		mcd_each_listed(unlisted, report_group, &w);
	}
	mcd_registry_free(&registry);
	free(unlisted);
	return w.count;
}
