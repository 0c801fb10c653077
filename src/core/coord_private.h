/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * coord_private: what coord.c, groups.c and locks.c share: a node's state,
 * the keys of a group, and publishing this node's count.
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
	long gap;                    /* counter minus published sum, at the last tick */
	bool gap_seen;               /* a gap other than 0 was measured at the last tick */
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
};

/*! Seconds on the monotonic clock. */
long mcd_monotonic_s(void);

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

/*! Write this node's count of g (coord locked), in order with its earlier counts. */
void mcd_publish(struct mcd_client *client, struct mcd_coord *coord, const struct local_group *g);

#endif
