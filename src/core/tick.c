/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * tick: a node's work off the call path, every lease/4. The registry's share
 * (retire.c); then this node's groups as memcached holds them, read in
 * batches (one request per server): a count memcached lost is put back with
 * this node's share; a group where this node saw a failure is repaired
 * (repair.c); a group long empty here leaves the index. Nothing is corrected
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

struct snapshot {
	struct mcd_checked *list;
	size_t count, room;
	char *unlisted;              /* " cat:group" words to take out of the index */
	size_t unlisted_used;
	long now, lease_s, unlist_after_s;
	bool reindex;                /* the index was lost: every group goes back into it */
};

/* Under coord->lock: the groups to check, and those to unlist. */
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
	if (g->members > 0 || suspect || g->pending || (g->indexed && s->now - g->empty_since < s->unlist_after_s)) {
		if (s->count < s->room) {
			struct mcd_checked *c = &s->list[s->count++];

			snprintf(c->category, sizeof(c->category), "%s", g->category);
			snprintf(c->group, sizeof(c->group), "%s", g->group);
			c->members = g->members;
			c->suspect = suspect && !g->pending;
		}
	} else if (g->indexed && !g->unlisting && s->now - g->empty_since >= s->unlist_after_s
		&& s->unlisted_used + 2 * MCD_NAME_MAX + 3 < MCD_REGISTRY_MAX) {
		s->unlisted_used += (size_t) snprintf(s->unlisted + s->unlisted_used, MCD_REGISTRY_MAX - s->unlisted_used,
			" %s:%s", g->category, g->group);
		g->unlisting = true;
		g->rejoined = false;
	}
}

struct batch_answer {
	struct mcd_checked *batch;
	size_t count;
};

static mcd_rc sort_item(const memcached_result_st *result, void *arg)
{
	struct batch_answer *a = arg;
	const char *key = memcached_result_key_value(result);
	size_t len = memcached_result_key_length(result);

	for (size_t i = 0; i < a->count; i++) {
		struct mcd_checked *c = &a->batch[i];

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
static void read_batch(struct mcd_client *client, struct mcd_checked *batch, size_t count)
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
static void index_again(struct mcd_client *client, struct mcd_coord *coord, const char *inc, const struct mcd_checked *c)
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
static void make_again(struct mcd_client *client, struct mcd_coord *coord, const char *inc, struct mcd_checked *c,
	struct mcd_tick_report *report)
{
	bool shared = false;
	struct mcd_call call = { .key_len = c->keys.master_len };
	uint64_t ignored;

	memcpy(call.key, c->keys.master, c->keys.master_len + 1);
	if (mcd_call_begin(client, mcd_counter_pool(client), &call) != MEMCACHED_SUCCESS) {
		return;
	}
	if (!c->count_found) {
		shared = mcd_group_share_again(call.memc, &c->keys, c->members, &ignored) == MEMCACHED_SUCCESS;
		report->rebuilt += shared;
	} else {
		report->rebuilt += mcd_group_add(call.memc, &c->keys, true, 0) == MEMCACHED_SUCCESS;
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
static void forget_count(struct mcd_coord *coord, const struct mcd_checked *c)
{
	struct local_group *g;

	pthread_mutex_lock(&coord->lock);
	if ((g = mcd_local_group(coord, c->category, c->group, false)) && !g->members && !g->pending) {
		g->indexed = false;
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
	uint64_t beat_us = mcd_now_us();

	*report = (struct mcd_tick_report) { .retired = 0 };
	if (!mcd_coord_supported(client)) {
		return;
	}
	mcd_registry_tick(client, coord, report);
	pthread_mutex_lock(&coord->lock);
	snprintf(inc, sizeof(inc), "%s", coord->inc);
	s.room = mcd_local_count(coord);
	s.list = calloc(s.room + 1, sizeof(*s.list));
	s.unlisted = malloc(MCD_REGISTRY_MAX);
	s.room = s.list && s.unlisted ? s.room : 0;
	s.now = mcd_monotonic_s();
	s.lease_s = coord->lease_s;
	s.unlist_after_s = coord->unlist_after_s;
	s.reindex = coord->reindex;
	coord->reindex = false;
	if (s.unlisted) {
		s.unlisted[0] = '\0';
		mcd_local_each(coord, take_group, &s);
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
			struct mcd_checked *c = &s.list[i];

			if (s.reindex && c->members > 0) {
				index_again(client, coord, inc, c);
			}
			/* Putting back thousands of groups takes seconds: the heartbeat goes on meanwhile. */
			if (mcd_now_us() - beat_us > (uint64_t) s.lease_s * 250000U) {
				mcd_coord_beat(client, coord);
				beat_us = mcd_now_us();
			}
			if (!c->read) {
				continue;
			}
			if (c->members > 0 && (!c->counter_found || !c->count_found)) {
				make_again(client, coord, inc, c, report);
				continue;
			}
			if (!c->count_found) {
				forget_count(coord, c);
			}
			/* Only with the list of incarnations as it is now: one missing would read as a gap. */
			if (c->suspect && !report->registry_failed) {
				mcd_group_repair(client, coord, c, incarnations, inc, report);
			}
		}
	}
	if (s.unlisted && s.unlisted[0]) {
		mcd_unlist(client, coord, inc, s.unlisted);
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
