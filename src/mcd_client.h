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
};

enum {
	MCD_ARGUMENT_NEEDED = 1000,  /* an argument is missing or of the wrong kind */
	MCD_KEY_TOO_LONG,            /* prefix + key longer than 250 bytes */
	MCD_VALUE_TOO_LONG,          /* value longer than max_value_length */
	MCD_BAD_INCREMENT,           /* counter increment not a whole number in range */
	MCD_BINARY_PROTO_NEEDED,     /* kept from the original module; see README */
	MCD_POOL_EXHAUSTED,          /* every pooled connection stayed busy for pool_wait */
};

/* The largest increment memcached's incr/decr take in one step. */
#define MCD_INCREMENT_MAX 4294967295LL

enum mcd_store_mode {
	MCD_STORE_SET,
	MCD_STORE_ADD,
	MCD_STORE_REPLACE,
	MCD_STORE_APPEND,
	MCD_STORE_PREPEND,
};

struct mcd_client;

/*! The result's name as the dialplan sees it in MCDRESULT, e.g. "MEMCACHED_SUCCESS". Never NULL. */
const char *mcd_rc_name(mcd_rc rc);

/*! True for results that are ordinary answers (success, miss, exists, not stored), not faults. */
bool mcd_rc_is_answer(mcd_rc rc);

/*! Build a client (resolving host names now, connecting lazily). NULL and err on failure. */
struct mcd_client *mcd_client_create(const struct mcd_settings *settings, char *err, size_t errlen);

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

/*! Force the counter at key to value, whether or not it exists. */
mcd_rc mcd_counter_set(struct mcd_client *client, const char *key, uint64_t value, long ttl);

/*!
 * Add delta (negative subtracts; memcached stops at 0) atomically and return the new value.
 * A missing counter is created at max(delta, 0) with ttl; delta 0 reads without creating.
 */
mcd_rc mcd_counter_add(struct mcd_client *client, const char *key, int64_t delta, long ttl,
	uint64_t *result);

/*! The expiry memcached must be sent for a relative ttl (memcached reads > 30 days as a date). */
long mcd_wire_expiry(long ttl, long now);

#endif
