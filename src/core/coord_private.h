/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * coord_private: what coord.c, groups.c, registry.c and locks.c share: a
 * node's state, the keys of a group, publishing this node's count, and the
 * cluster's registry of nodes and groups.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_COORD_PRIVATE_H
#define MCD_COORD_PRIVATE_H

#include <pthread.h>

#include "client_private.h"
#include "coord.h"

#define MCD_COORD_BUCKETS 256

/* One group this node has had members in, or has seen in the cluster's list. */
struct local_group {
	struct local_group *next;
	char category[MCD_NAME_MAX + 1];
	char group[MCD_NAME_MAX + 1];
	long members;                /* this node's members now */
	long gap;                    /* counter minus published sum at the last tick (0 once corrected) */
	uint64_t counter;            /* the counter at the last tick */
	long others;                 /* the other nodes' published sum at the last tick */
	unsigned long seen_tick;     /* the last tick that reconciled it: a group listed twice is not
	                              * reconciled twice in one tick */
	unsigned int empty_ticks;    /* ticks in a row it was empty everywhere */
};

struct held_lock {
	struct held_lock *next;
	char name[MCD_NAME_MAX + 1];
	char token[MCD_TOKEN_MAX];
	char holder[MCD_TOKEN_MAX];
	long since;                  /* monotonic second it was taken */
	long ttl;
};

struct mcd_coord {
	pthread_mutex_t lock;        /* everything below; held briefly, or for noreply writes */
	char node[MCD_NAME_MAX + 1];
	long lease_s;
	struct local_group *groups[MCD_COORD_BUCKETS];
	struct held_lock *locks;
	unsigned long next_token;
	unsigned long ticks;         /* ticks run so far */
};

/*! The entry of group (coord locked), made if create and missing; NULL if not there. */
struct local_group *mcd_local_group(struct mcd_coord *coord, const char *category, const char *group,
	bool create);

/*! Forget group's entry (coord locked). */
void mcd_local_forget(struct mcd_coord *coord, const char *category, const char *group);

/*!
 * The key "mcdgroup:CATEGORY:GROUP[:SUFFIX]" with the prefix into out. The counter's (no
 * suffix) is also the master key that puts all of a group's keys on one server.
 */
mcd_rc mcd_group_key(const struct mcd_client *client, const char *category, const char *group,
	const char *suffix, char out[MCD_KEY_MAX + 1], size_t *len);

/* What this node publishes of one group: its count, and where a hangup wants it, the
 * counter's step down, sent in the same order on the same connection. */
struct mcd_publication {
	char master[MCD_KEY_MAX + 1];
	size_t master_len;
	char key[MCD_KEY_MAX + 1];
	size_t key_len;
	char value[24];
	size_t value_len;
	time_t ttl;
	bool step_down;
};

/*! Prepare the publication of this node's members of group (coord locked): its keys, which it
 * checks as mcd_group_key does, and its count. */
mcd_rc mcd_publication(const struct mcd_client *client, const struct mcd_coord *coord, const char *category,
	const char *group, long members, struct mcd_publication *p);

/*! Set the count of a prepared publication (its keys stay). */
void mcd_publication_count(struct mcd_publication *p, long members);

/*!
 * Release coord->lock (which the caller holds) and send the count publications, no network wait
 * under it. Where noreply is offered they go without waiting, on one connection taken before
 * coord->lock is let go, so that this node's counts reach memcached in the order they were
 * made; else each is confirmed. Returns the last send's result (MCD_SENT without waiting).
 */
mcd_rc mcd_publish_unlock(struct mcd_client *client, struct mcd_coord *coord,
	const struct mcd_publication *p, size_t count);

/* --- the cluster's registry (registry.c) --- */

/* Room for one list of the registry as read back: a longer one is an error, never cut short. */
#define MCD_REGISTRY_MAX (256 * 1024)

/* The registry as one tick read it: the lists and their versions (0 when missing). */
struct mcd_registry {
	char *nodes;                 /* mcdnodes: node ids, space-separated */
	char *groups;                /* mcdgroups: "category:group" entries, space-separated */
	uint64_t nodes_cas;
	uint64_t groups_cas;
};

/*! Read both lists into r (free it with mcd_registry_free, whatever this returns). */
mcd_rc mcd_registry_read(struct mcd_client *client, struct mcd_registry *r);

void mcd_registry_free(struct mcd_registry *r);

/*! Write this node's heartbeat, list the node if r lacks it, and take out of mcdnodes the
 * nodes whose heartbeat has expired. */
void mcd_registry_keep(struct mcd_client *client, struct mcd_coord *coord, const struct mcd_registry *r);

/*! Add the words (" cat:group ...") to mcdgroups. */
void mcd_registry_enlist_groups(struct mcd_client *client, const char *words);

/*! Take the words (" cat:group ...") out of mcdgroups, unless it changed since r was read. */
void mcd_registry_unlist_groups(struct mcd_client *client, const struct mcd_registry *r, const char *words);

#endif
