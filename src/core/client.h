/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * client: the memcached side. A client owns libmemcached connection pools
 * built from one mcd_settings; every operation takes a connection from a
 * pool, so any number of threads may share one client. Each operation is
 * timed and counted in the stats it was given (flush and server reports,
 * which are for the console, are not). Knows nothing of Asterisk, so it is
 * unit-tested directly against a real memcached.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_CLIENT_H
#define MCD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "options.h"
#include "results.h"
#include "stats.h"

/* Where the module keeps its own keys (groups, locks, the registry), after the key prefix: a
 * key the dialplan, the console or the manager names there is refused (MCD_KEY_RESERVED). */
#define MCD_OWN_KEY_PREFIX "_mcd:"

/* The most keys one mcd_mget reads. */
#define MCD_MGET_MAX 64

enum mcd_store_mode {
	MCD_STORE_SET,
	MCD_STORE_ADD,
	MCD_STORE_REPLACE,
	MCD_STORE_APPEND,
	MCD_STORE_PREPEND,
};

/* What answers at a server's address. */
enum mcd_server_kind {
	MCD_KIND_MEMCACHED,          /* a memcached: its stats are its own items */
	MCD_KIND_MEMCACHED_PROXY,    /* memcached's built-in proxy: its stats are the proxy's */
	MCD_KIND_NO_STATS,           /* serves commands but not "stats": twemproxy, say */
};

/* One server as "memcached show servers" reports it. */
struct mcd_server_report {
	char address[MCD_ADDRESS_LEN];
	bool answered;               /* it answered "stats", or at least "version", just now */
	bool resting;                /* skipped after repeated faults, for retry_timeout */
	bool other_protocol;         /* it answers only the protocol not configured */
	enum mcd_server_kind kind;
	char version[32];
	unsigned long long items;
	unsigned long long connections;
	unsigned long long hits;
	unsigned long long misses;
};

/* The connection pools of a client: calls, counters (text protocol, only when calls talk
 * binary without SASL) and fire-and-forget writes (not with SASL or replicas). */
enum mcd_pool_kind {
	MCD_POOL_CALLS,
	MCD_POOL_COUNTERS,
	MCD_POOL_NOREPLY,
	MCD_POOL_KINDS,
};

/* How a pool is used. Each handle of a pool holds at most one connection to each server,
 * opened on its first call there: peak is the most connections it can hold to one server. */
struct mcd_pool_usage {
	bool exists;
	unsigned int size;           /* pool_size */
	unsigned int in_use;         /* handles held by calls now */
	unsigned int peak;           /* the most held at once since the client was built */
};

/* Where the core sends what the administrator should know (a server that speaks the other
 * protocol, say): one sentence, no newline. Called from any thread. */
typedef void (*mcd_notice_fn)(const char *message);

struct mcd_client;

/*! Build a client (resolving host names now, connecting lazily; see mcd_server_resolve) that counts into stats and
 * tells notice what it finds (either may be NULL). NULL and err on failure. */
struct mcd_client *mcd_client_create(const struct mcd_settings *settings, struct mcd_stats *stats,
	mcd_notice_fn notice, char *err, size_t errlen);

/*! Look server's host name up now (a blocking lookup: never on a call's path) and put the
 * numeric address in its place. 0, or -1 and err. Unix sockets need none. */
int mcd_server_resolve(struct mcd_server *server, char *err, size_t errlen);

/*! Take over what from (an older client, or NULL) knows of the health of the servers the two
 * share, by address: a rebuilt client does not forget a resting server. */
void mcd_client_adopt_health(struct mcd_client *client, struct mcd_client *from);

/*! Free a client. No operation may be running on it. */
void mcd_client_destroy(struct mcd_client *client);

/*! The settings the client was built from (with host names as resolved). */
const struct mcd_settings *mcd_client_settings(const struct mcd_client *client);

/*! Read key. On success *value is a NUL-terminated copy (free with mcd_value_free), else NULL. */
mcd_rc mcd_get(struct mcd_client *client, const char *key, char **value, size_t *value_len);

/*! Release a value returned by mcd_get. */
void mcd_value_free(char *value);

/*! Store value under key as mode says; ttl in seconds from now (0 = never expires). */
mcd_rc mcd_store(struct mcd_client *client, enum mcd_store_mode mode, const char *key,
	const char *value, size_t value_len, long ttl);

/*! Delete key. */
mcd_rc mcd_delete(struct mcd_client *client, const char *key);

/*
 * Fire-and-forget forms of mcd_store, mcd_delete and mcd_counter_add (memcached's
 * noreply): the request is written and not waited for, and MCD_SENT returned; a
 * failure to connect or write is still returned. A counter step sends "add 0" then
 * incr/decr, so a missing counter is created. Where noreply is not offered (SASL or
 * replicas configured, see mcd_client_has_noreply) these wait for the answer as usual.
 */
mcd_rc mcd_store_noreply(struct mcd_client *client, enum mcd_store_mode mode, const char *key,
	const char *value, size_t value_len, long ttl);
mcd_rc mcd_delete_noreply(struct mcd_client *client, const char *key);
mcd_rc mcd_counter_add_noreply(struct mcd_client *client, const char *key, int64_t delta, long ttl);

/*! False when writes are always confirmed: SASL needs the binary protocol, whose quiet
 * commands still answer failures, and replicas are written by libmemcached only in binary. */
bool mcd_client_has_noreply(const struct mcd_client *client);

/* One key of an mcd_mget: key in, rc and value (on success) out. */
struct mcd_mget_item {
	const char *key;
	mcd_rc rc;
	char *value;                 /* free with mcd_value_free; NULL unless rc is success */
	size_t value_len;
};

/*!
 * Read up to MCD_MGET_MAX keys with one multi-get per server that holds any of them. Each
 * item gets its own result (and a value on success). Returns success when every key was
 * found, MCD_NOTFOUND when some were missing and nothing failed, else the first item's
 * failure; MCD_ARGUMENT_NEEDED, items untouched, when count is 0 or over MCD_MGET_MAX.
 */
mcd_rc mcd_mget(struct mcd_client *client, struct mcd_mget_item *items, size_t count);

/*! Force the counter at key to value, whether or not it exists. */
mcd_rc mcd_counter_set(struct mcd_client *client, const char *key, uint64_t value, long ttl);

/*!
 * Add delta (negative subtracts; memcached stops at 0) atomically and return the new value.
 * A missing counter is created at max(delta, 0) with ttl; delta 0 reads without creating.
 */
mcd_rc mcd_counter_add(struct mcd_client *client, const char *key, int64_t delta, long ttl,
	uint64_t *result);

/*! Set a new ttl on key without touching its value (memcached's touch). */
mcd_rc mcd_touch(struct mcd_client *client, const char *key, long ttl);

/*! Drop every item on every server (memcached's flush_all). */
mcd_rc mcd_flush(struct mcd_client *client);

/*! Ask every server for its "stats"; fills up to max reports and returns how many servers. */
unsigned int mcd_server_reports(struct mcd_client *client, struct mcd_server_report *reports,
	unsigned int max);

/*! A reported server's state in words: "up", "resting", "wrong protocol" or "no answer". */
const char *mcd_server_state(const struct mcd_server_report *report);

/*! What answered at a reported server's address, in words ("memcached", "memcached proxy",
 * "no stats (a proxy)"), or "" when nothing did. */
const char *mcd_server_kind(const struct mcd_server_report *report);

/* What the client knows of a server's health, from the calls it made: no network. */
struct mcd_server_health {
	unsigned int faults;         /* faults in a row */
	bool resting;                /* skipped after server_failure_limit faults, for retry_timeout */
	bool other_protocol;         /* it answered only the protocol not configured */
};

/*! The health of server i (0 to server_count - 1) as the client's calls have found it. */
void mcd_server_health(struct mcd_client *client, unsigned int i, struct mcd_server_health *health);

/*! How each of the client's pools is used (see struct mcd_pool_usage). */
void mcd_client_pool_usage(struct mcd_client *client, struct mcd_pool_usage usage[MCD_POOL_KINDS]);

/*! A pool's name in words: "calls", "counters", "noreply writes". */
const char *mcd_pool_name(enum mcd_pool_kind kind);

/* memcached takes an expiry above 30 days as an absolute Unix time. */
#define MCD_RELATIVE_EXPIRY_MAX (60L * 60 * 24 * 30)

/*! The expiry memcached must be sent for a relative ttl (memcached reads > 30 days as a date). */
int64_t mcd_wire_expiry(int64_t ttl, int64_t now);

#endif
