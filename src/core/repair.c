/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * repair: a group where this node saw a failure (a reply lost, keys memcached
 * lost), for two leases after it. Joins under way only ever show the counter
 * below the counts (the count goes first on a join, the counter first on a
 * leave), so a difference on the same side at two readings in a row is
 * corrected by the smaller of the two, which no join under way makes too
 * large; this node's own count is set right first where nothing of its own
 * was under way across both readings.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <string.h>

#include "coord_private.h"
#include "util.h"

/* Step group's counter by -gap, unless another node corrected it within a tick (the guard: two
 * nodes that saw the same gap correct it once). */
static bool correct_counter(struct mcd_client *client, struct mcd_coord *coord, memcached_st *memc,
	const struct mcd_checked *c, int64_t gap)
{
	char name[2 * MCD_NAME_MAX + 8], guard[MCD_KEY_MAX + 1];
	size_t guard_len;
	uint64_t ignored;

	snprintf(name, sizeof(name), "fix:%s:%s", c->category, c->group);
	return mcd_client_own_key(client, name, guard, &guard_len) == MEMCACHED_SUCCESS
		&& memcached_add_by_key(memc, c->keys.master, c->keys.master_len, guard, guard_len, "1", 1,
			(time_t) (mcd_coord_lease(coord) / 4 > 1 ? mcd_coord_lease(coord) / 4 : 1), 0) == MEMCACHED_SUCCESS
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

void mcd_group_repair(struct mcd_client *client, struct mcd_coord *coord, struct mcd_checked *c,
	const char *incarnations, const char *inc, struct mcd_tick_report *report)
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

