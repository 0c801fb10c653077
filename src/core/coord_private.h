/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * coord_private: what the coordination units share: a node's state (coord.c),
 * the keys of a group, counter steps (groups.c), the registry of incarnations
 * (registry.c), the tick (tick.c) and locks (locks.c).
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_COORD_PRIVATE_H
#define MCD_COORD_PRIVATE_H

#include <pthread.h>

#include "client_private.h"
#include "coord.h"

#define MCD_COORD_BUCKETS 1024
/* An incarnation id: 16 hex digits. */
#define MCD_INC_LEN 16
/* "NODE/INC", and "NODE/INC!INC" while it is retired. */
#define MCD_ENTRY_MAX (MCD_NAME_MAX + 2 * MCD_INC_LEN + 3)
/* The shards of an incarnation's list of groups. */
#define MCD_INDEX_SHARDS 32
/* Room for one registry value as read back (a longer one is an error, never cut short). */
#define MCD_REGISTRY_MAX (512 * 1024)

/* One group this node uses. */
struct local_group {
	struct local_group *next;
	char category[MCD_NAME_MAX + 1];
	char group[MCD_NAME_MAX + 1];
	long members;                /* this node's members, counted */
	long pending;                /* joins and leaves on the wire */
	bool indexed;                /* listed in this incarnation's index */
	bool unlisting;              /* the tick takes it out of the index now (see tick.c) */
	bool rejoined;               /* a join came meanwhile: the tick keeps it */
	long empty_since;            /* monotonic second members fell to 0 */
	long suspect_until;          /* after a failure seen here: repaired (tick.c) until then, and settled */
	int64_t last_gap;            /* the counter minus the counts at the last repair's reading */
	int64_t last_own_gap;        /* this node's count minus its members then (0: not known) */
	bool has_reading;
};

struct held_lock {
	struct held_lock *next;
	char name[MCD_NAME_MAX + 1];
	char token[MCD_TOKEN_MAX];
	char holder[MCD_TOKEN_MAX];
	long since;                  /* monotonic second it was taken (0: an orphan to release) */
	long ttl;
};

struct mcd_coord {
	pthread_mutex_t lock;        /* everything below; held briefly, never across the network */
	char node[MCD_NAME_MAX + 1];
	char inc[MCD_INC_LEN + 1];
	long lease_s;
	long unlist_after_s;         /* a group nobody used here this long leaves the index */
	struct local_group *groups[MCD_COORD_BUCKETS];
	struct held_lock *locks;
	struct held_lock *orphans;   /* locks an add may have taken whose answer was lost */
	unsigned long next_token;
	bool listed;                 /* this incarnation was put in the registry's list */
	bool reindex;                /* memcached lost the list: the index goes back too */
	/* The client, and its connections' epoch, at the last tick: where either changed since,
	 * memcached may have restarted and lost this node's keys, and joins check their count. */
	const struct mcd_client *tick_client;
	unsigned int tick_epoch;
	char *incarnations;          /* the incarnation ids listed at the last tick, space-separated */
	long duplicate_since;        /* monotonic second two live incarnations shared our node id */
};

/*! A hash of a group's name (FNV-1a, mixed): its bucket here, its shard in the index. */
unsigned int mcd_group_hash(const char *category, const char *group);

/*! The entry of group (coord locked), made if create and missing; NULL if not there. */
struct local_group *mcd_local_group(struct mcd_coord *coord, const char *category, const char *group,
	bool create);

/*! Forget group's entry (coord locked). */
void mcd_local_forget(struct mcd_coord *coord, const char *category, const char *group);

/*! Call visit on every group (coord locked). */
void mcd_local_each(struct mcd_coord *coord, void (*visit)(struct local_group *g, void *arg), void *arg);

/*! Mark group as seen failing here: its counts are repaired on quiet readings for two leases. */
void mcd_local_suspect(struct mcd_coord *coord, const char *category, const char *group);

/*! A new incarnation id for coord (coord locked). */
void mcd_coord_new_incarnation(struct mcd_coord *coord);

/*!
 * The key "g:CATEGORY:GROUP[:INC]" with the prefix into out. The counter's (no inc) is also
 * the master key that puts all of a group's keys on one server.
 */
mcd_rc mcd_group_key(const struct mcd_client *client, const char *category, const char *group,
	const char *inc, char out[MCD_KEY_MAX + 1], size_t *len);

/* A group's counter key (the master) and one incarnation's count key. */
struct group_keys {
	char master[MCD_KEY_MAX + 1];
	size_t master_len;
	char count[MCD_KEY_MAX + 1];
	size_t count_len;
};

mcd_rc mcd_group_keys(const struct mcd_client *client, const char *category, const char *group,
	const char *inc, struct group_keys *k);

/*! Make the group's counter (counter) or this incarnation's count, at members, where it is
 * missing: memcached's add (MEMCACHED_NOTSTORED where it is there). */
mcd_rc mcd_group_add(memcached_st *memc, const struct group_keys *k, bool counter, long members);

/*! How many groups this node has an entry for (coord locked). */
size_t mcd_local_count(struct mcd_coord *coord);

/*! The value of a counter or count as read (offset), signed. */
int64_t mcd_offset_value(const char *text, size_t len);

/*! Step key (placed by master) by delta on memc, creating nothing; *value its new value. */
mcd_rc mcd_step(memcached_st *memc, const char *master, size_t master_len, const char *key, size_t key_len,
	int64_t delta, uint64_t *value);

/*! The same, not waited for (memc's answers are turned off for it). */
mcd_rc mcd_step_noreply(memcached_st *memc, const char *master, size_t master_len, const char *key,
	size_t key_len, int64_t delta);

/* A group read whole: its counter and the counts of the incarnations. */
struct mcd_group_reading {
	const char *own_inc;         /* in: the incarnation whose count goes to own, or NULL */
	int64_t counter;             /* the counter's members, INT64_MIN when missing */
	int64_t sum;                 /* the counts' members (tombstones count 0) */
	int64_t own;                 /* own_inc's count, INT64_MIN when missing or a tombstone */
};

/*! Read group's counter and the counts of incarnations (a space-separated list of ids) on memc,
 * with one request. */
mcd_rc mcd_group_read(struct mcd_client *client, memcached_st *memc, const char *category, const char *group,
	const char *incarnations, struct mcd_group_reading *reading);

/*! memcached lost this incarnation's count (k->count) of a group: made again with members, which
 * go back into the counter (made again empty where it is missing too; *value its new value).
 * MEMCACHED_NOTSTORED when the count was there: nothing changed. */
mcd_rc mcd_group_share_again(memcached_st *memc, const struct group_keys *k, long members, uint64_t *value);

/*! The incarnation ids listed at the last tick, with this node's own (malloc'd; NULL when
 * out of memory). */
char *mcd_coord_incarnations(struct mcd_coord *coord);

/* A group as the tick found it here, and in memcached. */
struct mcd_checked {
	char category[MCD_NAME_MAX + 1];
	char group[MCD_NAME_MAX + 1];
	long members;
	bool suspect;
	struct group_keys keys;
	uint32_t server;
	bool counter_found, count_found, read;
};

/*! A group where this node saw a failure, read whole and repaired where two readings agree
 * (repair.c). */
void mcd_group_repair(struct mcd_client *client, struct mcd_coord *coord, struct mcd_checked *c,
	const char *incarnations, const char *inc, struct mcd_tick_report *report);

/* --- the registry (registry.c) --- */

/*! Begin a call on the registry's server: the key of name (own namespace) into key. */
mcd_rc mcd_registry_call(struct mcd_client *client, const char *name, struct mcd_call *call,
	char key[MCD_KEY_MAX + 1], size_t *key_len);

/*! Append words (" a b") to the registry's value name, making it where there is none. */
mcd_rc mcd_registry_append(struct mcd_client *client, const char *name, const char *words);

/*! Read the registry's value name into buf (MCD_REGISTRY_MAX) with its version (NOTFOUND: none). */
mcd_rc mcd_registry_get(struct mcd_client *client, const char *name, char *buf, uint64_t *cas);

/*! Write value as name's, unless it changed since version cas (0: whatever it is, living ttl). */
mcd_rc mcd_registry_put(struct mcd_client *client, const char *name, const char *value, uint64_t cas,
	time_t ttl);

mcd_rc mcd_registry_delete(struct mcd_client *client, const char *name);

/*! The incarnation id of a word of the list ("NODE/INC" or "NODE/INC!BY", read from the right:
 * a node id may hold any byte of a token) into inc; false when it has none. */
bool mcd_registry_word_inc(const char *word, char inc[MCD_INC_LEN + 1]);

/*! The ids of the incarnations listed now, space-separated (malloc'd; NULL when the list cannot
 * be read). */
char *mcd_registry_incarnations(struct mcd_client *client);

/*! List group in this incarnation's index (confirmed). */
mcd_rc mcd_index_add(struct mcd_client *client, const char *inc, const char *category, const char *group);

/*! Take the groups (" cat:group ...") out of this incarnation's index, where nothing changed it since. */
void mcd_index_remove(struct mcd_client *client, const char *inc, const char *words);

/*! Take the groups of words (" cat:group ...", marked unlisting: nobody in them here for a
 * while) out of this incarnation's index, shard by shard, and forget them here; a group a join
 * took back meanwhile stays (unlist.c). */
void mcd_unlist(struct mcd_client *client, struct mcd_coord *coord, const char *inc, const char *words);

/*! Call visit with every group ("cat:group") in the indexes of the listed incarnations. */
mcd_rc mcd_index_each(struct mcd_client *client, const char *incarnations,
	void (*visit)(const char *category, const char *group, void *arg), void *arg);

/*! The registry's share of a tick: heartbeat, this node's entry, dead incarnations retired. */
void mcd_registry_tick(struct mcd_client *client, struct mcd_coord *coord, struct mcd_tick_report *report);

/*! Whether memcached may have lost this node's keys since its last tick (a restart dropped
 * connections): joins then check their count. */
bool mcd_coord_unsure(struct mcd_coord *coord, struct mcd_client *client);

/*! Put this incarnation in the registry's list with a heartbeat, unless it did already (again:
 * whether it did or not, unless the list names it). */
mcd_rc mcd_coord_enlist(struct mcd_client *client, struct mcd_coord *coord, bool again);

/*! Renew this incarnation's heartbeat (for a lease): long work does it on the way. */
void mcd_coord_beat(struct mcd_client *client, struct mcd_coord *coord);

/*! Count every member again under a new incarnation (the cluster retired this one). */
void mcd_coord_reincarnate(struct mcd_client *client, struct mcd_coord *coord);

/* --- locks (locks.c) --- */

/*! Release the orphan locks (adds whose answer was lost) that turn out to be this node's. */
void mcd_locks_tick(struct mcd_client *client, struct mcd_coord *coord);

#endif
