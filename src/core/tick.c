/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * tick: a node's work off the call path, every lease/4. The registry's share
 * (retire.c); then this node's groups as memcached holds them, read in
 * batches (one request per server): a counter or a count memcached lost is
 * made again; a group where this node saw a failure is repaired on two equal
 * quiet readings; a group long empty leaves the index. Nothing is corrected
 * where no failure was seen.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_private.h"
#include "util.h"

/* Groups read with one request per server. */
#define BATCH 128
/* Seconds a group stays listed with nobody in it here (a call limit per extension comes back). */
#define UNLIST_AFTER_S 60

/* A group as the tick found it here, and in memcached. */
struct checked {
	char category[MCD_NAME_MAX + 1];
	char group[MCD_NAME_MAX + 1];
	long members;
	bool suspect;
	struct group_keys keys;
	uint32_t server;
	bool counter_found, count_found, read;
};

struct snapshot {
	struct checked *list;
	size_t count, room;
	char *unlisted;              /* " cat:group" words to take out of the index */
	size_t unlisted_used;
	long now, lease_s;
	bool reindex;                /* the index was lost: every group goes back into it */
};

static void count_group(struct local_group *g, void *arg)
{
	(void) g;
	(*(size_t *) arg)++;
}

/* Under coord->lock: the groups to check, and those to unlist (forgotten here). */
static void take_group(struct local_group *g, void *arg)
{
	struct snapshot *s = arg;
	bool suspect = g->suspect_until > s->now;

	if (s->reindex) {
		/* Listed again at the next join, or below where it has members; and suspect: while this
		 * node was not listed, another's repair could not see its counts. */
		g->indexed = false;
		g->suspect_until = s->now + 2 * s->lease_s;
		g->has_reading = false;
	}
	if (g->members > 0 || suspect || g->pending || (g->indexed && s->now - g->empty_since < UNLIST_AFTER_S)) {
		if (s->count < s->room) {
			struct checked *c = &s->list[s->count++];

			snprintf(c->category, sizeof(c->category), "%s", g->category);
			snprintf(c->group, sizeof(c->group), "%s", g->group);
			c->members = g->members;
			c->suspect = suspect && !g->pending;
		}
	} else if (g->indexed && s->now - g->empty_since >= UNLIST_AFTER_S && s->unlisted_used + 2 * MCD_NAME_MAX + 3
		< MCD_REGISTRY_MAX) {
		s->unlisted_used += (size_t) snprintf(s->unlisted + s->unlisted_used, MCD_REGISTRY_MAX - s->unlisted_used,
			" %s:%s", g->category, g->group);
		g->indexed = false;
	}
}

static void forget_one(const char *category, const char *group, void *coord)
{
	mcd_local_forget(coord, category, group);
}

/* Forget the groups of words (" cat:group ...") here (coord locked). */
static void forget_unlisted(struct mcd_coord *coord, const char *words)
{
	mcd_each_listed(words, forget_one, coord);
}

struct batch_answer {
	struct checked *batch;
	size_t count;
};

static mcd_rc sort_item(const memcached_result_st *result, void *arg)
{
	struct batch_answer *a = arg;
	const char *key = memcached_result_key_value(result);
	size_t len = memcached_result_key_length(result);

	for (size_t i = 0; i < a->count; i++) {
		struct checked *c = &a->batch[i];

		if (len == c->keys.master_len && !memcmp(key, c->keys.master, len)) {
			c->counter_found = true;
		} else if (len == c->keys.count_len && !memcmp(key, c->keys.count, len)) {
			/* A tombstone: retired while it stalled; the registry's share makes it anew. */
			c->count_found = true;
		}
	}
	return MEMCACHED_SUCCESS;
}

/* Read the counter and this incarnation's count of each group in batch: one request per server. */
static void read_batch(struct mcd_client *client, struct checked *batch, size_t count)
{
	const char **keys = malloc(2 * count * sizeof(*keys));
	size_t *lens = malloc(2 * count * sizeof(*lens));
	struct batch_answer answer = { .batch = batch, .count = count };
	memcached_st *memc;
	mcd_rc rc;

	if (!keys || !lens || !(memc = mcd_take_connection(client, &client->main, &rc))) {
		free(keys);
		free(lens);
		return;
	}
	for (size_t i = 0; i < count; i++) {
		batch[i].server = memcached_generate_hash(memc, batch[i].keys.master, batch[i].keys.master_len);
	}
	for (size_t i = 0; i < count; i++) {
		size_t n = 0;

		if (batch[i].read || mcd_server_resting(client, batch[i].server)) {
			continue;
		}
		for (size_t j = i; j < count; j++) {
			if (batch[j].server == batch[i].server && !batch[j].read) {
				keys[n] = batch[j].keys.master;
				lens[n++] = batch[j].keys.master_len;
				keys[n] = batch[j].keys.count;
				lens[n++] = batch[j].keys.count_len;
			}
		}
		rc = mcd_mget_each(memc, batch[i].keys.master, batch[i].keys.master_len, keys, lens, n, sort_item, &answer);
		mcd_note_server(client, batch[i].server, rc);
		for (size_t j = i; rc == MEMCACHED_SUCCESS && j < count; j++) {
			batch[j].read = batch[j].read || batch[j].server == batch[i].server;
		}
	}
	mcd_give_back(&client->main, memc);
	free(keys);
	free(lens);
}

/* Put a group back into this incarnation's index (memcached lost it). */
static void index_again(struct mcd_client *client, struct mcd_coord *coord, const char *inc, const struct checked *c)
{
	struct local_group *g;

	if (mcd_index_add(client, inc, c->category, c->group) == MEMCACHED_SUCCESS) {
		pthread_mutex_lock(&coord->lock);
		if ((g = mcd_local_group(coord, c->category, c->group, false))) {
			g->indexed = true;
		}
		pthread_mutex_unlock(&coord->lock);
	}
}

/* memcached lost this node's count (a restart, a flush: the counter goes with it, on the same
 * server): the share goes back. Or it lost the counter alone (evicted): made again empty. Either
 * way suspect: leaves sent meanwhile stepped a counter that did not hold them, and two nodes
 * making things again at once can miss each other; the repair brings it to the counts. */
static void make_again(struct mcd_client *client, struct mcd_coord *coord, const char *inc, struct checked *c,
	struct mcd_tick_report *report)
{
	bool shared = false;
	struct mcd_call call = { .key_len = c->keys.master_len };
	char zero[24];
	uint64_t ignored;

	memcpy(call.key, c->keys.master, c->keys.master_len + 1);
	if (mcd_call_begin(client, mcd_counter_pool(client), &call) != MEMCACHED_SUCCESS) {
		return;
	}
	if (!c->count_found) {
		shared = mcd_group_share_again(call.memc, &c->keys, c->members, &ignored) == MEMCACHED_SUCCESS;
		report->rebuilt += shared;
	} else {
		snprintf(zero, sizeof(zero), "%llu", (unsigned long long) MCD_GROUP_OFFSET);
		report->rebuilt += memcached_add_by_key(call.memc, c->keys.master, c->keys.master_len, c->keys.master,
			c->keys.master_len, zero, strlen(zero), 0, 0) == MEMCACHED_SUCCESS;
	}
	mcd_call_end(client, &call, MEMCACHED_SUCCESS);
	mcd_local_suspect(coord, c->category, c->group);
	/* The index went with the count, likely (a restart, a flush): listed again. */
	if (shared) {
		index_again(client, coord, inc, c);
	}
}

/* memcached lost the count of a group this node has nobody in: the next join makes it again
 * (as a first join does), rather than step a count that is not there. */
static void forget_count(struct mcd_coord *coord, const struct checked *c)
{
	struct local_group *g;

	pthread_mutex_lock(&coord->lock);
	if ((g = mcd_local_group(coord, c->category, c->group, false)) && !g->members && !g->pending) {
		g->indexed = false;
	}
	pthread_mutex_unlock(&coord->lock);
}

/* Step group's counter by -gap, unless another node corrected it within the lease. */
static bool correct_counter(struct mcd_client *client, struct mcd_coord *coord, memcached_st *memc,
	const struct checked *c, int64_t gap)
{
	char name[2 * MCD_NAME_MAX + 8], guard[MCD_KEY_MAX + 1];
	size_t guard_len;
	uint64_t ignored;

	snprintf(name, sizeof(name), "fix:%s:%s", c->category, c->group);
	return mcd_client_own_key(client, name, guard, &guard_len) == MEMCACHED_SUCCESS
		&& memcached_add_by_key(memc, c->keys.master, c->keys.master_len, guard, guard_len, "1", 1,
			(time_t) mcd_coord_lease(coord), 0) == MEMCACHED_SUCCESS
		&& mcd_step(memc, c->keys.master, c->keys.master_len, c->keys.master, c->keys.master_len, -gap, &ignored)
			== MEMCACHED_SUCCESS;
}

/* The gap nearer 0 of two on the same side of it, else 0. */
static int64_t same_side(int64_t a, int64_t b)
{
	if ((a > 0 && b > 0) || (a < 0 && b < 0)) {
		return a > 0 ? (a < b ? a : b) : (a > b ? a : b);
	}
	return 0;
}

/*
 * A group where this node saw a failure. A reading (the counter, then the counts) finds the
 * counter above the counts only after a failure, and below them by the joins under way: a gap
 * on the same side at two ticks in a row is corrected by the smaller of the two, which no
 * join under way makes too large. This node's own count is set right first, where its members
 * stayed the same with nothing under way across both readings.
 */
static void repair(struct mcd_client *client, struct mcd_coord *coord, struct checked *c, const char *incarnations,
	const char *inc, struct mcd_tick_report *report)
{
	struct mcd_group_reading r = { .own_inc = inc };
	struct mcd_call call = { .key_len = c->keys.master_len };
	struct local_group *g;
	int64_t own_gap = 0, gap = 0, last_gap = 0, last_own_gap = 0, step;
	bool had = false, acted = false;
	uint64_t ignored;
	mcd_rc rc;

	memcpy(call.key, c->keys.master, c->keys.master_len + 1);
	if (mcd_call_begin(client, mcd_counter_pool(client), &call) != MEMCACHED_SUCCESS) {
		return;
	}
	rc = mcd_group_read(client, call.memc, c->category, c->group, incarnations, &r);
	pthread_mutex_lock(&coord->lock);
	if (rc == MEMCACHED_SUCCESS && r.counter != INT64_MIN && (g = mcd_local_group(coord, c->category, c->group,
		false))) {
		bool quiet_here = !g->pending && g->members == c->members && r.own != INT64_MIN;

		own_gap = quiet_here ? r.own - c->members : 0;
		gap = r.counter - (r.sum - own_gap);
		had = g->has_reading;
		last_gap = g->last_gap;
		last_own_gap = quiet_here ? g->last_own_gap : 0;
		g->last_gap = gap;
		g->last_own_gap = own_gap;
		g->has_reading = true;
	}
	pthread_mutex_unlock(&coord->lock);
	if (had && own_gap && own_gap == last_own_gap) {
		acted = mcd_step(call.memc, c->keys.master, c->keys.master_len, c->keys.count, c->keys.count_len,
			-own_gap, &ignored) == MEMCACHED_SUCCESS;
	} else if (had && (step = same_side(gap, last_gap))) {
		acted = correct_counter(client, coord, call.memc, c, step);
	}
	report->corrected += acted;
	mcd_call_end(client, &call, rc);
	pthread_mutex_lock(&coord->lock);
	if ((g = mcd_local_group(coord, c->category, c->group, false))) {
		/* Acted: two new readings before the next step. Settled and past its time: done. */
		g->has_reading = g->has_reading && !acted;
		if (!acted && !gap && !own_gap && rc == MEMCACHED_SUCCESS && mcd_monotonic_s() >= g->suspect_until) {
			g->suspect_until = 0;
		}
	}
	pthread_mutex_unlock(&coord->lock);
}

bool mcd_coord_unsure(struct mcd_coord *coord, struct mcd_client *client)
{
	bool unsure;

	pthread_mutex_lock(&coord->lock);
	unsure = coord->tick_client != client || coord->tick_epoch != atomic_load(&client->connections_epoch);
	pthread_mutex_unlock(&coord->lock);
	return unsure;
}

void mcd_coord_tick(struct mcd_client *client, struct mcd_coord *coord, struct mcd_tick_report *report)
{
	struct snapshot s = { .count = 0 };
	char inc[MCD_INC_LEN + 1], *incarnations = NULL;

	const unsigned int epoch = atomic_load(&client->connections_epoch);

	*report = (struct mcd_tick_report) { .retired = 0 };
	if (!mcd_coord_supported(client)) {
		return;
	}
	mcd_registry_tick(client, coord, report);
	pthread_mutex_lock(&coord->lock);
	snprintf(inc, sizeof(inc), "%s", coord->inc);
	mcd_local_each(coord, count_group, &s.room);
	s.list = calloc(s.room + 1, sizeof(*s.list));
	s.unlisted = malloc(MCD_REGISTRY_MAX);
	s.room = s.list && s.unlisted ? s.room : 0;
	s.now = mcd_monotonic_s();
	s.lease_s = coord->lease_s;
	s.reindex = coord->reindex;
	coord->reindex = false;
	if (s.unlisted) {
		s.unlisted[0] = '\0';
		mcd_local_each(coord, take_group, &s);
		forget_unlisted(coord, s.unlisted);
	}
	pthread_mutex_unlock(&coord->lock);
	incarnations = mcd_coord_incarnations(coord);
	for (size_t i = 0; i < s.count; i++) {
		mcd_group_keys(client, s.list[i].category, s.list[i].group, inc, &s.list[i].keys);
	}
	for (size_t first = 0; incarnations && first < s.count; first += BATCH) {
		size_t n = s.count - first < BATCH ? s.count - first : BATCH;

		read_batch(client, &s.list[first], n);
		for (size_t i = first; i < first + n; i++) {
			struct checked *c = &s.list[i];

			if (s.reindex && c->members > 0) {
				index_again(client, coord, inc, c);
			}
			if (c->read && c->members > 0 && (!c->counter_found || !c->count_found)) {
				make_again(client, coord, inc, c, report);
			} else if (c->read && !c->count_found) {
				forget_count(coord, c);
			} else if (c->read && c->suspect) {
				repair(client, coord, c, incarnations, inc, report);
			}
		}
	}
	if (s.unlisted && s.unlisted[0]) {
		mcd_index_unlist(client, inc, s.unlisted);
	}
	mcd_locks_tick(client, coord);
	pthread_mutex_lock(&coord->lock);
	coord->tick_client = client;
	coord->tick_epoch = epoch;
	pthread_mutex_unlock(&coord->lock);
	free(incarnations);
	free(s.list);
	free(s.unlisted);
}
