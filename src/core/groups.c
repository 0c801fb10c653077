/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * groups: joining, leaving and counting call groups across the cluster, on
 * the call path, and putting back a share memcached lost. The design is in
 * coord.h and the README.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_private.h"
#include "util.h"

mcd_rc mcd_group_share_again(memcached_st *memc, const struct group_keys *k, long members, uint64_t *value)
{
	mcd_rc rc = mcd_group_add(memc, k, false, members);

	if (rc != MEMCACHED_SUCCESS) {
		/* Made again meanwhile (a join, a tick), or memcached away: nothing to add. */
		return rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS ? MEMCACHED_NOTSTORED : rc;
	}
	/* Lost with the count, or made again since without this share: the counter takes it. */
	mcd_group_add(memc, k, true, 0);
	return mcd_step(memc, k->master, k->master_len, k->master, k->master_len, members, value);
}

/* --- joining, leaving, counting --- */

/* This node's use of group begins: its count (and the group's counter, where it is new) made
 * and the group listed in the incarnation's index, all waited for, before anything is counted
 * (a retirement finds what is listed). */
static mcd_rc first_use(struct mcd_client *client, const char *inc, const char *category, const char *group,
	const struct group_keys *k)
{
	struct mcd_call call = { .key_len = k->master_len };
	mcd_rc rc;

	memcpy(call.key, k->master, k->master_len + 1);
	if ((rc = mcd_call_begin(client, mcd_counter_pool(client), &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	/* The counter too, for a group new to the cluster: racing first joins then all step it. */
	rc = mcd_group_add(call.memc, k, false, 0);
	if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) {
		/* Left from before this group was unlisted here, and set to expire: kept again. */
		rc = memcached_touch_by_key(call.memc, k->master, k->master_len, k->count, k->count_len, 0);
	}
	if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND) {
		rc = mcd_group_add(call.memc, k, true, 0);
	}
	rc = mcd_call_end(client, &call, rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS
		? MEMCACHED_SUCCESS : rc);
	return rc == MEMCACHED_SUCCESS ? mcd_index_add(client, inc, category, group) : rc;
}

/* One join under way, on the connection of its group's server. */
struct joining {
	struct mcd_client *client;
	struct mcd_coord *coord;
	memcached_st *memc;
	const char *category, *group, *inc;
	struct group_keys k;
	uint64_t limit;
};

/* Step the counter, then the count, by delta, without waiting (a leave's order). */
static void step_back(const struct joining *j, int64_t delta)
{
	mcd_step_noreply(j->memc, j->k.master, j->k.master_len, j->k.master, j->k.master_len, delta);
	mcd_step_noreply(j->memc, j->k.master, j->k.master_len, j->k.count, j->k.count_len, delta);
}

/* A join found the count or the counter missing: memcached lost them. Where it lost this node's
 * count, the share goes back with this join, and the node is listed again with the group (the
 * registry likely went too) before the join counts; else the counter alone was lost (evicted):
 * made again empty with this join, and the group repaired as suspect. *value: the counter. */
static mcd_rc recover(const struct joining *j, uint64_t *value)
{
	const struct group_keys *k = &j->k;
	struct local_group *g;
	long members;
	mcd_rc rc;

	pthread_mutex_lock(&j->coord->lock);
	members = (g = mcd_local_group(j->coord, j->category, j->group, false)) ? g->members : 0;
	pthread_mutex_unlock(&j->coord->lock);
	/* Suspect whatever happens: leaves sent while the keys were gone stepped nothing, and
	 * another node may be putting its share back at the same moment. */
	mcd_local_suspect(j->coord, j->category, j->group);
	if ((rc = mcd_group_share_again(j->memc, k, members + 1, value)) == MEMCACHED_SUCCESS
		&& ((rc = mcd_coord_enlist(j->client, j->coord, true)) != MEMCACHED_SUCCESS
		|| (rc = mcd_index_add(j->client, j->inc, j->category, j->group)) != MEMCACHED_SUCCESS)) {
		/* Not where a retirement would look: this join goes, the rest is listed by the tick. */
		step_back(j, -1);
		pthread_mutex_lock(&j->coord->lock);
		j->coord->reindex = true;
		pthread_mutex_unlock(&j->coord->lock);
	}
	if (rc != MEMCACHED_NOTSTORED) {
		return rc;
	}
	mcd_group_add(j->memc, k, true, 0);
	return mcd_step(j->memc, k->master, k->master_len, k->master, k->master_len, 1, value);
}

/* The count, then the counter, on one connection: memcached applies them in that order. Where
 * memcached may have restarted since the last tick (unsure), the count's step is waited for: a
 * count it lost goes back at once. */
static mcd_rc admit(const struct joining *j, bool unsure)
{
	const struct group_keys *k = &j->k;
	uint64_t value;
	int64_t members;
	mcd_rc rc = unsure ? mcd_step(j->memc, k->master, k->master_len, k->count, k->count_len, 1, &value)
		: mcd_step_noreply(j->memc, k->master, k->master_len, k->count, k->count_len, 1);

	if (rc == MEMCACHED_SUCCESS) {
		rc = mcd_step(j->memc, k->master, k->master_len, k->master, k->master_len, 1, &value);
	}
	if (rc == MEMCACHED_NOTFOUND) {
		/* The count or the counter is gone: recover tells which. */
		rc = recover(j, &value);
	} else if (rc != MEMCACHED_SUCCESS) {
		/* Counted or not, nobody knows: the count goes back, the tick settles the rest. */
		mcd_step_noreply(j->memc, k->master, k->master_len, k->count, k->count_len, -1);
	}
	if (rc != MEMCACHED_SUCCESS) {
		mcd_local_suspect(j->coord, j->category, j->group);
		return rc;
	}
	members = (int64_t) (value - MCD_GROUP_OFFSET);
	if (j->limit && members > (int64_t) j->limit) {
		/* The counter decides: of racing joins, those past the limit step back (counter first,
		 * as a leave: a reading never sees the counter above the counts). */
		step_back(j, -1);
		return MCD_GROUP_FULL;
	}
	return MEMCACHED_SUCCESS;
}

static mcd_rc count_in(struct joining *j, bool first, bool *listed)
{
	struct mcd_call call = { .key_len = j->k.master_len };
	mcd_rc rc;

	/* The incarnation in the registry, then the group in its index, before anything is
	 * counted: a crash right after is retired like any other. */
	if (first) {
		if ((rc = mcd_coord_enlist(j->client, j->coord, false)) != MEMCACHED_SUCCESS
			|| (rc = first_use(j->client, j->inc, j->category, j->group, &j->k)) != MEMCACHED_SUCCESS) {
			return rc;
		}
		*listed = true;
	}
	memcpy(call.key, j->k.master, j->k.master_len + 1);
	if ((rc = mcd_call_begin(j->client, mcd_counter_pool(j->client), &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	j->memc = call.memc;
	return mcd_call_end(j->client, &call, admit(j, mcd_coord_unsure(j->coord, j->client)));
}

static mcd_rc join(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group, uint64_t limit)
{
	char inc[MCD_INC_LEN + 1];
	struct joining j = { .client = client, .coord = coord, .category = category, .group = group, .inc = inc,
		.limit = limit };
	struct local_group *g;
	bool first, listed = false;
	mcd_rc rc;

	if (!mcd_coord_supported(client)) {
		return MEMCACHED_NOT_SUPPORTED;
	}
	pthread_mutex_lock(&coord->lock);
	snprintf(inc, sizeof(inc), "%s", coord->inc);
	if ((rc = mcd_group_keys(client, category, group, inc, &j.k)) == MEMCACHED_SUCCESS
		&& !(g = mcd_local_group(coord, category, group, true))) {
		rc = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	}
	if (rc != MEMCACHED_SUCCESS) {
		pthread_mutex_unlock(&coord->lock);
		return rc;
	}
	/* Pending: the tick neither unlists the group nor repairs its count meanwhile; one that it
	 * is unlisting now, it keeps. */
	g->pending++;
	g->rejoined = g->rejoined || g->unlisting;
	first = !g->indexed || g->unlisting;
	pthread_mutex_unlock(&coord->lock);

	rc = count_in(&j, first, &listed);
	pthread_mutex_lock(&coord->lock);
	if ((g = mcd_local_group(coord, category, group, true))) {
		g->pending--;
		g->indexed = g->indexed || listed;
		g->members += rc == MEMCACHED_SUCCESS;
	}
	pthread_mutex_unlock(&coord->lock);
	return rc;
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
	struct group_keys k;
	struct local_group *g = NULL;
	struct mcd_call call;
	uint64_t value;
	mcd_rc rc;

	pthread_mutex_lock(&coord->lock);
	if ((rc = mcd_group_keys(client, category, group, coord->inc, &k)) == MEMCACHED_SUCCESS
		&& (!(g = mcd_local_group(coord, category, group, false)) || g->members <= 0)) {
		rc = MEMCACHED_NOTFOUND;
	}
	if (rc == MEMCACHED_SUCCESS) {
		g->members--;
		g->pending++;
		g->empty_since = g->members ? g->empty_since : mcd_monotonic_s();
	}
	pthread_mutex_unlock(&coord->lock);
	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	call.key_len = k.master_len;
	memcpy(call.key, k.master, k.master_len + 1);
	if ((rc = mcd_call_begin(client, mcd_counter_pool(client), &call)) == MEMCACHED_SUCCESS) {
		/* Counter first, count second, on one connection (a join's order reversed): a reading
		 * of the counter, then the counts, never finds the counter above them unless
		 * something failed. Both are written before any wait: a crash between them cannot
		 * leave the count ahead of the counter. */
		rc = mcd_step_noreply(call.memc, k.master, k.master_len, k.master, k.master_len, -1);
		if (rc == MEMCACHED_SUCCESS) {
			rc = mcd_step_noreply(call.memc, k.master, k.master_len, k.count, k.count_len, -1);
		}
		if (rc == MEMCACHED_SUCCESS && !noreply) {
			/* Waited for (a step of 0 answers after both): the channel that leaves and then
			 * counts sees its own leave. A counter memcached lost is the tick's to put back. */
			rc = mcd_step(call.memc, k.master, k.master_len, k.master, k.master_len, 0, &value);
			rc = rc == MEMCACHED_NOTFOUND ? MEMCACHED_SUCCESS : rc;
		}
		rc = mcd_call_end(client, &call, rc);
	}
	if (!memcached_success(rc)) {
		mcd_local_suspect(coord, category, group);
	}
	pthread_mutex_lock(&coord->lock);
	if ((g = mcd_local_group(coord, category, group, false))) {
		g->pending--;
	}
	pthread_mutex_unlock(&coord->lock);
	return noreply && memcached_success(rc) ? MCD_SENT : rc;
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
	if (rc == MEMCACHED_SUCCESS && !mcd_coord_supported(client)) {
		rc = MEMCACHED_NOT_SUPPORTED;
	}
	if (rc == MEMCACHED_SUCCESS && (rc = mcd_call_begin(client, &client->main, &call)) == MEMCACHED_SUCCESS) {
		size_t len;
		uint32_t flags;
		memcached_return_t got;
		char *text = memcached_get(call.memc, call.key, call.key_len, &len, &flags, &got);

		if (text) {
			int64_t members = mcd_offset_value(text, len);

			/* Below the offset only after a failure (a rebuild short of a count): none. */
			*count = members > 0 ? (uint64_t) members : 0;
			free(text);
		}
		/* No counter: nobody is in the group. */
		rc = mcd_call_end(client, &call, got == MEMCACHED_NOTFOUND ? MEMCACHED_SUCCESS : got);
	}
	return mcd_stats_record(client->stats, MCD_OP_GROUP, started, rc);
}
