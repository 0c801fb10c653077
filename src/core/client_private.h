/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * client_private: what the core's units that talk to memcached share (client,
 * operations, mget, coord, groups, locks), and nothing outside the core uses:
 * the client's insides, calls on a pooled connection, wire keys, counter
 * steps, and the health of each server.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_CLIENT_PRIVATE_H
#define MCD_CLIENT_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>

#include <libmemcached/memcached.h>
#include <libmemcachedutil-1.0/pool.h>

#include "client.h"

/* Shared by every pooled handle: libmemcached keeps its failure counts per handle (and the
 * client turns its per-handle rest off where it tracks health itself). */
struct server_health {
	atomic_uint faults;          /* faults in a row, from any call */
	atomic_long resting_until;   /* monotonic second before which calls skip the server; 0 none */
	atomic_bool probe_due;       /* ask which protocol it speaks when it next starts resting */
	atomic_bool other_protocol;  /* it answered only the protocol not configured */
};

/* What the client knows of one pooled handle's connections. */
struct mcd_handle_slot {
	unsigned int epoch;          /* the client's connections_epoch when it last reconnected */
	uint64_t last_used_us;       /* when a call last gave it back (monotonic) */
};

/* A handle unused this long closes its connections before its next call: a server may have
 * closed them meanwhile (a restart while all was quiet, an idle timeout, a NAT), and a write
 * sent on such a socket fails without being sent again. */
#define MCD_IDLE_RECONNECT_US 1000000U

/* One libmemcached pool, and how many of its connections calls hold. */
struct mcd_pool {
	memcached_st *master;        /* the template the pool clones; never used for I/O itself */
	memcached_pool_st *pool;     /* NULL where this pool is not needed */
	unsigned int size;
	atomic_uint in_use;
	atomic_uint peak;            /* the most held at once: how many handles the pool made */
	/* One slot per handle (the handle's user data points at its slot). */
	struct mcd_handle_slot *slots;
	atomic_uint slots_used;
	/* held counts the handles calls hold; a call waits on freed (monotonic) for one. */
	pthread_mutex_t wait_lock;
	pthread_cond_t freed;
	unsigned int held;
};

/* The thread that probes resting servers off the call path (see client.c). */
struct mcd_prober {
	pthread_t thread;
	bool running;
	bool stopping;
	pthread_mutex_t lock;
	pthread_cond_t wake;         /* on the monotonic clock */
};

struct mcd_client {
	struct mcd_settings settings;
	struct server_health health[MCD_MAX_SERVERS];
	struct mcd_pool main;        /* every call but the two below */
	struct mcd_pool counters;    /* counter steps in the text protocol, when main talks binary */
	struct mcd_pool noreply;     /* fire-and-forget writes (see mcd_client_has_noreply) */
	/* Bumped when a server dropped connections (restart, reset) or came back from a rest:
	 * a pooled handle that last reconnected before closes its connections before use, so
	 * that no call is sent on a socket the server closed. */
	atomic_uint connections_epoch;
	struct mcd_prober prober;
	struct mcd_stats *stats;     /* where operations are counted, or NULL */
	mcd_notice_fn notice;        /* where findings for the administrator go, or NULL */
	size_t prefix_len;
};

/* One operation's connection, key and server, from mcd_call_begin to mcd_call_end. */
struct mcd_call {
	struct mcd_pool *pool;
	memcached_st *memc;
	char key[MCD_KEY_MAX + 1];   /* the key, or the master key that places several */
	size_t key_len;
	uint32_t server;             /* index of the key's server, or MCD_NO_SERVER */
};

#define MCD_NO_SERVER UINT32_MAX

/* How often the prober asks a resting server whether it answers again. */
#define MCD_PROBE_INTERVAL_MS 200

/*! For call->key: take a connection from pool, and refuse at once (SERVER_TEMPORARILY_DISABLED)
 * when the key's server rests after repeated faults. On anything but success there is
 * nothing to end. */
mcd_rc mcd_call_begin(struct mcd_client *client, struct mcd_pool *pool, struct mcd_call *call);

/*! Give the connection back and note whether the server answered. Returns rc. */
mcd_rc mcd_call_end(struct mcd_client *client, struct mcd_call *call, mcd_rc rc);

/*! Whether a request that ended with rc may be sent once more on a fresh connection: the
 * connection was lost (a server restart leaves pooled sockets closed), not timed out. Only
 * for requests that change nothing (reads, touch) or whose effect the caller checks. Closes
 * memc's connections so that the next request reconnects. */
bool mcd_connection_lost(struct mcd_client *client, memcached_st *memc, uint32_t server, mcd_rc rc);

/*! Step the counter key (placed by master) by delta, creating a missing one at max(delta, 0)
 * expiring at expiry (0 never); *result is its new value. */
mcd_rc mcd_counter_step(memcached_st *memc, const char *master, size_t master_len, const char *key,
	size_t key_len, int64_t delta, time_t expiry, uint64_t *result);

/*! Ask memc for keys (placed by master) with one request, and hand each item found to take;
 * once take fails, the rest are read and left. Returns take's failure, the request's, or
 * success (some keys may be missing: take saw those there were). */
mcd_rc mcd_mget_each(memcached_st *memc, const char *master, size_t master_len, const char *const *keys,
	const size_t *lens, size_t count, mcd_rc (*take)(const memcached_result_st *result, void *arg), void *arg);

/*! Read key (placed by master) with its version (memcached's gets): up to size - 1 bytes of
 * the value into buf, NUL-terminated, its whole length into *len and its version into *cas.
 * MEMCACHED_NOTFOUND when there is none. */
mcd_rc mcd_gets(memcached_st *memc, const char *master, size_t master_len, const char *key, size_t key_len,
	char *buf, size_t size, size_t *len, uint64_t *cas);

/*! Seconds on the monotonic clock. */
long mcd_monotonic_s(void);

/*! Initialise cond to wait on the monotonic clock (a clock stepped back stalls no wait):
 * pthread_cond_timedwait on it takes deadlines from mcd_monotonic_after_ms. */
void mcd_monotonic_cond_init(pthread_cond_t *cond);


/*! The pool counter steps go through: the text-protocol one where calls talk binary (see
 * struct mcd_client), else the calls' own. */
struct mcd_pool *mcd_counter_pool(struct mcd_client *client);

/*! What a write not waited for returns: MCD_SENT once it is written, else its failure. */
static inline mcd_rc mcd_sent(mcd_rc rc)
{
	return rc == MEMCACHED_SUCCESS ? MCD_SENT : rc;
}

/*! A connection from pool, waiting at most pool_wait; NULL and *rc (MCD_POOL_EXHAUSTED when
 * every connection stayed busy) when there is none. Give it back with mcd_give_back. */
memcached_st *mcd_take_connection(struct mcd_client *client, struct mcd_pool *pool, mcd_rc *rc);

/*! Give back a connection taken from pool. */
void mcd_give_back(struct mcd_pool *pool, memcached_st *memc);

/*! Before a call on memc (whose slot is slot): close its connections when they may have been
 * closed by the server (an epoch passed, or the handle sat idle). */
void mcd_reconnect_if_stale(struct mcd_client *client, memcached_st *memc, struct mcd_handle_slot *slot);

/*! prefix + key into out (MCD_KEY_MAX + 1 bytes), refusing what memcached could misread and
 * keys in the module's own namespace. */
mcd_rc mcd_client_key(const struct mcd_client *client, const char *key, char *out, size_t *out_len);

/*! prefix + MCD_OWN_KEY_PREFIX + name into out: a key of the module's own. */
mcd_rc mcd_client_own_key(const struct mcd_client *client, const char *name, char *out, size_t *out_len);

/*! Add server to memc, over TCP or its unix socket, with its weight. */
memcached_return_t mcd_add_server(memcached_st *memc, const struct mcd_server *server);

/*! The timeouts that bound every network wait on memc: connecting, then each read or write. 0 or -1. */
int mcd_set_timeouts(memcached_st *memc, const struct mcd_settings *s);

/*! Start the thread that probes resting servers (health.c); without it, rests end after
 * retry_timeout as calls find out. */
void mcd_prober_start(struct mcd_client *client);

/*! Stop it (waiting for a round under way). */
void mcd_prober_stop(struct mcd_client *client);

/*! Whether calls track server health: not with remove_failed_servers or replicas, where
 * libmemcached moves to other servers itself and a rest-period would prevent that. */
bool mcd_tracks_health(const struct mcd_client *client);

/*! True when server (an index) is in its rest-period after repeated faults. */
bool mcd_server_resting(struct mcd_client *client, uint32_t server);

/*! Learn from rc whether server (an index, or any larger number for none) answered: faults in
 * a row reaching server_failure_limit start its rest-period (and, the first time, a probe of
 * the protocol it speaks), an answer ends the run. */
void mcd_note_server(struct mcd_client *client, uint32_t server, mcd_rc rc);

#endif
