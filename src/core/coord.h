/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * coord: coordination between Asterisk servers that share memcached: call
 * groups counted across the cluster, and locks that only their owner
 * releases. The whole design, with its bounds, is in the README ("Groups and
 * locks across Asterisk servers"); in short:
 *
 * Each Asterisk (a node, named by node_id) runs as an incarnation: a random id
 * drawn when it starts (or when the cluster retired it while it stalled). In
 * memcached, under the module's own prefix:
 *   g:CATEGORY:GROUP            the admission counter, kept at MCD_GROUP_OFFSET + members
 *                               (never near memcached's floor of 0, so no step is lost)
 *   g:CATEGORY:GROUP:INC        what incarnation INC has put into that counter, also
 *                               offset; stepped with it, on the same connection, first
 *   nodes                       the incarnations ("NODE/INC", or "NODE/INC!BY" while BY
 *                               retires it), on the registry's server with:
 *   hb:INC                      INC's heartbeat, living one lease
 *   ix:INC:N                    INC's groups, in 32 shards: listed before its first join
 * A node that misses its heartbeat is retired by the one survivor that wins the swap
 * of its entry in nodes: it takes each of its counts away from the counters, once
 * (each count is swapped to a tombstone first). A counter memcached lost is rebuilt
 * from the counts. Nothing else ever corrects a counter, except after a failure this
 * node saw (a lost reply, a rebuild), and then only on two equal quiet readings.
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

/* Counters and counts sit this far above 0: memcached's decr stops at 0. */
#define MCD_GROUP_OFFSET 1000000000ULL

struct mcd_coord;

/*! A node's coordination state, named node_id (one word), with a lease of lease_s seconds
 * (at least 2). NULL when out of memory. */
struct mcd_coord *mcd_coord_create(const char *node_id, long lease_s);

/*! Free it, sending nothing: its members stay counted until the cluster retires it (as after
 * a crash). */
void mcd_coord_destroy(struct mcd_coord *coord);

/*! Rename the node and set its lease (on reload); the next tick lists the new name. */
void mcd_coord_configure(struct mcd_coord *coord, const char *node_id, long lease_s);

/*! How long a group nobody uses here stays in this incarnation's index (60 s; the tests and the
 * simulation shorten it, to race joins with its unlisting). */
void mcd_coord_set_unlist_after(struct mcd_coord *coord, long seconds);

/*! The node's name, copied into buf, and its incarnation "NODE/INC" into self (when not NULL). */
void mcd_coord_node(struct mcd_coord *coord, char *buf, size_t len);
void mcd_coord_self(struct mcd_coord *coord, char *self, size_t len);

/*! The node's group_lease, in seconds. */
long mcd_coord_lease(struct mcd_coord *coord);

/*! True when name can be a node id or lock name (colon_allowed), or a category or a group
 * (no ':': it separates them in keys and lists). */
bool mcd_coord_name_valid(const char *name, bool colon_allowed);

/*! Whether groups and locks can run on client: not where a key may move to another server
 * (remove_failed_servers, replicas), which would split a counter or a lock in two. */
bool mcd_coord_supported(const struct mcd_client *client);

/*!
 * Put one member in group (of category, "" for none), unless limit (> 0) members are in it
 * already across the cluster: then MCD_GROUP_FULL and nothing changes. One round trip; the
 * first time this incarnation uses the group, four or five (it lists itself and the group first).
 */
mcd_rc mcd_group_join(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group, uint64_t limit);

/*! Take one of this node's members out of group (MCD_NOTFOUND when it has none there). */
mcd_rc mcd_group_leave(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group);

/*! The same without waiting for memcached's answer (MCD_SENT): for channels that end. */
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
	long published;              /* the sum of the incarnations' counts, or -1 */
};

/*! Report every group some listed incarnation uses, with members anywhere, through each, up
 * to max groups (read now: a round trip per group). Returns how many were reported. */
unsigned int mcd_coord_groups(struct mcd_client *client, struct mcd_coord *coord,
	void (*each)(const struct mcd_group_report *report, void *arg), void *arg, unsigned int max);

/*! Set group's counter to the sum of the counts of the incarnations listed now (an operator's repair
 * for what the design does not cover); *before and *after are its members. */
mcd_rc mcd_group_reset(struct mcd_client *client, const char *category,
	const char *group, long *before, long *after);

/*!
 * Take lock name for ttl seconds, for holder (a label, e.g. the channel's name), waiting up
 * to wait_ms for another holder to let go (0: not at all). On success, token (MCD_TOKEN_MAX)
 * holds what proves ownership. MCD_LOCK_BUSY when someone else kept it.
 */
mcd_rc mcd_lock(struct mcd_client *client, struct mcd_coord *coord, const char *name, long ttl,
	long wait_ms, const char *holder, char *token);

/*! Whether token still holds lock name in memcached (MCD_SUCCESS), or not (MCD_NOT_LOCKED). */
mcd_rc mcd_lock_check(struct mcd_client *client, const char *name, const char *token);

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

/* What one tick did, for the log. */
struct mcd_tick_report {
	unsigned int retired;        /* incarnations whose counts it took away (all done) */
	unsigned int corrected;      /* counters or counts it stepped after a failure it saw */
	unsigned int rebuilt;        /* counters it rebuilt (memcached lost them) */
	bool reincarnated;           /* the cluster had retired this node: it counts again anew */
	char duplicate[MCD_NAME_MAX + 1]; /* a node id two live incarnations share, else "" */
	bool registry_failed;        /* the registry could not be read: nobody was retired */
};

/*!
 * The work off the call path, every lease/4 seconds on the monotonic clock: the heartbeat,
 * this node's entry and counts as memcached holds them, the retirement of dead incarnations
 * (at most about a quarter lease of it per tick), repairs after failures, locks to release.
 */
void mcd_coord_tick(struct mcd_client *client, struct mcd_coord *coord, struct mcd_tick_report *report);

#endif
