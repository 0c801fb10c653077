/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * client: building a client (servers, behaviours, pools), taking and giving
 * back connections, each server's health and protocol, and server reports.
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

static void start_prober(struct mcd_client *client);
static void stop_prober(struct mcd_client *client);

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
static memcached_return_t add_server(memcached_st *memc, const struct mcd_server *server)
{
	return server->unix_socket
		? memcached_server_add_unix_socket_with_weight(memc, server->host, server->weight)
		: memcached_server_add_with_weight(memc, server->host, (in_port_t) server->port, server->weight);
}

/* The timeouts that bound every network wait: connecting, then each read or write. */
static int set_timeouts(memcached_st *memc, const struct mcd_settings *s)
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
	if (set_timeouts(memc, s)) {
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
	pool->seen_epoch = calloc((size_t) size, sizeof(*pool->seen_epoch));
	pool->pool = master && pool->seen_epoch ? memcached_pool_create(master, 1, (uint32_t) size) : NULL;
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
	if (pool->seen_epoch) {
		pthread_mutex_destroy(&pool->wait_lock);
		pthread_cond_destroy(&pool->freed);
		free(pool->seen_epoch);
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
	pthread_mutex_init(&client->ordered_lock, NULL);
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
		if (memcached_failed(rc = add_server(master, server))) {
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
		&& (make_pool(&client->noreply, text_copy(master, true), settings->pool_size)
		|| !(client->ordered = text_copy(master, true)))) {
		snprintf(err, errlen, "cannot create the noreply connection pool");
		goto failed;
	}
	if (mcd_tracks_health(client)) {
		start_prober(client);
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
	stop_prober(client);
	if (client->ordered) {
		memcached_free(client->ordered);
	}
	pthread_mutex_destroy(&client->ordered_lock);
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

int mcd_monotonic_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, const struct timespec *at)
{
	return pthread_cond_timedwait(cond, mutex, at);
}

struct timespec mcd_monotonic_after_ms(long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/* Wait (at most pool_wait, on the monotonic clock) until the pool has a handle no call holds.
 * libmemcached's own wait is in whole seconds and starts again at each wake-up. */
static bool reserve_handle(struct mcd_client *client, struct mcd_pool *pool)
{
	struct timespec deadline = mcd_monotonic_after_ms(client->settings.pool_wait_s * 1000L);
	bool reserved;

	pthread_mutex_lock(&pool->wait_lock);
	while (pool->held >= pool->size && client->settings.pool_wait_s > 0
		&& mcd_monotonic_wait(&pool->freed, &pool->wait_lock, &deadline) != ETIMEDOUT) {
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

/* A handle whose connections may predate a server's restart closes them: the next request
 * reconnects instead of failing on a socket the server closed. */
static void reconnect_if_stale(struct mcd_client *client, struct mcd_pool *pool, memcached_st *memc)
{
	unsigned int *seen = memcached_get_user_data(memc);
	const unsigned int epoch = atomic_load(&client->connections_epoch);

	if (!seen) {
		/* A handle the pool just made: it has no connection yet. */
		unsigned int slot = atomic_fetch_add(&pool->slots_used, 1);

		if (slot >= pool->size) {
			return;
		}
		seen = &pool->seen_epoch[slot];
		*seen = epoch;
		memcached_set_user_data(memc, seen);
	} else if (*seen != epoch) {
		memcached_quit(memc);
		*seen = epoch;
	}
}

memcached_st *mcd_take_connection(struct mcd_client *client, struct mcd_pool *pool, mcd_rc *rc)
{
	memcached_return_t fetch_rc = MEMCACHED_SUCCESS;
	memcached_st *memc = NULL;
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
	reconnect_if_stale(client, pool, memc);
	/* The pool makes a handle only when none is free: the peak held is how many it made. */
	held = atomic_fetch_add(&pool->in_use, 1) + 1;
	peak = atomic_load(&pool->peak);
	while (held > peak && !atomic_compare_exchange_weak(&pool->peak, &peak, held)) {
	}
	return memc;
}

void mcd_give_back(struct mcd_pool *pool, memcached_st *memc)
{
	atomic_fetch_sub(&pool->in_use, 1);
	memcached_pool_release(pool->pool, memc);
	unreserve_handle(pool);
}

/* Say something to the administrator through the glue, if it listens. */
static void notice(const struct mcd_client *client, const char *format, ...)
{
	char message[512];
	va_list ap;

	if (!client->notice) {
		return;
	}
	va_start(ap, format);
	vsnprintf(message, sizeof(message), format, ap);
	va_end(ap);
	client->notice(message);
}

/* Whether server i answers a version request in the given protocol, on a connection of its
 * own, within the configured timeouts. */
static bool answers(const struct mcd_client *client, unsigned int i, bool binary)
{
	memcached_st *memc = memcached_create(NULL);
	bool answered = false;

	if (memc && !memcached_failed(add_server(memc, &client->settings.servers[i]))
		&& !set_timeouts(memc, &client->settings)
		&& !memcached_failed(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, binary))) {
		memcached_version(memc);
		answered = memcached_server_major_version(memcached_server_instance_by_position(memc, 0))
			!= UINT8_MAX;
	}
	memcached_free(memc);
	return answered;
}

/* A server that starts resting may be well but speak only the other protocol (a proxy that
 * speaks no binary, a memcached started with -B binary): find out once, and say so. */
static void probe_protocol(struct mcd_client *client, unsigned int server)
{
	const bool binary = client->settings.binary_protocol;
	char address[MCD_ADDRESS_LEN];

	if (!atomic_exchange(&client->health[server].probe_due, false) || !answers(client, server, !binary)) {
		return;
	}
	atomic_store(&client->health[server].other_protocol, true);
	mcd_server_address(&client->settings.servers[server], address);
	if (binary) {
		notice(client, "memcached server %s does not answer the binary protocol but answers the "
			"text protocol: it is a proxy (memcached's own, twemproxy, mcrouter) or a server that "
			"speaks text only. Set binary_proto=no (or auto) in memcached.conf.", address);
	} else {
		notice(client, "memcached server %s does not answer the text protocol but answers the "
			"binary protocol (a memcached started with -B binary, or with -S, which then wants a "
			"username and password too). Set binary_proto=yes in memcached.conf.", address);
	}
}

static void wake_prober(struct mcd_client *client);

/* A fault that says the connection itself is gone (closed or reset by the server, refused),
 * not merely slow: after one, every pooled handle reconnects before use. */
static bool connection_gone(mcd_rc rc)
{
	return rc == MEMCACHED_CONNECTION_FAILURE || rc == MEMCACHED_WRITE_FAILURE
		|| rc == MEMCACHED_READ_FAILURE || rc == MEMCACHED_UNKNOWN_READ_FAILURE || rc == MEMCACHED_ERRNO;
}

bool mcd_connection_lost(struct mcd_client *client, memcached_st *memc, uint32_t server, mcd_rc rc)
{
	unsigned int *seen = memcached_get_user_data(memc);

	if (!connection_gone(rc)) {
		return false;
	}
	/* A server thought well had closed this connection (it restarted, say): the other
	 * handles' connections to it are as stale. While it is failing, that is known already. */
	if (server < client->settings.server_count && !atomic_load(&client->health[server].faults)) {
		atomic_fetch_add(&client->connections_epoch, 1);
	}
	memcached_quit(memc);
	if (seen) {
		*seen = atomic_load(&client->connections_epoch);
	}
	return true;
}

void mcd_note_server(struct mcd_client *client, uint32_t server, mcd_rc rc)
{
	struct server_health *health;

	if (server >= client->settings.server_count) {
		return;
	}
	health = &client->health[server];
	switch (mcd_rc_outcome(rc)) {
	case MCD_OUTCOME_ANSWER:
	case MCD_OUTCOME_ERROR:
		/* It answered. Read first: a store on every success would bounce the line between CPUs. */
		if (atomic_load(&health->faults)) {
			atomic_store(&health->faults, 0);
		}
		if (!atomic_load(&health->probe_due)) {
			atomic_store(&health->other_protocol, false);
			atomic_store(&health->probe_due, true);
		}
		break;
	case MCD_OUTCOME_FAULT:
		/* The first fault of a run that closed connections: the others are stale too. */
		if (atomic_fetch_add(&health->faults, 1) == 0 && connection_gone(rc)) {
			atomic_fetch_add(&client->connections_epoch, 1);
		}
		if (atomic_load(&health->faults) >= (unsigned int) client->settings.server_failure_limit
			&& client->settings.retry_timeout_s > 0) {
			/* libmemcached rests a server only after connect failures, and only in the
			 * one handle that saw them: a hung server would cost every call a timeout.
			 * The prober ends the rest at the server's first answer. */
			atomic_store(&health->resting_until, mcd_monotonic_s() + client->settings.retry_timeout_s);
			wake_prober(client);
		}
		break;
	case MCD_OUTCOME_REFUSED:
	case MCD_OUTCOME_RESTING:
	case MCD_OUTCOME_OVERLOAD:
	case MCD_OUTCOME_COUNT:
		/* The server was not asked: nothing learned about it. */
		break;
	}
}

/* --- the prober: resting servers asked for their version off the call path --- */

/* One round: each resting server is asked (and, the first time it rests, asked in the other
 * protocol too); one that answers is used again at once, one that does not rests on. */
static void probe_resting(struct mcd_client *client)
{
	for (unsigned int i = 0; i < client->settings.server_count; i++) {
		struct server_health *health = &client->health[i];

		if (!atomic_load(&health->resting_until)) {
			continue;
		}
		probe_protocol(client, i);
		if (answers(client, i, client->settings.binary_protocol)) {
			atomic_store(&health->faults, 0);
			atomic_store(&health->resting_until, 0);
			/* Its connections from before the rest are dead: every handle reconnects. */
			atomic_fetch_add(&client->connections_epoch, 1);
		} else {
			atomic_store(&health->resting_until, mcd_monotonic_s() + client->settings.retry_timeout_s);
		}
	}
}

static void *prober_run(void *arg)
{
	struct mcd_client *client = arg;
	struct mcd_prober *p = &client->prober;

	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		struct timespec next = mcd_monotonic_after_ms(MCD_PROBE_INTERVAL_MS);

		mcd_monotonic_wait(&p->wake, &p->lock, &next);
		if (p->stopping) {
			break;
		}
		pthread_mutex_unlock(&p->lock);
		probe_resting(client);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void wake_prober(struct mcd_client *client)
{
	if (client->prober.running) {
		pthread_mutex_lock(&client->prober.lock);
		pthread_cond_signal(&client->prober.wake);
		pthread_mutex_unlock(&client->prober.lock);
	}
}

static void start_prober(struct mcd_client *client)
{
	struct mcd_prober *p = &client->prober;

	pthread_mutex_init(&p->lock, NULL);
	mcd_monotonic_cond_init(&p->wake);
	/* Without it, rests still end after retry_timeout, as calls find out. */
	p->running = !pthread_create(&p->thread, NULL, prober_run, client);
}

static void stop_prober(struct mcd_client *client)
{
	struct mcd_prober *p = &client->prober;

	if (p->running) {
		pthread_mutex_lock(&p->lock);
		p->stopping = true;
		pthread_cond_signal(&p->wake);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
		p->running = false;
	}
}

void mcd_client_adopt_health(struct mcd_client *client, struct mcd_client *from)
{
	for (unsigned int i = 0; i < client->settings.server_count; i++) {
		for (unsigned int j = 0; from && j < from->settings.server_count; j++) {
			char mine[MCD_ADDRESS_LEN], theirs[MCD_ADDRESS_LEN];

			if (strcmp(mcd_server_address(&client->settings.servers[i], mine),
				mcd_server_address(&from->settings.servers[j], theirs))) {
				continue;
			}
			atomic_store(&client->health[i].faults, atomic_load(&from->health[j].faults));
			atomic_store(&client->health[i].resting_until, atomic_load(&from->health[j].resting_until));
			atomic_store(&client->health[i].probe_due, atomic_load(&from->health[j].probe_due));
			atomic_store(&client->health[i].other_protocol, atomic_load(&from->health[j].other_protocol));
			break;
		}
	}
}

bool mcd_server_resting(struct mcd_client *client, uint32_t server)
{
	long until;

	/* A server that never rested costs no clock read. */
	return server < MCD_MAX_SERVERS && (until = atomic_load(&client->health[server].resting_until))
		&& until > mcd_monotonic_s();
}

void mcd_server_health(struct mcd_client *client, unsigned int i, struct mcd_server_health *health)
{
	health->faults = i < MCD_MAX_SERVERS ? atomic_load(&client->health[i].faults) : 0;
	health->resting = mcd_server_resting(client, i);
	health->other_protocol = i < MCD_MAX_SERVERS && atomic_load(&client->health[i].other_protocol);
}

bool mcd_tracks_health(const struct mcd_client *client)
{
	return !client->settings.remove_failed_servers && !client->settings.replicas;
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

/* --- server reports, for the console and the manager --- */

struct report_call {
	memcached_st *memc;
	struct mcd_server_report *reports;
	unsigned int count;
};

/* One "STAT key value" line of one server's answer to "stats". */
static memcached_return_t take_stat(const memcached_instance_st *server, const char *key, size_t key_len,
	const char *value, size_t value_len, void *context)
{
	struct report_call *call = context;

	for (unsigned int i = 0; i < call->count; i++) {
		struct mcd_server_report *r = &call->reports[i];

		if (memcached_server_instance_by_position(call->memc, i) != server) {
			continue;
		}
#define IS(name) (key_len == sizeof(name) - 1 && !memcmp(key, name, key_len))
		r->answered = true;
		if (IS("version")) {
			snprintf(r->version, sizeof(r->version), "%.*s", (int) value_len, value);
		} else if (IS("curr_items")) {
			r->items = mcd_uint64_of(value, value_len);
		} else if (IS("curr_connections")) {
			r->connections = mcd_uint64_of(value, value_len);
		} else if (IS("get_hits")) {
			r->hits = mcd_uint64_of(value, value_len);
		} else if (IS("get_misses")) {
			r->misses = mcd_uint64_of(value, value_len);
		} else if (IS("proxy_conn_requests")) {
			/* Only memcached's built-in proxy counts the requests it passes on. */
			r->kind = MCD_KIND_MEMCACHED_PROXY;
		}
#undef IS
	}
	return MEMCACHED_SUCCESS;
}

unsigned int mcd_server_reports(struct mcd_client *client, struct mcd_server_report *reports,
	unsigned int max)
{
	const struct mcd_settings *s = &client->settings;
	const unsigned int count = s->server_count < max ? s->server_count : max;
	mcd_rc rc = MEMCACHED_SUCCESS;
	struct report_call call = { .reports = reports, .count = count };

	for (unsigned int i = 0; i < count; i++) {
		memset(&reports[i], 0, sizeof(reports[i]));
		mcd_server_address(&s->servers[i], reports[i].address);
		reports[i].kind = MCD_KIND_MEMCACHED;
		reports[i].resting = mcd_server_resting(client, i);
		reports[i].other_protocol = atomic_load(&client->health[i].other_protocol);
	}
	if ((call.memc = mcd_take_connection(client, &client->main, &rc))) {
		/* Each server's own answer is read line by line; the overall result says nothing more. */
		memcached_stat_execute(call.memc, NULL, take_stat, &call);
		mcd_give_back(&client->main, call.memc);
	}
	for (unsigned int i = 0; i < count; i++) {
		struct mcd_server_report *r = &reports[i];

		if (r->answered) {
			r->other_protocol = false;
			continue;
		}
		/* No stats: a proxy such as twemproxy serves the commands but not "stats"; a server of
		 * the other protocol answers only that; else it is down or hung. */
		if (answers(client, i, s->binary_protocol)) {
			r->answered = true;
			r->kind = MCD_KIND_NO_STATS;
		} else if (answers(client, i, !s->binary_protocol)) {
			r->other_protocol = true;
		}
	}
	return s->server_count;
}

const char *mcd_server_state(const struct mcd_server_report *report)
{
	if (report->other_protocol) {
		return "wrong protocol";
	}
	if (report->resting) {
		return "resting";
	}
	return report->answered ? "up" : "no answer";
}

const char *mcd_server_kind(const struct mcd_server_report *report)
{
	if (!report->answered) {
		return "";
	}
	switch (report->kind) {
	case MCD_KIND_MEMCACHED:
		return "memcached";
	case MCD_KIND_MEMCACHED_PROXY:
		return "memcached proxy";
	case MCD_KIND_NO_STATS:
		return "no stats (a proxy)";
	}
	return "";
}
