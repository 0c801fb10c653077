/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * coord: a node's coordination state (its members per group, its locks), the
 * keys of a group, and how the node publishes what it knows. Groups are in
 * groups.c, locks in locks.c; the design is in coord.h and the README.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coord_private.h"
#include "util.h"

bool mcd_coord_name_valid(const char *name, bool colon_allowed)
{
	size_t len = strlen(name);

	return len <= MCD_NAME_MAX && mcd_is_token(name, len) && (colon_allowed || !strchr(name, ':'));
}

struct mcd_coord *mcd_coord_create(const char *node_id, long lease_s)
{
	struct mcd_coord *coord = calloc(1, sizeof(*coord));

	if (!coord) {
		return NULL;
	}
	pthread_mutex_init(&coord->lock, NULL);
	mcd_coord_configure(coord, node_id, lease_s);
	return coord;
}

void mcd_coord_destroy(struct mcd_coord *coord)
{
	if (!coord) {
		return;
	}
	for (int b = 0; b < MCD_COORD_BUCKETS; b++) {
		while (coord->groups[b]) {
			struct local_group *g = coord->groups[b];

			coord->groups[b] = g->next;
			free(g);
		}
	}
	while (coord->locks) {
		struct held_lock *l = coord->locks;

		coord->locks = l->next;
		free(l);
	}
	pthread_mutex_destroy(&coord->lock);
	free(coord);
}

void mcd_coord_configure(struct mcd_coord *coord, const char *node_id, long lease_s)
{
	pthread_mutex_lock(&coord->lock);
	snprintf(coord->node, sizeof(coord->node), "%s", node_id);
	coord->lease_s = lease_s < 2 ? 2 : lease_s;
	pthread_mutex_unlock(&coord->lock);
}

void mcd_coord_node(struct mcd_coord *coord, char *buf, size_t len)
{
	pthread_mutex_lock(&coord->lock);
	snprintf(buf, len, "%s", coord->node);
	pthread_mutex_unlock(&coord->lock);
}

long mcd_coord_lease(struct mcd_coord *coord)
{
	long lease_s;

	pthread_mutex_lock(&coord->lock);
	lease_s = coord->lease_s;
	pthread_mutex_unlock(&coord->lock);
	return lease_s;
}

/* FNV-1a of "category:group": the bucket of a group in this node's table. */
static unsigned int bucket(const char *category, const char *group)
{
	unsigned int h = 2166136261u;

	for (const char *p = category; *p; p++) {
		h = (h ^ (unsigned char) *p) * 16777619u;
	}
	h = (h ^ ':') * 16777619u;
	for (const char *p = group; *p; p++) {
		h = (h ^ (unsigned char) *p) * 16777619u;
	}
	return h % MCD_COORD_BUCKETS;
}

struct local_group *mcd_local_group(struct mcd_coord *coord, const char *category, const char *group,
	bool create)
{
	unsigned int b = bucket(category, group);
	struct local_group *g;

	for (g = coord->groups[b]; g; g = g->next) {
		if (!strcmp(g->category, category) && !strcmp(g->group, group)) {
			return g;
		}
	}
	if (!create || !(g = calloc(1, sizeof(*g)))) {
		return NULL;
	}
	snprintf(g->category, sizeof(g->category), "%s", category);
	snprintf(g->group, sizeof(g->group), "%s", group);
	g->next = coord->groups[b];
	coord->groups[b] = g;
	return g;
}

void mcd_local_forget(struct mcd_coord *coord, const char *category, const char *group)
{
	for (struct local_group **g = &coord->groups[bucket(category, group)]; *g; g = &(*g)->next) {
		if (!strcmp((*g)->category, category) && !strcmp((*g)->group, group)) {
			struct local_group *gone = *g;

			*g = gone->next;
			free(gone);
			return;
		}
	}
}

long mcd_group_local(struct mcd_coord *coord, const char *category, const char *group)
{
	struct local_group *g;
	long members;

	pthread_mutex_lock(&coord->lock);
	g = mcd_local_group(coord, category, group, false);
	members = g ? g->members : 0;
	pthread_mutex_unlock(&coord->lock);
	return members;
}

void mcd_coord_totals(struct mcd_coord *coord, long *members, long *locks)
{
	*members = 0;
	*locks = 0;
	pthread_mutex_lock(&coord->lock);
	for (int b = 0; b < MCD_COORD_BUCKETS; b++) {
		for (struct local_group *g = coord->groups[b]; g; g = g->next) {
			*members += g->members;
		}
	}
	for (struct held_lock *l = coord->locks; l; l = l->next) {
		(*locks)++;
	}
	pthread_mutex_unlock(&coord->lock);
}

mcd_rc mcd_group_key(const struct mcd_client *client, const char *category, const char *group,
	const char *suffix, char out[MCD_KEY_MAX + 1], size_t *len)
{
	char key[3 * MCD_NAME_MAX + 16];

	if (!group[0]) {
		return MCD_ARGUMENT_NEEDED;
	}
	/* No ':' in either: the keys of two groups, or of a group and a node's count, never meet. */
	if (!mcd_coord_name_valid(category, false) || !mcd_coord_name_valid(group, false)) {
		return strlen(category) > MCD_NAME_MAX || strlen(group) > MCD_NAME_MAX ? MCD_KEY_TOO_LONG
			: MEMCACHED_BAD_KEY_PROVIDED;
	}
	snprintf(key, sizeof(key), "group:%s:%s%s%s", category, group, suffix ? ":" : "",
		suffix ? suffix : "");
	return mcd_client_own_key(client, key, out, len);
}

mcd_rc mcd_publication(const struct mcd_client *client, const struct mcd_coord *coord, const char *category,
	const char *group, long members, struct mcd_publication *p)
{
	mcd_rc rc = mcd_group_key(client, category, group, NULL, p->master, &p->master_len);

	if (rc == MEMCACHED_SUCCESS) {
		rc = mcd_group_key(client, category, group, coord->node, p->key, &p->key_len);
	}
	mcd_publication_count(p, members);
	/* The count lives half a lease: renewed every quarter, it survives one missed tick. */
	p->ttl = (time_t) (coord->lease_s / 2);
	p->step_down = false;
	return rc;
}

void mcd_publication_count(struct mcd_publication *p, long members)
{
	p->value_len = (size_t) snprintf(p->value, sizeof(p->value), "%ld", members);
}

/* One publication on the ordered connection (its lock held), skipped while the group's server
 * rests: a dead server would otherwise cost each write a connect_timeout. */
static mcd_rc send_ordered(struct mcd_client *client, const struct mcd_publication *p)
{
	const uint32_t server = mcd_tracks_health(client)
		? memcached_generate_hash(client->ordered, p->master, p->master_len) : MCD_NO_SERVER;
	uint64_t ignored;
	mcd_rc rc;

	if (mcd_server_resting(client, server)) {
		return MEMCACHED_SERVER_TEMPORARILY_DISABLED;
	}
	rc = memcached_set_by_key(client->ordered, p->master, p->master_len, p->key, p->key_len, p->value,
		p->value_len, p->ttl, 0);
	if (memcached_success(rc) && p->step_down) {
		rc = memcached_decrement_by_key(client->ordered, p->master, p->master_len, p->master,
			p->master_len, 1, &ignored);
	}
	/* Nothing comes back from these writes: only a failure to send says something. */
	if (mcd_rc_outcome(rc) == MCD_OUTCOME_FAULT) {
		mcd_note_server(client, server, rc);
	}
	return mcd_sent(memcached_success(rc) ? MEMCACHED_SUCCESS : rc);
}

static mcd_rc send_confirmed(struct mcd_client *client, const struct mcd_publication *p)
{
	struct mcd_call call = { .key_len = p->master_len };
	mcd_rc rc;

	memcpy(call.key, p->master, p->master_len + 1);
	if ((rc = mcd_call_begin(client, &client->main, &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	return mcd_call_end(client, &call, memcached_set_by_key(call.memc, p->master, p->master_len, p->key,
		p->key_len, p->value, p->value_len, p->ttl, 0));
}

/* The ordered connection stayed busy: each count goes on a connection of its own, waited
 * for (a count left for the next tick would read as a gap to heal), then a leave's step of
 * the counter. Another publication may overtake one of these: the next tick sets it right. */
static mcd_rc publish_confirmed(struct mcd_client *client, const struct mcd_publication *p, size_t count)
{
	mcd_rc rc = MEMCACHED_SUCCESS;

	for (size_t i = 0; i < count; i++) {
		struct mcd_call call = { .key_len = p[i].master_len };
		uint64_t ignored;

		rc = send_confirmed(client, &p[i]);
		if (!p[i].step_down) {
			continue;
		}
		memcpy(call.key, p[i].master, p[i].master_len + 1);
		if ((rc = mcd_call_begin(client, mcd_counter_pool(client), &call)) == MEMCACHED_SUCCESS) {
			rc = mcd_call_end(client, &call, mcd_counter_step(call.memc, call.key, call.key_len, call.key,
				call.key_len, -1, 0, &ignored));
		}
	}
	return rc;
}

mcd_rc mcd_publish_unlock(struct mcd_client *client, struct mcd_coord *coord,
	const struct mcd_publication *p, size_t count)
{
	mcd_rc rc = MEMCACHED_SUCCESS;

	if (client->ordered) {
		/* Taken before coord->lock goes: the next count of this node waits its turn, but
		 * not past one timeout (a hung server can fill the connection's buffer). */
		struct timespec deadline = mcd_monotonic_after_ms(client->settings.timeout_ms);

		if (pthread_mutex_clocklock(&client->ordered_lock, CLOCK_MONOTONIC, &deadline)) {
			pthread_mutex_unlock(&coord->lock);
			return publish_confirmed(client, p, count);
		}
		pthread_mutex_unlock(&coord->lock);
		mcd_reconnect_if_stale(client, client->ordered, &client->ordered_slot);
		for (size_t i = 0; i < count; i++) {
			rc = send_ordered(client, &p[i]);
		}
		client->ordered_slot.last_used_us = mcd_now_us();
		pthread_mutex_unlock(&client->ordered_lock);
	} else {
		pthread_mutex_unlock(&coord->lock);
		for (size_t i = 0; i < count; i++) {
			rc = send_confirmed(client, &p[i]);
		}
	}
	return rc;
}
