/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * coord: a node's coordination state (its incarnation, its members per group,
 * its locks), the keys of a group and the steps of its counters. Groups are in
 * groups.c, the registry of incarnations in registry.c, the tick in tick.c,
 * locks in locks.c; the design is in coord.h and the README.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "coord_private.h"
#include "util.h"

bool mcd_coord_name_valid(const char *name, bool colon_allowed)
{
	size_t len = strlen(name);

	return len <= MCD_NAME_MAX && mcd_is_token(name, len) && (colon_allowed || !strchr(name, ':'));
}

bool mcd_coord_supported(const struct mcd_client *client)
{
	/* Where libmemcached moves keys away from a failed server, the client leaves health to it. */
	return mcd_tracks_health(client);
}

void mcd_coord_new_incarnation(struct mcd_coord *coord)
{
	uint64_t id = 0;

	/* Random, so that no restart, clone or second Asterisk with the same node id meets it. */
	if (getrandom(&id, sizeof(id), 0) != (ssize_t) sizeof(id)) {
		id = (uint64_t) mcd_now_us() * 6364136223846793005ULL + (uint64_t) getpid() + (uint64_t) time(NULL);
	}
	snprintf(coord->inc, sizeof(coord->inc), "%016llx", (unsigned long long) id);
}

struct mcd_coord *mcd_coord_create(const char *node_id, long lease_s)
{
	struct mcd_coord *coord = calloc(1, sizeof(*coord));

	if (!coord) {
		return NULL;
	}
	pthread_mutex_init(&coord->lock, NULL);
	/* A minute: a call limit per extension comes back often, and each unlisting costs writes. */
	coord->unlist_after_s = 60;
	mcd_coord_new_incarnation(coord);
	mcd_coord_configure(coord, node_id, lease_s);
	return coord;
}

static void free_locks(struct held_lock *l)
{
	while (l) {
		struct held_lock *next = l->next;

		free(l);
		l = next;
	}
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
	free_locks(coord->locks);
	free_locks(coord->orphans);
	free(coord->incarnations);
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

void mcd_coord_set_unlist_after(struct mcd_coord *coord, long seconds)
{
	pthread_mutex_lock(&coord->lock);
	coord->unlist_after_s = seconds;
	pthread_mutex_unlock(&coord->lock);
}

void mcd_coord_node(struct mcd_coord *coord, char *buf, size_t len)
{
	pthread_mutex_lock(&coord->lock);
	snprintf(buf, len, "%s", coord->node);
	pthread_mutex_unlock(&coord->lock);
}

void mcd_coord_self(struct mcd_coord *coord, char *self, size_t len)
{
	pthread_mutex_lock(&coord->lock);
	snprintf(self, len, "%s/%s", coord->node, coord->inc);
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

char *mcd_coord_incarnations(struct mcd_coord *coord)
{
	char *list;

	pthread_mutex_lock(&coord->lock);
	/* The tick's list names this incarnation once registered; before that, only it is known. */
	if (coord->incarnations && mcd_listed(coord->incarnations, coord->inc)) {
		list = strdup(coord->incarnations);
	} else if ((list = malloc(strlen(coord->incarnations ? coord->incarnations : "") + MCD_INC_LEN + 2))) {
		sprintf(list, "%s %s", coord->incarnations ? coord->incarnations : "", coord->inc);
	}
	pthread_mutex_unlock(&coord->lock);
	return list;
}

unsigned int mcd_group_hash(const char *category, const char *group)
{
	uint32_t h = 2166136261u;

	for (const char *p = category; *p; p++) {
		h = (h ^ (unsigned char) *p) * 16777619u;
	}
	h = (h ^ ':') * 16777619u;
	for (const char *p = group; *p; p++) {
		h = (h ^ (unsigned char) *p) * 16777619u;
	}
	/* FNV-1a's low bits follow the last bytes: mixed, names that differ in a digit spread. */
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	return h ^ (h >> 16);
}

static unsigned int bucket(const char *category, const char *group)
{
	return mcd_group_hash(category, group) % MCD_COORD_BUCKETS;
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
	g->empty_since = mcd_monotonic_s();
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

void mcd_local_each(struct mcd_coord *coord, void (*visit)(struct local_group *g, void *arg), void *arg)
{
	for (int b = 0; b < MCD_COORD_BUCKETS; b++) {
		for (struct local_group *g = coord->groups[b]; g; g = g->next) {
			visit(g, arg);
		}
	}
}

void mcd_local_suspect(struct mcd_coord *coord, const char *category, const char *group)
{
	struct local_group *g;

	pthread_mutex_lock(&coord->lock);
	if ((g = mcd_local_group(coord, category, group, true))) {
		g->suspect_until = mcd_monotonic_s() + 2 * coord->lease_s;
		g->has_reading = false;
	}
	pthread_mutex_unlock(&coord->lock);
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

static void add_members(struct local_group *g, void *arg)
{
	*(long *) arg += g->members;
}

void mcd_coord_totals(struct mcd_coord *coord, long *members, long *locks)
{
	*members = 0;
	*locks = 0;
	pthread_mutex_lock(&coord->lock);
	mcd_local_each(coord, add_members, members);
	for (struct held_lock *l = coord->locks; l; l = l->next) {
		(*locks)++;
	}
	pthread_mutex_unlock(&coord->lock);
}

mcd_rc mcd_group_key(const struct mcd_client *client, const char *category, const char *group,
	const char *inc, char out[MCD_KEY_MAX + 1], size_t *len)
{
	char key[2 * MCD_NAME_MAX + MCD_INC_LEN + 8];

	if (!group[0]) {
		return MCD_ARGUMENT_NEEDED;
	}
	/* No ':' in either: the keys of two groups, or of a group and a count, never meet. */
	if (!mcd_coord_name_valid(category, false) || !mcd_coord_name_valid(group, false)) {
		return strlen(category) > MCD_NAME_MAX || strlen(group) > MCD_NAME_MAX ? MCD_KEY_TOO_LONG
			: MEMCACHED_BAD_KEY_PROVIDED;
	}
	snprintf(key, sizeof(key), "g:%s:%s%s%s", category, group, inc ? ":" : "", inc ? inc : "");
	return mcd_client_own_key(client, key, out, len);
}

mcd_rc mcd_group_keys(const struct mcd_client *client, const char *category, const char *group,
	const char *inc, struct group_keys *k)
{
	mcd_rc rc = mcd_group_key(client, category, group, NULL, k->master, &k->master_len);

	return rc == MEMCACHED_SUCCESS ? mcd_group_key(client, category, group, inc, k->count, &k->count_len) : rc;
}

mcd_rc mcd_group_add(memcached_st *memc, const struct group_keys *k, bool counter, long members)
{
	char value[24];
	const int len = snprintf(value, sizeof(value), "%llu",
		(unsigned long long) (MCD_GROUP_OFFSET + (uint64_t) members));

	return memcached_add_by_key(memc, k->master, k->master_len, counter ? k->master : k->count,
		counter ? k->master_len : k->count_len, value, (size_t) len, 0, 0);
}

size_t mcd_local_count(struct mcd_coord *coord)
{
	size_t count = 0;

	for (int b = 0; b < MCD_COORD_BUCKETS; b++) {
		for (struct local_group *g = coord->groups[b]; g; g = g->next) {
			count++;
		}
	}
	return count;
}

int64_t mcd_offset_value(const char *text, size_t len)
{
	return (int64_t) (mcd_uint64_of(text, len) - MCD_GROUP_OFFSET);
}

mcd_rc mcd_step(memcached_st *memc, const char *master, size_t master_len, const char *key, size_t key_len,
	int64_t delta, uint64_t *value)
{
	const uint64_t step = (uint64_t) (delta < 0 ? -delta : delta);

	*value = 0;
	return delta < 0 ? memcached_decrement_by_key(memc, master, master_len, key, key_len, step, value)
		: memcached_increment_by_key(memc, master, master_len, key, key_len, step, value);
}

mcd_rc mcd_step_noreply(memcached_st *memc, const char *master, size_t master_len, const char *key,
	size_t key_len, int64_t delta)
{
	uint64_t ignored;
	mcd_rc rc;

	/* Waited for in binary (SASL): libmemcached's quiet counter steps are not trusted there. */
	if (memcached_behavior_get(memc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL)) {
		rc = mcd_step(memc, master, master_len, key, key_len, delta, &ignored);
		return rc == MEMCACHED_NOTFOUND ? MEMCACHED_SUCCESS : rc;
	}
	/* Sent, not waited for; the next request on memc follows it on the same connection. */
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_NOREPLY, 1);
	rc = mcd_step(memc, master, master_len, key, key_len, delta, &ignored);
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_NOREPLY, 0);
	return rc;
}
