/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * client: building a client (servers, behaviours, pools), its keys, and taking
 * and giving back connections (a bounded wait; stale connections closed).
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "client_private.h"
#include "util.h"

/* options.c names hash functions in libmemcached's own order. */
_Static_assert(MEMCACHED_HASH_DEFAULT == 0 && MEMCACHED_HASH_MD5 == 1 && MEMCACHED_HASH_CRC == 2
	&& MEMCACHED_HASH_FNV1_64 == 3 && MEMCACHED_HASH_FNV1A_64 == 4 && MEMCACHED_HASH_FNV1_32 == 5
	&& MEMCACHED_HASH_FNV1A_32 == 6 && MEMCACHED_HASH_HSIEH == 7 && MEMCACHED_HASH_MURMUR == 8
	&& MEMCACHED_HASH_JENKINS == 9, "hash_names in options.c must follow memcached_hash_t");

/* IPv4 first: memcached as packaged listens on 127.0.0.1, and "localhost" also names ::1. */
int mcd_server_resolve(struct mcd_server *server, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
	struct addrinfo *found;
	char numeric[sizeof(server->host)];
	int res;

	if (server->unix_socket) {
		return 0;
	}
	res = getaddrinfo(server->host, NULL, &hints, &found);
	if (res) {
		hints.ai_family = AF_INET6;
		res = getaddrinfo(server->host, NULL, &hints, &found);
	}
	if (res) {
		snprintf(err, errlen, "cannot resolve server '%s': %s", server->host, gai_strerror(res));
		return -1;
	}
	res = getnameinfo(found->ai_addr, found->ai_addrlen, numeric, sizeof(numeric), NULL, 0,
		NI_NUMERICHOST);
	freeaddrinfo(found);
	if (res) {
		snprintf(err, errlen, "cannot resolve server '%s': %s", server->host, gai_strerror(res));
		return -1;
	}
	strcpy(server->host, numeric);
	return 0;
}

/* Add server to memc, over TCP or its unix socket, with its weight. */
memcached_return_t mcd_add_server(memcached_st *memc, const struct mcd_server *server)
{
	return server->unix_socket
		? memcached_server_add_unix_socket_with_weight(memc, server->host, server->weight)
		: memcached_server_add_with_weight(memc, server->host, (in_port_t) server->port, server->weight);
}

/* The timeouts that bound every network wait: connecting, then each read or write. */
int mcd_set_timeouts(memcached_st *memc, const struct mcd_settings *s)
{
	return memcached_failed(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT,
			(uint64_t) s->connect_timeout_ms))
		|| memcached_failed(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
			(uint64_t) s->timeout_ms))
		|| memcached_failed(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_SND_TIMEOUT,
			(uint64_t) s->timeout_ms * 1000))
		|| memcached_failed(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT,
			(uint64_t) s->timeout_ms * 1000)) ? -1 : 0;
}

static bool weighted(const struct mcd_settings *s)
{
	for (unsigned int i = 0; i < s->server_count; i++) {
		if (s->servers[i].weight != 1) {
			return true;
		}
	}
	return false;
}

static int set_behaviors(memcached_st *memc, const struct mcd_settings *s, char *err, size_t errlen)
{
	/* Weighted ketama only where a weight is set, so that unweighted clusters keep the
	 * placement of keys that other clients (and earlier versions) use. */
	const bool own_health = !s->remove_failed_servers && !s->replicas;
	const uint64_t distribution = s->distribution != MCD_DISTRIBUTION_CONSISTENT
		? MEMCACHED_DISTRIBUTION_MODULA : (weighted(s) ? MEMCACHED_DISTRIBUTION_CONSISTENT_WEIGHTED
		: MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
	const struct {
		memcached_behavior_t behavior;
		uint64_t value;
	} behaviors[] = {
		{ MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, (uint64_t) s->binary_protocol },
		{ MEMCACHED_BEHAVIOR_DISTRIBUTION, distribution },
		{ MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, (uint64_t) s->retry_timeout_s },
		/* Where the client tracks health, libmemcached's own rest (per handle, after connect
		 * failures, in whole seconds of the wall clock) is off: it would outlast a restart
		 * that the prober has already seen end. Elsewhere it is what moves keys away. */
		{ MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, own_health ? UINT32_MAX : (uint64_t) s->server_failure_limit },
		{ MEMCACHED_BEHAVIOR_SERVER_TIMEOUT_LIMIT, own_health ? UINT32_MAX : (uint64_t) s->server_failure_limit },
		{ MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, s->remove_failed_servers },
		{ MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS, (uint64_t) s->replicas },
		{ MEMCACHED_BEHAVIOR_TCP_NODELAY, 1 },
		/* Reads say which version of an item they saw: an unlock swaps only its own lock. */
		{ MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1 },
	};

	/* Some hash functions are optional when libmemcached is built (Debian's lacks hsieh). */
	if (memcached_failed(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, (uint64_t) s->hash))) {
		snprintf(err, errlen, "hash %s is not built into this libmemcached", mcd_hash_name(s->hash));
		return -1;
	}
	if (mcd_set_timeouts(memc, s)) {
		snprintf(err, errlen, "libmemcached refused the timeouts");
		return -1;
	}
	for (size_t i = 0; i < sizeof(behaviors) / sizeof(behaviors[0]); i++) {
		memcached_return_t rc = memcached_behavior_set(memc, behaviors[i].behavior, behaviors[i].value);
		if (memcached_failed(rc)) {
			snprintf(err, errlen, "libmemcached refused %s=%llu: %s",
				libmemcached_string_behavior(behaviors[i].behavior),
				(unsigned long long) behaviors[i].value, memcached_strerror(memc, rc));
			return -1;
		}
	}
	return 0;
}

/* A pool of at most size handles cloned from master (which the pool then owns). One handle
 * is made now, more as concurrent calls need them; none connects before its first use. */
static int make_pool(struct mcd_pool *pool, memcached_st *master, long size)
{
	pool->master = master;
	pool->size = (unsigned int) size;
	pthread_mutex_init(&pool->wait_lock, NULL);
	mcd_monotonic_cond_init(&pool->freed);
	pool->slots = calloc((size_t) size, sizeof(*pool->slots));
	pool->pool = master && pool->slots ? memcached_pool_create(master, 1, (uint32_t) size) : NULL;
	return pool->pool ? 0 : -1;
}

/* A text-protocol copy of master without replicas (and with noreply if asked), for the
 * pools of counters and fire-and-forget writes; NULL on failure. */
static memcached_st *text_copy(memcached_st *master, bool noreply)
{
	memcached_st *copy = memcached_clone(NULL, master);

	if (copy && (memcached_failed(memcached_behavior_set(copy, MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS, 0))
		|| memcached_failed(memcached_behavior_set(copy, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 0))
		|| memcached_failed(memcached_behavior_set(copy, MEMCACHED_BEHAVIOR_NOREPLY, noreply)))) {
		memcached_free(copy);
		return NULL;
	}
	return copy;
}

static void destroy_pool(struct mcd_pool *pool, bool sasl)
{
	if (pool->pool) {
		memcached_pool_destroy(pool->pool);
	}
	if (pool->slots) {
		pthread_mutex_destroy(&pool->wait_lock);
		pthread_cond_destroy(&pool->freed);
		free(pool->slots);
	}
	if (pool->master) {
		if (sasl) {
			memcached_destroy_sasl_auth_data(pool->master);
		}
		memcached_free(pool->master);
	}
}

struct mcd_client *mcd_client_create(const struct mcd_settings *settings, struct mcd_stats *stats,
	mcd_notice_fn notice, char *err, size_t errlen)
{
	struct mcd_client *client = calloc(1, sizeof(*client));
	memcached_st *master;

	if (!client) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	client->settings = *settings;
	client->stats = stats;
	client->notice = notice;
	client->prefix_len = strlen(settings->prefix);
	for (unsigned int i = 0; i < MCD_MAX_SERVERS; i++) {
		atomic_store(&client->health[i].probe_due, true);
	}

	if (!(master = memcached_create(NULL))) {
		snprintf(err, errlen, "out of memory");
		goto failed;
	}
	for (unsigned int i = 0; i < client->settings.server_count; i++) {
		struct mcd_server *server = &client->settings.servers[i];
		memcached_return_t rc;
		char address[MCD_ADDRESS_LEN];

		if (mcd_server_resolve(server, err, errlen)) {
			memcached_free(master);
			goto failed;
		}
		if (memcached_failed(rc = mcd_add_server(master, server))) {
			snprintf(err, errlen, "cannot add server %s: %s", mcd_server_address(server, address),
				memcached_strerror(master, rc));
			memcached_free(master);
			goto failed;
		}
	}
	if (set_behaviors(master, &client->settings, err, errlen)) {
		memcached_free(master);
		goto failed;
	}
	if (settings->username[0]) {
		memcached_return_t rc = memcached_set_sasl_auth_data(master, settings->username,
			settings->password);
		if (memcached_failed(rc)) {
			snprintf(err, errlen, "cannot set SASL credentials: %s", memcached_strerror(master, rc));
			memcached_free(master);
			goto failed;
		}
	}
	if (make_pool(&client->main, master, settings->pool_size)) {
		snprintf(err, errlen, "cannot create a connection pool of %ld", settings->pool_size);
		goto failed;
	}
	/* Counters go through the text protocol when the main pool talks binary without SASL:
	 * libmemcached 1.1.4 aborts the whole process when a binary incr/decr meets a refusal it
	 * does not expect, such as a server that wants credentials. In text, no such pool. */
	if (settings->binary_protocol && !settings->username[0]
		&& make_pool(&client->counters, text_copy(master, false), settings->pool_size)) {
		snprintf(err, errlen, "cannot create the counters' connection pool");
		goto failed;
	}
	/* Fire-and-forget writes: their connections never read, so nothing else may use them. */
	if (!settings->username[0] && !settings->replicas
		&& make_pool(&client->noreply, text_copy(master, true), settings->pool_size)) {
		snprintf(err, errlen, "cannot create the noreply connection pool");
		goto failed;
	}
	if (mcd_tracks_health(client)) {
		mcd_prober_start(client);
	}
	return client;

failed:
	mcd_client_destroy(client);
	return NULL;
}

void mcd_client_destroy(struct mcd_client *client)
{
	if (!client) {
		return;
	}
	mcd_prober_stop(client);
	destroy_pool(&client->counters, false);
	destroy_pool(&client->noreply, false);
	destroy_pool(&client->main, client->settings.username[0]);
	free(client);
}

const struct mcd_settings *mcd_client_settings(const struct mcd_client *client)
{
	return &client->settings;
}

bool mcd_client_has_noreply(const struct mcd_client *client)
{
	return client->noreply.pool != NULL;
}

void mcd_client_pool_usage(struct mcd_client *client, struct mcd_pool_usage usage[MCD_POOL_KINDS])
{
	struct mcd_pool *pools[MCD_POOL_KINDS] = {
		[MCD_POOL_CALLS] = &client->main, [MCD_POOL_COUNTERS] = &client->counters,
		[MCD_POOL_NOREPLY] = &client->noreply,
	};

	for (int i = 0; i < MCD_POOL_KINDS; i++) {
		usage[i].exists = pools[i]->pool != NULL;
		usage[i].size = pools[i]->size;
		usage[i].in_use = atomic_load(&pools[i]->in_use);
		usage[i].peak = atomic_load(&pools[i]->peak);
	}
}

const char *mcd_pool_name(enum mcd_pool_kind kind)
{
	static const char *const names[MCD_POOL_KINDS] = { "calls", "counters", "noreply writes" };

	return kind < MCD_POOL_KINDS ? names[kind] : "?";
}

/* prefix + key into out, checked. */
static mcd_rc prefixed_key(const struct mcd_client *client, const char *key, char *out, size_t *out_len)
{
	switch (mcd_build_key(client->settings.prefix, client->prefix_len, key, out, out_len)) {
	case MCD_KEY_IS_OK:
		return MEMCACHED_SUCCESS;
	case MCD_KEY_IS_EMPTY:
		return MCD_ARGUMENT_NEEDED;
	case MCD_KEY_IS_TOO_LONG:
		return MCD_KEY_TOO_LONG;
	case MCD_KEY_HAS_BAD_BYTES:
		break;
	}
	return MEMCACHED_BAD_KEY_PROVIDED;
}

mcd_rc mcd_client_key(const struct mcd_client *client, const char *key, char *out, size_t *out_len)
{
	if (key && !strncmp(key, MCD_OWN_KEY_PREFIX, sizeof(MCD_OWN_KEY_PREFIX) - 1)) {
		return MCD_KEY_RESERVED;
	}
	return prefixed_key(client, key, out, out_len);
}

mcd_rc mcd_client_own_key(const struct mcd_client *client, const char *name, char *out, size_t *out_len)
{
	char key[MCD_KEY_MAX + 1];

	if ((size_t) snprintf(key, sizeof(key), "%s%s", MCD_OWN_KEY_PREFIX, name) >= sizeof(key)) {
		return MCD_KEY_TOO_LONG;
	}
	return prefixed_key(client, key, out, out_len);
}

long mcd_monotonic_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long) ts.tv_sec;
}

struct mcd_pool *mcd_counter_pool(struct mcd_client *client)
{
	return client->counters.pool ? &client->counters : &client->main;
}

void mcd_monotonic_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
}

/* Wait (at most pool_wait, on the monotonic clock) until the pool has a handle no call holds.
 * libmemcached's own wait is in whole seconds and starts again at each wake-up. */
static bool reserve_handle(struct mcd_client *client, struct mcd_pool *pool)
{
	struct timespec deadline = mcd_monotonic_after_ms(client->settings.pool_wait_s * 1000L);
	bool reserved;

	pthread_mutex_lock(&pool->wait_lock);
	while (pool->held >= pool->size && client->settings.pool_wait_s > 0
		&& pthread_cond_timedwait(&pool->freed, &pool->wait_lock, &deadline) != ETIMEDOUT) {
	}
	if ((reserved = pool->held < pool->size)) {
		pool->held++;
	}
	pthread_mutex_unlock(&pool->wait_lock);
	return reserved;
}

static void unreserve_handle(struct mcd_pool *pool)
{
	pthread_mutex_lock(&pool->wait_lock);
	pool->held--;
	pthread_cond_signal(&pool->freed);
	pthread_mutex_unlock(&pool->wait_lock);
}

void mcd_reconnect_if_stale(struct mcd_client *client, memcached_st *memc, struct mcd_handle_slot *slot)
{
	const unsigned int epoch = atomic_load(&client->connections_epoch);

	/* With remove_failed_servers or replicas, libmemcached keeps each handle's view of dead
	 * servers with its connections: closing them would make it find each one dead again. */
	if (!mcd_tracks_health(client)) {
		return;
	}
	if (slot->epoch != epoch || mcd_now_us() - slot->last_used_us >= MCD_IDLE_RECONNECT_US) {
		memcached_quit(memc);
		slot->epoch = epoch;
	}
}

/* The slot of a pooled handle, given to it on its first use (the pool makes at most size). */
static struct mcd_handle_slot *slot_of(struct mcd_client *client, struct mcd_pool *pool, memcached_st *memc)
{
	struct mcd_handle_slot *slot = memcached_get_user_data(memc);
	unsigned int n;

	if (!slot && (n = atomic_fetch_add(&pool->slots_used, 1)) < pool->size) {
		/* A handle the pool just made: it has no connection yet. */
		slot = &pool->slots[n];
		slot->epoch = atomic_load(&client->connections_epoch);
		slot->last_used_us = mcd_now_us();
		memcached_set_user_data(memc, slot);
	}
	return slot;
}

memcached_st *mcd_take_connection(struct mcd_client *client, struct mcd_pool *pool, mcd_rc *rc)
{
	memcached_return_t fetch_rc = MEMCACHED_SUCCESS;
	memcached_st *memc = NULL;
	struct mcd_handle_slot *slot;
	unsigned int held, peak;

	if (!reserve_handle(client, pool)) {
		/* Every handle stayed busy: that must not read as a slow server or a missing key. */
		*rc = MCD_POOL_EXHAUSTED;
		return NULL;
	}
	/* Reserved: the pool has a free handle or may make one, so it need not wait. */
	if (!(memc = memcached_pool_fetch(pool->pool, NULL, &fetch_rc))) {
		unreserve_handle(pool);
		*rc = fetch_rc == MEMCACHED_SUCCESS || fetch_rc == MEMCACHED_NOTFOUND
			? MEMCACHED_MEMORY_ALLOCATION_FAILURE : (mcd_rc) fetch_rc;
		return NULL;
	}
	if ((slot = slot_of(client, pool, memc))) {
		mcd_reconnect_if_stale(client, memc, slot);
	}
	/* The pool makes a handle only when none is free: the peak held is how many it made. */
	held = atomic_fetch_add(&pool->in_use, 1) + 1;
	peak = atomic_load(&pool->peak);
	while (held > peak && !atomic_compare_exchange_weak(&pool->peak, &peak, held)) {
	}
	return memc;
}

void mcd_give_back(struct mcd_pool *pool, memcached_st *memc)
{
	struct mcd_handle_slot *slot = memcached_get_user_data(memc);

	if (slot) {
		slot->last_used_us = mcd_now_us();
	}
	atomic_fetch_sub(&pool->in_use, 1);
	memcached_pool_release(pool->pool, memc);
	unreserve_handle(pool);
}

mcd_rc mcd_flush(struct mcd_client *client)
{
	mcd_rc rc = MEMCACHED_SUCCESS;
	memcached_st *memc = mcd_take_connection(client, &client->main, &rc);

	if (!memc) {
		return rc;
	}
	rc = memcached_flush(memc, 0);
	mcd_give_back(&client->main, memc);
	return rc;
}
