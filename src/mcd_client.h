/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * mcd_client: the memcached side. A client owns a libmemcached connection
 * pool built from one mcd_settings; every operation takes a connection from
 * the pool, so any number of threads may share one client. Knows nothing of
 * Asterisk, so it is unit-tested directly against a real memcached.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_CLIENT_H
#define MCD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcd_config.h"

/*
 * An operation's result: one of libmemcached's memcached_return_t values, or
 * one of the module's own below, which sit past libmemcached's range.
 */
typedef int mcd_rc;

/* The few libmemcached results the glue names, so it need not include libmemcached. */
enum {
	MCD_SUCCESS = 0,             /* MEMCACHED_SUCCESS */
	MCD_NOTFOUND = 16,           /* MEMCACHED_NOTFOUND */
	MCD_NO_SERVERS = 20,         /* MEMCACHED_NO_SERVERS */
	MCD_SERVER_TEMPORARILY_DISABLED = 47, /* MEMCACHED_SERVER_TEMPORARILY_DISABLED */
};

enum {
	MCD_ARGUMENT_NEEDED = 1000,  /* an argument is missing or of the wrong kind */
	MCD_KEY_TOO_LONG,            /* prefix + key longer than 250 bytes */
	MCD_VALUE_TOO_LONG,          /* value longer than max_value_length */
	MCD_BAD_INCREMENT,           /* counter increment not a whole number in range */
	MCD_BINARY_PROTO_NEEDED,     /* kept from the original module; see README */
	MCD_POOL_EXHAUSTED,          /* every pooled connection stayed busy for pool_wait */
	MCD_SENT,                    /* written without waiting for an answer (noreply) */
	MCD_OWN_RESULT_LAST = MCD_SENT,
};

/* The most keys one mcd_mget reads. */
#define MCD_MGET_MAX 64

/* The largest increment memcached's incr/decr take in one step. */
#define MCD_INCREMENT_MAX 4294967295LL

enum mcd_store_mode {
	MCD_STORE_SET,
	MCD_STORE_ADD,
	MCD_STORE_REPLACE,
	MCD_STORE_APPEND,
	MCD_STORE_PREPEND,
};

/* What the module counts per kind of operation, for "memcached show stats". */
enum mcd_op {
	MCD_OP_GET,
	MCD_OP_SET,
	MCD_OP_ADD,
	MCD_OP_REPLACE,
	MCD_OP_APPEND,
	MCD_OP_PREPEND,
	MCD_OP_DELETE,
	MCD_OP_COUNTER,
	MCD_OP_TOUCH,
	MCD_OP_MGET,
	MCD_OP_COUNT,
};

/* Result slots: libmemcached's results, then the module's own. */
#define MCD_RESULT_SLOTS 64

struct mcd_op_stats {
	_Atomic unsigned long calls;
	_Atomic unsigned long by_result[MCD_RESULT_SLOTS];
	_Atomic unsigned long total_us;
	_Atomic unsigned long worst_us;
};

/* Shared by every client built while the module is loaded, so a reload keeps them. */
struct mcd_stats {
	struct mcd_op_stats ops[MCD_OP_COUNT];
};

/* One server as "memcached show servers" reports it. */
struct mcd_server_report {
	char address[MCD_ADDRESS_LEN];
	bool answered;               /* it answered "stats" just now */
	bool resting;                /* skipped after repeated faults, for retry_timeout */
	char version[32];
	unsigned long long items;
	unsigned long long connections;
	unsigned long long hits;
	unsigned long long misses;
};

struct mcd_client;

/*! The result's name as the dialplan sees it in MCDRESULT, e.g. "MEMCACHED_SUCCESS". Never NULL. */
const char *mcd_rc_name(mcd_rc rc);

/*! The name of operation op ("get", "set", ...). */
const char *mcd_op_name(enum mcd_op op);

/*! The slot of rc in mcd_op_stats.by_result, and back: mcd_result_of_slot gives the rc. */
int mcd_result_slot(mcd_rc rc);
mcd_rc mcd_result_of_slot(int slot);

/*! Zero every count. */
void mcd_stats_reset(struct mcd_stats *stats);

/*! True for results that are ordinary answers (success, miss, exists, not stored), not faults. */
bool mcd_rc_is_answer(mcd_rc rc);

/*! True for results that say a server is unwell (timeouts, refused or broken connections). */
bool mcd_rc_is_server_fault(mcd_rc rc);

/*! Build a client (resolving host names now, connecting lazily) that counts into stats
 * (may be NULL). NULL and err on failure. */
struct mcd_client *mcd_client_create(const struct mcd_settings *settings, struct mcd_stats *stats,
	char *err, size_t errlen);

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

/*! The expiry memcached must be sent for a relative ttl (memcached reads > 30 days as a date). */
long mcd_wire_expiry(long ttl, long now);

#endif
