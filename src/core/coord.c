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

long mcd_monotonic_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long) ts.tv_sec;
}

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

const char *mcd_coord_node(const struct mcd_coord *coord)
{
	return coord->node;
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
	if (!mcd_coord_name_valid(category, false) || !mcd_coord_name_valid(group, true)) {
		return strlen(category) > MCD_NAME_MAX || strlen(group) > MCD_NAME_MAX ? MCD_KEY_TOO_LONG
			: MEMCACHED_BAD_KEY_PROVIDED;
	}
	snprintf(key, sizeof(key), "mcdgroup:%s:%s%s%s", category, group, suffix ? ":" : "",
		suffix ? suffix : "");
	return mcd_client_key(client, key, out, len);
}

/* The count lives half a lease: renewed every quarter, it survives one missed tick. Where
 * noreply is offered, one connection carries this node's counts in the order they were
 * made, so a later count never lands before an earlier one; else they are confirmed. */
void mcd_publish(struct mcd_client *client, struct mcd_coord *coord, const struct local_group *g)
{
	char master[MCD_KEY_MAX + 1], key[MCD_KEY_MAX + 1], value[24];
	size_t master_len, key_len;
	const int value_len = snprintf(value, sizeof(value), "%ld", g->members);
	const time_t ttl = (time_t) (coord->lease_s / 2);

	if (mcd_group_key(client, g->category, g->group, NULL, master, &master_len) != MEMCACHED_SUCCESS
		|| mcd_group_key(client, g->category, g->group, coord->node, key, &key_len) != MEMCACHED_SUCCESS) {
		return;
	}
	if (client->ordered) {
		pthread_mutex_lock(&client->ordered_lock);
		memcached_set_by_key(client->ordered, master, master_len, key, key_len, value,
			(size_t) value_len, ttl, 0);
		pthread_mutex_unlock(&client->ordered_lock);
	} else {
		struct mcd_call call = { .key_len = master_len };

		memcpy(call.key, master, master_len + 1);
		if (mcd_call_begin(client, &client->main, &call) == MEMCACHED_SUCCESS) {
			mcd_call_end(client, &call, memcached_set_by_key(call.memc, master, master_len, key,
				key_len, value, (size_t) value_len, ttl, 0));
		}
	}
}
