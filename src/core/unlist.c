/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * unlist: a group nobody used here for a while leaves this incarnation's
 * index, one shard at a time. Under the node's lock, the groups still idle
 * are chosen after the shard is read; the shard is written back only if no
 * join listed anything since (compare-and-swap); then their counts (at 0)
 * are let expire in an hour, never deleted, and the groups are forgotten
 * here. A join that came meanwhile keeps its group: listed again, its count
 * kept. Whatever fails leaves the group listed, for the next tick.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_private.h"
#include "util.h"

/* How long a count (at 0) stays once its group left the index; a join takes it back. */
#define UNLISTED_COUNT_TTL 3600

struct unlisting {
	struct mcd_client *client;
	struct mcd_coord *coord;
	const char *inc;
	unsigned int shard;
	char *mine;                  /* this shard's words of those to unlist */
	char *drop;                  /* of them, those still idle when the shard was read */
	char *back;                  /* dropped, but a join came before they were forgotten */
	size_t mine_used, drop_used, back_used;
	bool removed;                /* the shard no longer lists drop */
};

static void append(char *list, size_t *used, const char *category, const char *group)
{
	*used += (size_t) snprintf(list + *used, MCD_REGISTRY_MAX - *used, " %s:%s", category, group);
}

static void take_mine(const char *category, const char *group, void *arg)
{
	struct unlisting *u = arg;

	if (mcd_group_hash(category, group) % MCD_INDEX_SHARDS == u->shard) {
		append(u->mine, &u->mine_used, category, group);
	}
}

/* coord locked: a group still idle, nothing of its own under way. */
static void choose(const char *category, const char *group, void *arg)
{
	struct unlisting *u = arg;
	struct local_group *g = mcd_local_group(u->coord, category, group, false);

	if (g && g->unlisting && !g->rejoined && !g->members && !g->pending) {
		append(u->drop, &u->drop_used, category, group);
	}
}

/* Copy a word of the shard into back, unless it is to be dropped. */
static void keep_unless_dropped(const char *word, void *arg)
{
	struct unlisting *u = arg;

	if (!mcd_listed(u->drop, word) && u->back_used + strlen(word) + 2 < MCD_REGISTRY_MAX) {
		u->back_used += (size_t) snprintf(u->back + u->back_used, MCD_REGISTRY_MAX - u->back_used, " %s", word);
	}
}

static void touch_count(struct mcd_client *client, const char *inc, const char *category, const char *group,
	time_t ttl)
{
	struct group_keys k;
	struct mcd_call call;

	if (mcd_group_keys(client, category, group, inc, &k) != MEMCACHED_SUCCESS) {
		return;
	}
	call.key_len = k.master_len;
	memcpy(call.key, k.master, k.master_len + 1);
	if (mcd_call_begin(client, mcd_counter_pool(client), &call) == MEMCACHED_SUCCESS) {
		mcd_call_end(client, &call, memcached_touch_by_key(call.memc, k.master, k.master_len, k.count,
			k.count_len, ttl));
	}
}

static void expire(const char *category, const char *group, void *arg)
{
	const struct unlisting *u = arg;

	touch_count(u->client, u->inc, category, group, UNLISTED_COUNT_TTL);
}

/* coord locked: the shard's outcome for one group. */
static void settle(const char *category, const char *group, void *arg)
{
	struct unlisting *u = arg;
	struct local_group *g = mcd_local_group(u->coord, category, group, false);
	char word[2 * MCD_NAME_MAX + 2];

	if (!g || !g->unlisting) {
		return;
	}
	g->unlisting = false;
	snprintf(word, sizeof(word), "%s:%s", category, group);
	if (!u->removed || !mcd_listed(u->drop, word)) {
		g->rejoined = false;
	} else if (g->rejoined || g->members || g->pending) {
		append(u->back, &u->back_used, category, group);
		g->rejoined = false;
	} else {
		mcd_local_forget(u->coord, category, group);
	}
}

/* A group a join took back after its word left the shard: listed again, its count kept. */
static void keep(const char *category, const char *group, void *arg)
{
	const struct unlisting *u = arg;
	struct local_group *g;

	touch_count(u->client, u->inc, category, group, 0);
	if (mcd_index_add(u->client, u->inc, category, group) != MEMCACHED_SUCCESS) {
		/* Listed by the next join, as a first one; and checked as after a failure. */
		pthread_mutex_lock(&u->coord->lock);
		if ((g = mcd_local_group(u->coord, category, group, false))) {
			g->indexed = false;
		}
		pthread_mutex_unlock(&u->coord->lock);
		mcd_local_suspect(u->coord, category, group);
	}
}

static void unlist_shard(struct unlisting *u, char *list)
{
	char name[64];
	uint64_t cas;
	mcd_rc rc;

	snprintf(name, sizeof(name), "ix:%s:%u", u->inc, u->shard);
	rc = mcd_registry_get(u->client, name, list, &cas);
	pthread_mutex_lock(&u->coord->lock);
	mcd_each_listed(u->mine, choose, u);
	pthread_mutex_unlock(&u->coord->lock);
	u->removed = rc == MEMCACHED_NOTFOUND;
	if (rc == MEMCACHED_SUCCESS) {
		/* The shard without drop (back serves as the scratch for it). */
		u->back_used = 0;
		u->back[0] = '\0';
		mcd_each_word(list, keep_unless_dropped, u);
		u->removed = !strcmp(u->back, list)
			|| mcd_registry_put(u->client, name, u->back, cas, 0) == MEMCACHED_SUCCESS;
	}
	if (u->removed) {
		mcd_each_listed(u->drop, expire, u);
	}
	u->back_used = 0;
	u->back[0] = '\0';
	pthread_mutex_lock(&u->coord->lock);
	mcd_each_listed(u->mine, settle, u);
	pthread_mutex_unlock(&u->coord->lock);
	mcd_each_listed(u->back, keep, u);
}

static void clear_flags(const char *category, const char *group, void *coord)
{
	struct local_group *g = mcd_local_group(coord, category, group, false);

	if (g) {
		g->unlisting = g->rejoined = false;
	}
}

void mcd_unlist(struct mcd_client *client, struct mcd_coord *coord, const char *inc, const char *words)
{
	struct unlisting u = { .client = client, .coord = coord, .inc = inc, .mine = malloc(MCD_REGISTRY_MAX),
		.drop = malloc(MCD_REGISTRY_MAX), .back = malloc(MCD_REGISTRY_MAX) };
	char *list = malloc(MCD_REGISTRY_MAX);
	uint64_t beat_us = mcd_now_us();

	for (u.shard = 0; u.mine && u.drop && u.back && list && u.shard < MCD_INDEX_SHARDS; u.shard++) {
		u.mine_used = u.drop_used = 0;
		u.mine[0] = u.drop[0] = '\0';
		mcd_each_listed(words, take_mine, &u);
		if (u.mine[0]) {
			unlist_shard(&u, list);
		}
		/* Thousands of groups take a while: the heartbeat goes on meanwhile. */
		if (mcd_now_us() - beat_us > (uint64_t) mcd_coord_lease(coord) * 250000U) {
			mcd_coord_beat(client, coord);
			beat_us = mcd_now_us();
		}
	}
	/* Any still marked (out of memory) stays listed, for another tick. */
	pthread_mutex_lock(&coord->lock);
	mcd_each_listed(words, clear_flags, coord);
	pthread_mutex_unlock(&coord->lock);
	free(u.mine);
	free(u.drop);
	free(u.back);
	free(list);
}
