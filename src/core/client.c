/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * client: the pools, server health and the single-key operations.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <netdb.h>
#include <stdatomic.h>
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

/* Look a host name up once, now, so that no call ever waits on DNS. IPv4 first:
 * memcached as packaged listens on 127.0.0.1, and "localhost" also names ::1. */
static int resolve(struct mcd_server *server, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
	struct addrinfo *found;
	char numeric[sizeof(server->host)];
	int res = getaddrinfo(server->host, NULL, &hints, &found);

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

static int set_behaviors(memcached_st *memc, const struct mcd_settings *s, char *err, size_t errlen)
{
	const struct {
		memcached_behavior_t behavior;
		uint64_t value;
	} behaviors[] = {
		{ MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, s->binary_protocol },
		{ MEMCACHED_BEHAVIOR_DISTRIBUTION, s->distribution == MCD_DISTRIBUTION_CONSISTENT
			? MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA : MEMCACHED_DISTRIBUTION_MODULA },
		{ MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, (uint64_t) s->connect_timeout_ms },
		/* poll() waits for every read and write are what bound an operation. */
		{ MEMCACHED_BEHAVIOR_POLL_TIMEOUT, (uint64_t) s->timeout_ms },
		{ MEMCACHED_BEHAVIOR_SND_TIMEOUT, (uint64_t) s->timeout_ms * 1000 },
		{ MEMCACHED_BEHAVIOR_RCV_TIMEOUT, (uint64_t) s->timeout_ms * 1000 },
		{ MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, (uint64_t) s->retry_timeout_s },
		{ MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, (uint64_t) s->server_failure_limit },
		/* libmemcached's own count of connect timeouts uses the same limit (read timeouts
		 * it never counts: mcd_note_server does). */
		{ MEMCACHED_BEHAVIOR_SERVER_TIMEOUT_LIMIT, (uint64_t) s->server_failure_limit },
		{ MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, s->remove_failed_servers },
		{ MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS, (uint64_t) s->replicas },
		{ MEMCACHED_BEHAVIOR_TCP_NODELAY, 1 },
	};

	/* Some hash functions are optional when libmemcached is built (Debian's lacks hsieh). */
	if (memcached_failed(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, (uint64_t) s->hash))) {
		snprintf(err, errlen, "hash %s is not built into this libmemcached", mcd_hash_name(s->hash));
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

/* A text-protocol copy of master without replicas (and with noreply if asked), and its
 * pool, for counters and fire-and-forget writes. Nonzero on failure. */
static int text_pool(memcached_st *master, bool noreply, long size, memcached_st **copy,
	memcached_pool_st **pool)
{
	*copy = memcached_clone(NULL, master);
	if (!*copy
		|| memcached_failed(memcached_behavior_set(*copy, MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS, 0))
		|| memcached_failed(memcached_behavior_set(*copy, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 0))
		|| memcached_failed(memcached_behavior_set(*copy, MEMCACHED_BEHAVIOR_NOREPLY, noreply))) {
		return -1;
	}
	*pool = memcached_pool_create(*copy, 1, (uint32_t) size);
	return *pool ? 0 : -1;
}

struct mcd_client *mcd_client_create(const struct mcd_settings *settings, struct mcd_stats *stats,
	char *err, size_t errlen)
{
	struct mcd_client *client = calloc(1, sizeof(*client));

	if (!client) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	client->settings = *settings;
	client->stats = stats;
	client->prefix_len = strlen(settings->prefix);

	client->master = memcached_create(NULL);
	if (!client->master) {
		snprintf(err, errlen, "out of memory");
		goto failed;
	}
	for (unsigned int i = 0; i < client->settings.server_count; i++) {
		struct mcd_server *server = &client->settings.servers[i];
		memcached_return_t rc;

		if (resolve(server, err, errlen)) {
			goto failed;
		}
		rc = memcached_server_add(client->master, server->host, (in_port_t) server->port);
		if (memcached_failed(rc)) {
			snprintf(err, errlen, "cannot add server %s:%u: %s", server->host, server->port,
				memcached_strerror(client->master, rc));
			goto failed;
		}
	}
	if (set_behaviors(client->master, &client->settings, err, errlen)) {
		goto failed;
	}
	if (settings->username[0]) {
		memcached_return_t rc = memcached_set_sasl_auth_data(client->master, settings->username,
			settings->password);
		if (memcached_failed(rc)) {
			snprintf(err, errlen, "cannot set SASL credentials: %s",
				memcached_strerror(client->master, rc));
			goto failed;
		}
	}
	/* One handle now; more are cloned as concurrent calls need them. None connects yet. */
	client->pool = memcached_pool_create(client->master, 1, (uint32_t) settings->pool_size);
	if (!client->pool) {
		snprintf(err, errlen, "cannot create a connection pool of %ld", settings->pool_size);
		goto failed;
	}
	if (settings->binary_protocol && !settings->username[0]
		&& text_pool(client->master, false, settings->pool_size, &client->counter_master,
			&client->counter_pool)) {
		snprintf(err, errlen, "cannot create the counters' connection pool");
		goto failed;
	}
	if (!settings->username[0] && !settings->replicas
		&& text_pool(client->master, true, settings->pool_size, &client->noreply_master,
			&client->noreply_pool)) {
		snprintf(err, errlen, "cannot create the noreply connection pool");
		goto failed;
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
	if (client->counter_pool) {
		memcached_pool_destroy(client->counter_pool);
	}
	if (client->counter_master) {
		memcached_free(client->counter_master);
	}
	if (client->noreply_pool) {
		memcached_pool_destroy(client->noreply_pool);
	}
	if (client->noreply_master) {
		memcached_free(client->noreply_master);
	}
	if (client->pool) {
		memcached_pool_destroy(client->pool);
	}
	if (client->master) {
		if (client->settings.username[0]) {
			memcached_destroy_sasl_auth_data(client->master);
		}
		memcached_free(client->master);
	}
	free(client);
}

const struct mcd_settings *mcd_client_settings(const struct mcd_client *client)
{
	return &client->settings;
}

mcd_rc mcd_client_key(const struct mcd_client *client, const char *key, char *out,
	size_t *out_len)
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

static long now_monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long) ts.tv_sec;
}

memcached_st *mcd_take_connection(struct mcd_client *client, memcached_pool_st *pool, mcd_rc *rc)
{
	struct timespec wait = { .tv_sec = client->settings.pool_wait_s };
	memcached_return_t fetch_rc = MEMCACHED_SUCCESS;
	memcached_st *memc = memcached_pool_fetch(pool, &wait, &fetch_rc);

	if (!memc) {
		/* The pool answers TIMEOUT after a wait and NOTFOUND without one: both mean every
		 * connection is busy, which must not read as a slow server or a missing key. */
		*rc = (fetch_rc == MEMCACHED_TIMEOUT || fetch_rc == MEMCACHED_NOTFOUND) ? MCD_POOL_EXHAUSTED
			: (fetch_rc == MEMCACHED_SUCCESS ? MEMCACHED_MEMORY_ALLOCATION_FAILURE : (mcd_rc) fetch_rc);
	}
	return memc;
}

void mcd_note_server(struct mcd_client *client, uint32_t server, mcd_rc rc)
{
	struct server_health *health;

	if (server >= MCD_MAX_SERVERS) {
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
		break;
	case MCD_OUTCOME_FAULT:
		if (atomic_fetch_add(&health->faults, 1) + 1 >= (unsigned int) client->settings.server_failure_limit) {
			/* libmemcached rests a server only after connect failures, and only in the
			 * one handle that saw them: a hung server would cost every call a timeout. */
			atomic_store(&health->resting_until, now_monotonic() + client->settings.retry_timeout_s);
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

bool mcd_server_resting(struct mcd_client *client, uint32_t server)
{
	return server < MCD_MAX_SERVERS
		&& atomic_load(&client->health[server].resting_until) > now_monotonic();
}

bool mcd_tracks_health(const struct mcd_client *client)
{
	return !client->settings.remove_failed_servers && !client->settings.replicas;
}

bool mcd_client_has_noreply(const struct mcd_client *client)
{
	return client->noreply_pool != NULL;
}

mcd_rc mcd_flush(struct mcd_client *client)
{
	mcd_rc rc = MEMCACHED_SUCCESS;
	memcached_st *memc = mcd_take_connection(client, client->pool, &rc);

	if (!memc) {
		return rc;
	}
	rc = memcached_flush(memc, 0);
	memcached_pool_release(client->pool, memc);
	return rc;
}

unsigned int mcd_server_reports(struct mcd_client *client, struct mcd_server_report *reports,
	unsigned int max)
{
	const struct mcd_settings *s = &client->settings;
	mcd_rc rc = MEMCACHED_SUCCESS;
	memcached_stat_st *stats = NULL;
	memcached_st *memc = mcd_take_connection(client, client->pool, &rc);

	if (memc) {
		/* Each server's own answer is read from its entry, not from the overall result. */
		stats = memcached_stat(memc, NULL, NULL);
	}
	for (unsigned int i = 0; i < s->server_count && i < max; i++) {
		struct mcd_server_report *r = &reports[i];

		memset(r, 0, sizeof(*r));
		mcd_server_address(&s->servers[i], r->address);
		r->resting = mcd_server_resting(client, i);
		/* Every memcached states its version; a server that did not answer leaves it empty. */
		if (stats && stats[i].version[0]) {
			r->answered = true;
			snprintf(r->version, sizeof(r->version), "%s", stats[i].version);
			r->items = stats[i].curr_items;
			r->connections = stats[i].curr_connections;
			r->hits = stats[i].get_hits;
			r->misses = stats[i].get_misses;
		}
	}
	if (stats) {
		memcached_stat_free(memc, stats);
	}
	if (memc) {
		memcached_pool_release(client->pool, memc);
	}
	return s->server_count;
}

const char *mcd_server_state(const struct mcd_server_report *report)
{
	return report->resting ? "resting" : (report->answered ? "up" : "no answer");
}
