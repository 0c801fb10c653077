/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * incarnation: a node's life in the cluster's registry. Listed (with a
 * heartbeat) before its first join counts anything, so that a crash right
 * after is retired like any other; and, when the cluster retired it while it
 * was alive (it stalled longer than its lease), a new incarnation that counts
 * its members again.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_private.h"
#include "util.h"

void mcd_coord_beat(struct mcd_client *client, struct mcd_coord *coord)
{
	struct mcd_call call;
	char name[64], key[MCD_KEY_MAX + 1];
	size_t key_len;
	long lease_s;

	pthread_mutex_lock(&coord->lock);
	snprintf(name, sizeof(name), "hb:%s", coord->inc);
	lease_s = coord->lease_s;
	pthread_mutex_unlock(&coord->lock);
	if (mcd_registry_call(client, name, &call, key, &key_len) == MEMCACHED_SUCCESS) {
		mcd_call_end(client, &call, memcached_set_by_key(call.memc, call.key, call.key_len, key, key_len, "1", 1,
			(time_t) lease_s, 0));
	}
}

/* Whether the registry's list names word now. */
static bool listed_now(struct mcd_client *client, const char *word)
{
	char *list = malloc(MCD_REGISTRY_MAX);
	uint64_t cas;
	bool found = list && mcd_registry_get(client, "nodes", list, &cas) == MEMCACHED_SUCCESS
		&& mcd_listed(list, word);

	free(list);
	return found;
}

mcd_rc mcd_coord_enlist(struct mcd_client *client, struct mcd_coord *coord, bool again)
{
	struct mcd_call call;
	char word[MCD_ENTRY_MAX + 2], inc[MCD_INC_LEN + 1], name[64], key[MCD_KEY_MAX + 1];
	size_t key_len;
	long lease_s;
	bool listed;
	mcd_rc rc;

	pthread_mutex_lock(&coord->lock);
	snprintf(word, sizeof(word), " %s/%s", coord->node, coord->inc);
	snprintf(inc, sizeof(inc), "%s", coord->inc);
	lease_s = coord->lease_s;
	listed = coord->listed;
	pthread_mutex_unlock(&coord->lock);
	if (listed && !again) {
		return MEMCACHED_SUCCESS;
	}
	if (listed && listed_now(client, word + 1)) {
		return MEMCACHED_SUCCESS;
	}
	/* The heartbeat first: an entry without one would be retired at once. */
	snprintf(name, sizeof(name), "hb:%s", inc);
	if ((rc = mcd_registry_call(client, name, &call, key, &key_len)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	rc = mcd_call_end(client, &call, memcached_set_by_key(call.memc, call.key, call.key_len, key, key_len, "1", 1,
		(time_t) lease_s, 0));
	if (rc == MEMCACHED_SUCCESS && (rc = mcd_registry_append(client, "nodes", word)) == MEMCACHED_SUCCESS) {
		pthread_mutex_lock(&coord->lock);
		/* Listed before and gone from the list: memcached lost the registry, the index with it. */
		coord->reindex = coord->reindex || (listed && !strcmp(coord->inc, inc));
		coord->listed = coord->listed || !strcmp(coord->inc, inc);
		pthread_mutex_unlock(&coord->lock);
	}
	return rc;
}

struct rejoin {
	char category[MCD_NAME_MAX + 1];
	char group[MCD_NAME_MAX + 1];
	long members;
};

struct rejoins {
	struct rejoin *list;
	size_t count, room;
	long until;
};

static void take_group(struct local_group *g, void *arg)
{
	struct rejoins *r = arg;

	g->indexed = false;
	g->suspect_until = r->until;
	g->has_reading = false;
	if (g->members > 0 && r->count < r->room) {
		struct rejoin *j = &r->list[r->count++];

		snprintf(j->category, sizeof(j->category), "%s", g->category);
		snprintf(j->group, sizeof(j->group), "%s", g->group);
		j->members = g->members;
	}
}

/* Count group's members under this incarnation: its count made and listed, then stepped with
 * the counter (joins meanwhile add their own). */
static void rejoin(struct mcd_client *client, const char *inc, const struct rejoin *j)
{
	struct group_keys k;
	struct mcd_call call;
	uint64_t ignored;

	if (mcd_group_keys(client, j->category, j->group, inc, &k) != MEMCACHED_SUCCESS
		|| mcd_index_add(client, inc, j->category, j->group) != MEMCACHED_SUCCESS) {
		return;
	}
	call.key_len = k.master_len;
	memcpy(call.key, k.master, k.master_len + 1);
	if (mcd_call_begin(client, mcd_counter_pool(client), &call) != MEMCACHED_SUCCESS) {
		return;
	}
	mcd_group_add(call.memc, &k, false, 0);
	mcd_step_noreply(call.memc, k.master, k.master_len, k.count, k.count_len, j->members);
	mcd_call_end(client, &call, mcd_step(call.memc, k.master, k.master_len, k.master, k.master_len, j->members,
		&ignored));
}

/* This incarnation was retired while alive (a stall longer than the lease): every member is
 * counted again under a new one, whose keys no tombstone touches. Its groups stay suspect a
 * while: a join or leave under way across the change is repaired on quiet readings. */
void mcd_coord_reincarnate(struct mcd_client *client, struct mcd_coord *coord)
{
	struct rejoins r = { .count = 0 };
	char inc[MCD_INC_LEN + 1];

	pthread_mutex_lock(&coord->lock);
	r.room = mcd_local_count(coord);
	r.list = calloc(r.room + 1, sizeof(*r.list));
	r.room = r.list ? r.room : 0;
	r.until = mcd_monotonic_s() + 2 * coord->lease_s;
	mcd_coord_new_incarnation(coord);
	coord->listed = false;
	snprintf(inc, sizeof(inc), "%s", coord->inc);
	mcd_local_each(coord, take_group, &r);
	pthread_mutex_unlock(&coord->lock);
	mcd_coord_enlist(client, coord, false);
	for (size_t i = 0; i < r.count; i++) {
		rejoin(client, inc, &r.list[i]);
		/* Thousands of groups take seconds: the heartbeat goes on meanwhile. */
		if (i % 256 == 255) {
			mcd_coord_beat(client, coord);
		}
	}
	free(r.list);
}

