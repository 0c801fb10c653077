/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * coord: coordination between Asterisk servers that share memcached: call
 * groups counted across the cluster, that heal themselves when a server
 * dies or memcached forgets, and locks that only their owner releases.
 *
 * Each Asterisk (a node, named by node_id) has one mcd_coord: the members it
 * has in each group, and the locks it holds. It outlives client swaps on
 * reload; every operation takes the client to talk through.
 *
 * In memcached, per group (all of a group's keys on one server):
 *   mcdgroup:CATEGORY:GROUP          the admission counter: joins incr it, leaves
 *                                    decr it, a join over the limit takes its step back
 *   mcdgroup:CATEGORY:GROUP:NODE     what NODE knows for sure: its own members, written
 *                                    at each change and every lease/4, expiring after lease/2
 *   mcdgroupfix:CATEGORY:GROUP       a short lock: one node at a time corrects the counter
 * and for the cluster (registry.c): mcdnodes and mcdgroups, the node ids and groups in use,
 * and mcdnode:NODE, each node's heartbeat, without which a node leaves mcdnodes.
 * mcd_coord_tick, off the call path every lease/4, compares the counter with the
 * sum of the published counts; a gap seen twice in a row (a dead node's members,
 * a counter memcached lost) is corrected with one incr or decr, which commutes
 * with the joins and leaves under way.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_COORD_H
#define MCD_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"

/* A lock's owner token: node, a label of the holder, and a number unique in this node. */
#define MCD_TOKEN_MAX 200

struct mcd_coord;

/*! A node's coordination state, named node_id (one word), whose published counts live
 * lease_s seconds (see mcd_coord_tick). NULL when out of memory. */
struct mcd_coord *mcd_coord_create(const char *node_id, long lease_s);

/*! Free it; its members and locks are left to expire in memcached. */
void mcd_coord_destroy(struct mcd_coord *coord);

/*! Rename the node and set its lease (on reload): later publications use them, the old
 * ones expire. */
void mcd_coord_configure(struct mcd_coord *coord, const char *node_id, long lease_s);

/*! The node's name, copied into buf (a reload may rename it meanwhile). */
void mcd_coord_node(struct mcd_coord *coord, char *buf, size_t len);

/*! The node's group_lease, in seconds. */
long mcd_coord_lease(struct mcd_coord *coord);

/*! True when name can be a node id or lock name (colon_allowed), or a category or a group
 * (no ':': it separates them in keys and lists). */
bool mcd_coord_name_valid(const char *name, bool colon_allowed);

/*!
 * Put one member in group (of category, "" for none), unless limit (> 0) members are in it
 * already across the cluster: then MCD_GROUP_FULL and nothing changes. One round trip.
 */
mcd_rc mcd_group_join(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group, uint64_t limit);

/*! Take one of this node's members out of group (MCD_NOTFOUND when it has none there). */
mcd_rc mcd_group_leave(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group);

/*! The same without waiting for memcached's answer where noreply is offered (MCD_SENT): for
 * channels that end, whose leave nobody waits to see. */
mcd_rc mcd_group_leave_noreply(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group);

/*! The members of group across the cluster (*count 0 when nobody is in it). One round trip. */
mcd_rc mcd_group_count(struct mcd_client *client, const char *category, const char *group,
	uint64_t *count);

/*! This node's members in group. */
long mcd_group_local(struct mcd_coord *coord, const char *category, const char *group);

/* A group as mcd_coord_groups reports it. */
struct mcd_group_report {
	char category[MCD_NAME_MAX + 1];
	char group[MCD_NAME_MAX + 1];
	long here;                   /* this node's members */
	long cluster;                /* the counter, or -1 when it could not be read */
	long published;              /* the sum of the nodes' published counts, or -1 */
};

/*! Report every group in use in the cluster (read now: a round trip per group) through
 * each, up to max groups. Returns how many were reported. */
unsigned int mcd_coord_groups(struct mcd_client *client, struct mcd_coord *coord,
	void (*each)(const struct mcd_group_report *report, void *arg), void *arg, unsigned int max);

/*!
 * Take lock name for ttl seconds, for holder (a label, e.g. the channel's name), waiting up
 * to wait_ms for another holder to let go (0: not at all). On success, token (MCD_TOKEN_MAX)
 * holds what proves ownership. MCD_LOCK_BUSY when someone else kept it.
 */
mcd_rc mcd_lock(struct mcd_client *client, struct mcd_coord *coord, const char *name, long ttl,
	long wait_ms, const char *holder, char *token);

/*! Release lock name if token still owns it: MCD_NOT_LOCKED when it expired or another took it. */
mcd_rc mcd_unlock(struct mcd_client *client, struct mcd_coord *coord, const char *name,
	const char *token);

/* A held lock as mcd_coord_locks reports it. */
struct mcd_lock_report {
	char name[MCD_NAME_MAX + 1];
	char holder[MCD_TOKEN_MAX];
	long held_s;                 /* seconds since it was taken */
	long ttl;                    /* seconds it was taken for */
};

/*! Report the locks this node holds through each. Returns how many. */
unsigned int mcd_coord_locks(struct mcd_coord *coord,
	void (*each)(const struct mcd_lock_report *report, void *arg), void *arg);

/*! How many members this node has in all groups, and how many locks it holds. */
void mcd_coord_totals(struct mcd_coord *coord, long *members, long *locks);

/*!
 * The work off the call path, every lease/4 seconds: publish this node's counts (expiring
 * after lease/2), register the node and its groups, and correct each group's counter where
 * it stayed away from the published truth for two ticks. Returns how many counters it
 * corrected.
 */
unsigned int mcd_coord_tick(struct mcd_client *client, struct mcd_coord *coord);

#endif
