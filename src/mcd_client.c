/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * mcd_client: pool, key building and the memcached operations.
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

#include <libmemcached/memcached.h>
#include <libmemcachedutil-1.0/pool.h>

#include "mcd_client.h"
#include "mcd_util.h"

/* mcd_config names hash functions in libmemcached's own order. */
_Static_assert(MEMCACHED_HASH_DEFAULT == 0 && MEMCACHED_HASH_MD5 == 1 && MEMCACHED_HASH_CRC == 2
	&& MEMCACHED_HASH_FNV1_64 == 3 && MEMCACHED_HASH_FNV1A_64 == 4 && MEMCACHED_HASH_FNV1_32 == 5
	&& MEMCACHED_HASH_FNV1A_32 == 6 && MEMCACHED_HASH_HSIEH == 7 && MEMCACHED_HASH_MURMUR == 8
	&& MEMCACHED_HASH_JENKINS == 9, "hash_names in mcd_config.c must follow memcached_hash_t");
_Static_assert((int) MCD_ARGUMENT_NEEDED > (int) MEMCACHED_MAXIMUM_RETURN, "own results must not overlap");
_Static_assert((int) MCD_SUCCESS == (int) MEMCACHED_SUCCESS && (int) MCD_NOTFOUND == (int) MEMCACHED_NOTFOUND
	&& (int) MCD_NO_SERVERS == (int) MEMCACHED_NO_SERVERS
	&& (int) MCD_SERVER_TEMPORARILY_DISABLED == (int) MEMCACHED_SERVER_TEMPORARILY_DISABLED,
	"mcd_client.h mirrors libmemcached's numbers");

/* memcached takes an expiry above 30 days as an absolute Unix time. */
#define RELATIVE_EXPIRY_MAX (60L * 60 * 24 * 30)

/* Shared by every pooled handle: libmemcached keeps its failure counts per handle. */
struct server_health {
	atomic_uint faults;          /* faults in a row, from any call */
	atomic_long resting_until;   /* monotonic second before which calls skip the server */
};

struct mcd_client {
	struct mcd_settings settings;
	struct server_health health[MCD_MAX_SERVERS];
	memcached_st *master;        /* template the pool clones; never used for I/O itself */
	memcached_pool_st *pool;
	/* Counters go through a text-protocol pool when the main pool talks binary without
	 * SASL: libmemcached 1.1.4 aborts the whole process when a binary incr/decr meets a
	 * refusal it does not expect, such as a server that wants credentials. */
	memcached_st *counter_master;
	memcached_pool_st *counter_pool;
	/* Fire-and-forget writes: a text-protocol pool with noreply, or NULL (see
	 * mcd_client_has_noreply). Its connections never read, so nothing else uses them. */
	memcached_st *noreply_master;
	memcached_pool_st *noreply_pool;
	struct mcd_stats *stats;     /* where operations are counted, or NULL */
	size_t prefix_len;
};

#define NAME(rc) case rc: return #rc

const char *mcd_rc_name(mcd_rc rc)
{
	switch (rc) {
	NAME(MEMCACHED_SUCCESS);
	NAME(MEMCACHED_FAILURE);
	NAME(MEMCACHED_HOST_LOOKUP_FAILURE);
	NAME(MEMCACHED_CONNECTION_FAILURE);
	NAME(MEMCACHED_CONNECTION_BIND_FAILURE);
	NAME(MEMCACHED_WRITE_FAILURE);
	NAME(MEMCACHED_READ_FAILURE);
	NAME(MEMCACHED_UNKNOWN_READ_FAILURE);
	NAME(MEMCACHED_PROTOCOL_ERROR);
	NAME(MEMCACHED_CLIENT_ERROR);
	NAME(MEMCACHED_SERVER_ERROR);
	NAME(MEMCACHED_ERROR);
	NAME(MEMCACHED_DATA_EXISTS);
	NAME(MEMCACHED_DATA_DOES_NOT_EXIST);
	NAME(MEMCACHED_NOTSTORED);
	NAME(MEMCACHED_STORED);
	NAME(MEMCACHED_NOTFOUND);
	NAME(MEMCACHED_MEMORY_ALLOCATION_FAILURE);
	NAME(MEMCACHED_PARTIAL_READ);
	NAME(MEMCACHED_SOME_ERRORS);
	NAME(MEMCACHED_NO_SERVERS);
	NAME(MEMCACHED_END);
	NAME(MEMCACHED_DELETED);
	NAME(MEMCACHED_VALUE);
	NAME(MEMCACHED_STAT);
	NAME(MEMCACHED_ITEM);
	NAME(MEMCACHED_ERRNO);
	NAME(MEMCACHED_FAIL_UNIX_SOCKET);
	NAME(MEMCACHED_NOT_SUPPORTED);
	NAME(MEMCACHED_NO_KEY_PROVIDED);
	NAME(MEMCACHED_FETCH_NOTFINISHED);
	NAME(MEMCACHED_TIMEOUT);
	NAME(MEMCACHED_BUFFERED);
	NAME(MEMCACHED_BAD_KEY_PROVIDED);
	NAME(MEMCACHED_INVALID_HOST_PROTOCOL);
	NAME(MEMCACHED_SERVER_MARKED_DEAD);
	NAME(MEMCACHED_UNKNOWN_STAT_KEY);
	NAME(MEMCACHED_E2BIG);
	NAME(MEMCACHED_INVALID_ARGUMENTS);
	NAME(MEMCACHED_KEY_TOO_BIG);
	NAME(MEMCACHED_AUTH_PROBLEM);
	NAME(MEMCACHED_AUTH_FAILURE);
	NAME(MEMCACHED_AUTH_CONTINUE);
	NAME(MEMCACHED_PARSE_ERROR);
	NAME(MEMCACHED_PARSE_USER_ERROR);
	NAME(MEMCACHED_DEPRECATED);
	NAME(MEMCACHED_IN_PROGRESS);
	NAME(MEMCACHED_SERVER_TEMPORARILY_DISABLED);
	NAME(MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE);
	case MCD_ARGUMENT_NEEDED: return "MEMCACHED_ARGUMENT_NEEDED";
	case MCD_KEY_TOO_LONG: return "MEMCACHED_KEY_TOO_LONG";
	case MCD_VALUE_TOO_LONG: return "MEMCACHED_VALUE_TOO_LONG";
	case MCD_BAD_INCREMENT: return "MEMCACHED_BAD_INCREMENT";
	case MCD_BINARY_PROTO_NEEDED: return "MEMCACHED_BINARY_PROTO_NEEDED";
	case MCD_POOL_EXHAUSTED: return "MEMCACHED_POOL_EXHAUSTED";
	case MCD_SENT: return "MEMCACHED_SENT";
	}
	return "MEMCACHED_UNKNOWN_RESULT";
}

#undef NAME

const char *mcd_op_name(enum mcd_op op)
{
	static const char *const names[MCD_OP_COUNT] = {
		"get", "set", "add", "replace", "append", "prepend", "delete", "counter", "touch", "mget",
	};

	return op < MCD_OP_COUNT ? names[op] : "?";
}

/* libmemcached's results keep their numbers; the module's own follow them. */
#define OWN_RESULTS_SLOT 50
_Static_assert(MEMCACHED_MAXIMUM_RETURN <= OWN_RESULTS_SLOT, "slots for libmemcached's results");
_Static_assert(OWN_RESULTS_SLOT + (MCD_OWN_RESULT_LAST - MCD_ARGUMENT_NEEDED) < MCD_RESULT_SLOTS - 1,
	"slots for the module's own results");

int mcd_result_slot(mcd_rc rc)
{
	if (rc >= 0 && rc < MEMCACHED_MAXIMUM_RETURN) {
		return rc;
	}
	if (rc >= MCD_ARGUMENT_NEEDED && rc <= MCD_OWN_RESULT_LAST) {
		return OWN_RESULTS_SLOT + (rc - MCD_ARGUMENT_NEEDED);
	}
	return MCD_RESULT_SLOTS - 1;
}

mcd_rc mcd_result_of_slot(int slot)
{
	if (slot >= OWN_RESULTS_SLOT && slot < MCD_RESULT_SLOTS - 1) {
		return MCD_ARGUMENT_NEEDED + (slot - OWN_RESULTS_SLOT);
	}
	return slot < MEMCACHED_MAXIMUM_RETURN ? slot : -1;
}

void mcd_stats_reset(struct mcd_stats *stats)
{
	for (int op = 0; op < MCD_OP_COUNT; op++) {
		struct mcd_op_stats *s = &stats->ops[op];
		atomic_store(&s->calls, 0);
		atomic_store(&s->total_us, 0);
		atomic_store(&s->worst_us, 0);
		for (int i = 0; i < MCD_RESULT_SLOTS; i++) {
			atomic_store(&s->by_result[i], 0);
		}
	}
}

bool mcd_rc_is_answer(mcd_rc rc)
{
	return rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND || rc == MEMCACHED_NOTSTORED
		|| rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_STORED || rc == MEMCACHED_DELETED
		|| rc == MCD_SENT;
}

long mcd_wire_expiry(long ttl, long now)
{
	return ttl > RELATIVE_EXPIRY_MAX ? now + ttl : ttl;
}

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
		const char *what;
	} behaviors[] = {
		{ MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, s->binary_protocol, "binary_proto" },
		{ MEMCACHED_BEHAVIOR_DISTRIBUTION, s->distribution == MCD_DISTRIBUTION_CONSISTENT
			? MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA : MEMCACHED_DISTRIBUTION_MODULA, "distribution" },
		{ MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, (uint64_t) s->connect_timeout_ms, "connect_timeout" },
		/* poll() waits for every read and write are what bound an operation. */
		{ MEMCACHED_BEHAVIOR_POLL_TIMEOUT, (uint64_t) s->timeout_ms, "timeout" },
		{ MEMCACHED_BEHAVIOR_SND_TIMEOUT, (uint64_t) s->timeout_ms * 1000, "timeout" },
		{ MEMCACHED_BEHAVIOR_RCV_TIMEOUT, (uint64_t) s->timeout_ms * 1000, "timeout" },
		{ MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, (uint64_t) s->retry_timeout_s, "retry_timeout" },
		{ MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, (uint64_t) s->server_failure_limit,
			"server_failure_limit" },
		/* libmemcached's own count of connect timeouts uses the same limit (read timeouts
		 * it never counts: call_end does). */
		{ MEMCACHED_BEHAVIOR_SERVER_TIMEOUT_LIMIT, (uint64_t) s->server_failure_limit,
			"server_failure_limit" },
		{ MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, s->remove_failed_servers, "remove_failed_servers" },
		{ MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS, (uint64_t) s->replicas, "replicas" },
		{ MEMCACHED_BEHAVIOR_TCP_NODELAY, 1, "tcp_nodelay" },
	};

	/* Some hash functions are optional when libmemcached is built (Debian's lacks hsieh). */
	if (memcached_failed(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, (uint64_t) s->hash))) {
		snprintf(err, errlen, "hash %s is not built into this libmemcached", mcd_hash_name(s->hash));
		return -1;
	}
	for (size_t i = 0; i < sizeof(behaviors) / sizeof(behaviors[0]); i++) {
		memcached_return_t rc = memcached_behavior_set(memc, behaviors[i].behavior, behaviors[i].value);
		if (memcached_failed(rc)) {
			snprintf(err, errlen, "libmemcached refused %s=%llu: %s", behaviors[i].what,
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

/* prefix + key into out, refusing what memcached could misread. */
static mcd_rc build_key(const struct mcd_client *client, const char *key, char *out,
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

/* One operation's connection, key and server, from call_begin to call_end. */
struct call {
	memcached_pool_st *pool;
	memcached_st *memc;
	char key[MCD_KEY_MAX + 1];
	size_t key_len;
	uint32_t server;             /* index of the key's server, or NO_SERVER */
};

#define NO_SERVER UINT32_MAX

static long now_monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long) ts.tv_sec;
}

bool mcd_rc_is_server_fault(mcd_rc rc)
{
	return rc == MEMCACHED_TIMEOUT || rc == MEMCACHED_CONNECTION_FAILURE
		|| rc == MEMCACHED_WRITE_FAILURE || rc == MEMCACHED_READ_FAILURE || rc == MEMCACHED_ERRNO
		|| rc == MEMCACHED_SERVER_MARKED_DEAD || rc == MEMCACHED_HOST_LOOKUP_FAILURE;
}

static memcached_st *take_connection(struct mcd_client *client, memcached_pool_st *pool, mcd_rc *rc)
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

/* Note whether server (an index, or NO_SERVER) answered, for the shared rest-period. */
static void note_server(struct mcd_client *client, uint32_t server, mcd_rc rc)
{
	struct server_health *health;

	if (server >= MCD_MAX_SERVERS) {
		return;
	}
	health = &client->health[server];
	if (!mcd_rc_is_server_fault(rc)) {
		/* Read first: a store on every success would bounce the line between CPUs. */
		if (atomic_load(&health->faults)) {
			atomic_store(&health->faults, 0);
		}
	} else if (atomic_fetch_add(&health->faults, 1) + 1 >= (unsigned int) client->settings.server_failure_limit) {
		/* libmemcached rests a server only after connect failures, and only in the
		 * one handle that saw them: a hung server would cost every call a timeout. */
		atomic_store(&health->resting_until, now_monotonic() + client->settings.retry_timeout_s);
	}
}

/* True when server is in its rest-period after repeated faults. */
static bool server_resting(struct mcd_client *client, uint32_t server)
{
	return server < MCD_MAX_SERVERS
		&& atomic_load(&client->health[server].resting_until) > now_monotonic();
}

/* Whether calls track server health here: with remove_failed_servers or replicas
 * libmemcached moves to other servers itself, which a rest-period would prevent. */
static bool tracks_health(const struct mcd_client *client)
{
	return !client->settings.remove_failed_servers && !client->settings.replicas;
}

/* For call->key: take a connection from pool, and refuse at once when the key's server
 * is resting after repeated faults. On anything but success there is nothing to end. */
static mcd_rc call_begin(struct mcd_client *client, memcached_pool_st *pool, struct call *call)
{
	mcd_rc rc = MEMCACHED_SUCCESS;

	call->pool = pool;
	if (!(call->memc = take_connection(client, pool, &rc))) {
		return rc;
	}
	call->server = NO_SERVER;
	if (tracks_health(client)) {
		call->server = memcached_generate_hash(call->memc, call->key, call->key_len);
		if (server_resting(client, call->server)) {
			memcached_pool_release(pool, call->memc);
			return MEMCACHED_SERVER_TEMPORARILY_DISABLED;
		}
	}
	return MEMCACHED_SUCCESS;
}

/* Give the connection back and note whether the server answered. Returns rc. */
static mcd_rc call_end(struct mcd_client *client, struct call *call, mcd_rc rc)
{
	memcached_pool_release(call->pool, call->memc);
	note_server(client, call->server, rc);
	return rc;
}

static mcd_rc get_value(struct mcd_client *client, const char *key, char **value, size_t *value_len)
{
	struct call call;
	uint32_t flags;
	memcached_return_t mrc;
	mcd_rc rc = build_key(client, key, call.key, &call.key_len);

	*value = NULL;
	*value_len = 0;
	if (rc != MEMCACHED_SUCCESS || (rc = call_begin(client, client->pool, &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	*value = memcached_get(call.memc, call.key, call.key_len, value_len, &flags, &mrc);
	call_end(client, &call, mrc);
	if (mrc != MEMCACHED_SUCCESS) {
		free(*value);
		*value = NULL;
		*value_len = 0;
		return mrc;
	}
	if (!*value) {
		/* A stored empty value comes back as NULL with success: it is not a miss. */
		*value = strdup("");
		if (!*value) {
			return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
		}
	}
	return MEMCACHED_SUCCESS;
}

void mcd_value_free(char *value)
{
	free(value);
}

static mcd_rc store_value(struct mcd_client *client, memcached_pool_st *pool,
	enum mcd_store_mode mode, const char *key, const char *value, size_t value_len, long ttl)
{
	struct call call;
	time_t expiry = (time_t) mcd_wire_expiry(ttl, (long) time(NULL));
	mcd_rc rc = build_key(client, key, call.key, &call.key_len);

	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	if (!value) {
		return MCD_ARGUMENT_NEEDED;
	}
	if (value_len > (size_t) client->settings.max_value_length) {
		return MCD_VALUE_TOO_LONG;
	}
	if ((rc = call_begin(client, pool, &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	switch (mode) {
	case MCD_STORE_SET:
		rc = memcached_set(call.memc, call.key, call.key_len, value, value_len, expiry, 0);
		break;
	case MCD_STORE_ADD:
		rc = memcached_add(call.memc, call.key, call.key_len, value, value_len, expiry, 0);
		break;
	case MCD_STORE_REPLACE:
		rc = memcached_replace(call.memc, call.key, call.key_len, value, value_len, expiry, 0);
		break;
	case MCD_STORE_APPEND:
		rc = memcached_append(call.memc, call.key, call.key_len, value, value_len, expiry, 0);
		break;
	case MCD_STORE_PREPEND:
		rc = memcached_prepend(call.memc, call.key, call.key_len, value, value_len, expiry, 0);
		break;
	}
	return call_end(client, &call, rc);
}

static mcd_rc delete_key(struct mcd_client *client, memcached_pool_st *pool, const char *key)
{
	struct call call;
	mcd_rc rc = build_key(client, key, call.key, &call.key_len);

	if (rc != MEMCACHED_SUCCESS || (rc = call_begin(client, pool, &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	return call_end(client, &call, memcached_delete(call.memc, call.key, call.key_len, 0));
}

/* call_begin for a counter step of delta on key: the key and the step checked first. */
static mcd_rc counter_call_begin(struct mcd_client *client, memcached_pool_st *pool, const char *key,
	int64_t delta, struct call *call)
{
	mcd_rc rc = build_key(client, key, call->key, &call->key_len);

	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	if (delta > MCD_INCREMENT_MAX || delta < -MCD_INCREMENT_MAX) {
		return MCD_BAD_INCREMENT;
	}
	return call_begin(client, pool, call);
}

static mcd_rc add_to_counter(struct mcd_client *client, const char *key, int64_t delta, long ttl,
	uint64_t *result)
{
	struct call call;
	time_t expiry = (time_t) mcd_wire_expiry(ttl, (long) time(NULL));
	uint32_t step;
	mcd_rc rc = counter_call_begin(client, client->counter_pool ? client->counter_pool : client->pool,
		key, delta, &call);

	*result = 0;
	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	/* In range now: counter_call_begin refused anything beyond MCD_INCREMENT_MAX. */
	step = (uint32_t) (delta < 0 ? -delta : delta);
	/* incr/decr are atomic on the server but cannot create a counter (not in the text
	 * protocol), so a miss is answered with add; if another client's add wins that
	 * race, our incr is simply tried again on the counter it made. */
	for (int attempt = 0; attempt < 3; attempt++) {
		char initial[24];
		int initial_len;

		rc = delta < 0 ? memcached_decrement(call.memc, call.key, call.key_len, step, result)
			: memcached_increment(call.memc, call.key, call.key_len, step, result);
		if (rc != MEMCACHED_NOTFOUND || delta == 0) {
			break;
		}
		*result = delta > 0 ? (uint64_t) delta : 0;
		initial_len = snprintf(initial, sizeof(initial), "%llu", (unsigned long long) *result);
		rc = memcached_add(call.memc, call.key, call.key_len, initial, (size_t) initial_len, expiry, 0);
		if (rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS) {
			break;
		}
	}
	if (rc != MEMCACHED_SUCCESS) {
		*result = 0;
	}
	return call_end(client, &call, rc);
}

static mcd_rc touch_key(struct mcd_client *client, const char *key, long ttl)
{
	struct call call;
	time_t expiry = (time_t) mcd_wire_expiry(ttl, (long) time(NULL));
	mcd_rc rc = build_key(client, key, call.key, &call.key_len);

	if (rc != MEMCACHED_SUCCESS || (rc = call_begin(client, client->pool, &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	return call_end(client, &call, memcached_touch(call.memc, call.key, call.key_len, expiry));
}

/* A counter step without waiting: "add 0" creates a missing counter (and is refused
 * unseen when it exists), then incr/decr moves it. Both ride one noreply connection. */
static mcd_rc send_counter_step(struct mcd_client *client, const char *key, int64_t delta, long ttl)
{
	struct call call;
	time_t expiry = (time_t) mcd_wire_expiry(ttl, (long) time(NULL));
	uint64_t ignored;
	mcd_rc rc = counter_call_begin(client, client->noreply_pool, key, delta, &call);

	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	rc = memcached_add(call.memc, call.key, call.key_len, "0", 1, expiry, 0);
	if (rc == MEMCACHED_SUCCESS && delta) {
		uint32_t step = (uint32_t) (delta < 0 ? -delta : delta);

		rc = delta < 0 ? memcached_decrement(call.memc, call.key, call.key_len, step, &ignored)
			: memcached_increment(call.memc, call.key, call.key_len, step, &ignored);
	}
	return call_end(client, &call, rc);
}

/* mget's work: the wire keys (key i at keys + i * (MCD_KEY_MAX + 1)), the item each
 * was built for and the server it lives on. */
struct mget_call {
	char *keys;
	const char *wire[MCD_MGET_MAX];
	size_t wire_len[MCD_MGET_MAX];
	size_t item_of[MCD_MGET_MAX];
	uint32_t server_of[MCD_MGET_MAX];
	size_t sent;
};

/* Give each item whose wire key is key the value, unless it already has one. */
static mcd_rc give_value(struct mcd_mget_item *items, struct mget_call *m, const char *key,
	size_t key_len, const char *value, size_t value_len)
{
	for (size_t w = 0; w < m->sent; w++) {
		struct mcd_mget_item *item = &items[m->item_of[w]];

		if (item->value || m->wire_len[w] != key_len || memcmp(m->wire[w], key, key_len)) {
			continue;
		}
		if (!(item->value = malloc(value_len + 1))) {
			return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
		}
		if (value_len) {
			memcpy(item->value, value, value_len);
		}
		item->value[value_len] = '\0';
		item->value_len = value_len;
		item->rc = MEMCACHED_SUCCESS;
	}
	return MEMCACHED_SUCCESS;
}

/*
 * Read the keys of one server with one request. memcached_mget over several servers
 * would be one round trip in all, but it reads a server it cannot reach as having none
 * of the keys; asking each server on its own tells a miss from a failure.
 */
static mcd_rc get_from_server(memcached_st *memc, struct mcd_mget_item *items, struct mget_call *m,
	uint32_t server)
{
	const char *keys[MCD_MGET_MAX];
	size_t lens[MCD_MGET_MAX], n = 0;
	memcached_result_st result;
	memcached_return_t end;
	mcd_rc rc = MEMCACHED_SUCCESS;

	for (size_t w = 0; w < m->sent; w++) {
		if (m->server_of[w] == server) {
			keys[n] = m->wire[w];
			lens[n++] = m->wire_len[w];
		}
	}
	/* by_key with the group's first key: every key goes to the server they share. */
	end = memcached_mget_by_key(memc, keys[0], lens[0], keys, lens, n);
	/* On our own (not allocated) result: libmemcached frees an allocated one itself
	 * when the fetch ends. */
	if (memcached_success(end) && !memcached_result_create(memc, &result)) {
		end = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	} else if (memcached_success(end)) {
		while (memcached_fetch_result(memc, &result, &end)) {
			if (rc == MEMCACHED_SUCCESS) {
				rc = give_value(items, m, memcached_result_key_value(&result),
					memcached_result_key_length(&result), memcached_result_value(&result),
					memcached_result_length(&result));
			}
		}
		memcached_result_free(&result);
		/* The fetch ends with END, or NOTFOUND when none of the keys was there. */
		if (end == MEMCACHED_END || end == MEMCACHED_NOTFOUND) {
			end = rc;
		}
	}
	for (size_t w = 0; w < m->sent; w++) {
		if (m->server_of[w] == server && !items[m->item_of[w]].value && end != MEMCACHED_SUCCESS) {
			items[m->item_of[w]].rc = end;
		}
	}
	return end;
}

static mcd_rc get_many(struct mcd_client *client, struct mcd_mget_item *items, size_t count)
{
	struct mget_call m = { .sent = 0 };
	memcached_st *memc = NULL;
	mcd_rc rc = MEMCACHED_SUCCESS;

	if (!count || count > MCD_MGET_MAX) {
		return MCD_ARGUMENT_NEEDED;
	}
	/* Every item has a result and no value before anything can fail. */
	for (size_t i = 0; i < count; i++) {
		items[i].rc = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
		items[i].value = NULL;
		items[i].value_len = 0;
	}
	if (!(m.keys = malloc(count * (MCD_KEY_MAX + 1)))) {
		return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	}
	for (size_t i = 0; i < count; i++) {
		char *key = m.keys + i * (MCD_KEY_MAX + 1);
		size_t key_len;

		if ((items[i].rc = build_key(client, items[i].key, key, &key_len)) != MEMCACHED_SUCCESS) {
			continue;
		}
		items[i].rc = MEMCACHED_NOTFOUND;
		m.wire[m.sent] = key;
		m.wire_len[m.sent] = key_len;
		m.item_of[m.sent++] = i;
	}
	if (m.sent && !(memc = take_connection(client, client->pool, &rc))) {
		for (size_t w = 0; w < m.sent; w++) {
			items[m.item_of[w]].rc = rc;
		}
	}
	for (size_t w = 0; memc && w < m.sent; w++) {
		m.server_of[w] = memcached_generate_hash(memc, m.wire[w], m.wire_len[w]);
	}
	/* Each server once, in the order its first key came; a resting one is not asked. */
	for (size_t w = 0; memc && w < m.sent; w++) {
		uint32_t server = m.server_of[w];
		bool first = true;

		for (size_t earlier = 0; earlier < w; earlier++) {
			first = first && m.server_of[earlier] != server;
		}
		if (!first) {
			continue;
		}
		if (tracks_health(client) && server_resting(client, server)) {
			for (size_t k = w; k < m.sent; k++) {
				if (m.server_of[k] == server) {
					items[m.item_of[k]].rc = MEMCACHED_SERVER_TEMPORARILY_DISABLED;
				}
			}
			continue;
		}
		rc = get_from_server(memc, items, &m, server);
		if (tracks_health(client)) {
			note_server(client, server, rc);
		}
	}
	if (memc) {
		memcached_pool_release(client->pool, memc);
	}
	free(m.keys);
	/* The first failure, else NOTFOUND for any miss, else success. */
	rc = MEMCACHED_SUCCESS;
	for (size_t i = 0; i < count; i++) {
		if (items[i].rc != MEMCACHED_SUCCESS && (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND)) {
			rc = items[i].rc;
		}
	}
	return rc;
}

/* --- the public operations: each one timed and counted --- */

static unsigned long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long) ts.tv_sec * 1000000UL + (unsigned long) ts.tv_nsec / 1000UL;
}

/* The operation each store mode is counted as. */
static const enum mcd_op store_ops[] = {
	[MCD_STORE_SET] = MCD_OP_SET, [MCD_STORE_ADD] = MCD_OP_ADD,
	[MCD_STORE_REPLACE] = MCD_OP_REPLACE, [MCD_STORE_APPEND] = MCD_OP_APPEND,
	[MCD_STORE_PREPEND] = MCD_OP_PREPEND,
};

static mcd_rc counted(struct mcd_client *client, enum mcd_op op, unsigned long started, mcd_rc rc)
{
	struct mcd_op_stats *stats;
	unsigned long took, worst;

	if (!client->stats) {
		return rc;
	}
	stats = &client->stats->ops[op];
	took = now_us() - started;
	atomic_fetch_add(&stats->calls, 1);
	atomic_fetch_add(&stats->by_result[mcd_result_slot(rc)], 1);
	atomic_fetch_add(&stats->total_us, took);
	worst = atomic_load(&stats->worst_us);
	while (took > worst && !atomic_compare_exchange_weak(&stats->worst_us, &worst, took)) {
	}
	return rc;
}

mcd_rc mcd_get(struct mcd_client *client, const char *key, char **value, size_t *value_len)
{
	unsigned long started = now_us();

	return counted(client, MCD_OP_GET, started, get_value(client, key, value, value_len));
}

mcd_rc mcd_store(struct mcd_client *client, enum mcd_store_mode mode, const char *key,
	const char *value, size_t value_len, long ttl)
{
	unsigned long started = now_us();

	return counted(client, store_ops[mode], started,
		store_value(client, client->pool, mode, key, value, value_len, ttl));
}

mcd_rc mcd_delete(struct mcd_client *client, const char *key)
{
	unsigned long started = now_us();

	return counted(client, MCD_OP_DELETE, started, delete_key(client, client->pool, key));
}

mcd_rc mcd_counter_set(struct mcd_client *client, const char *key, uint64_t value, long ttl)
{
	char text[24];
	int len = snprintf(text, sizeof(text), "%llu", (unsigned long long) value);
	unsigned long started = now_us();

	return counted(client, MCD_OP_COUNTER, started,
		store_value(client, client->pool, MCD_STORE_SET, key, text, (size_t) len, ttl));
}

mcd_rc mcd_counter_add(struct mcd_client *client, const char *key, int64_t delta, long ttl,
	uint64_t *result)
{
	unsigned long started = now_us();

	return counted(client, MCD_OP_COUNTER, started, add_to_counter(client, key, delta, ttl, result));
}

mcd_rc mcd_mget(struct mcd_client *client, struct mcd_mget_item *items, size_t count)
{
	unsigned long started = now_us();

	return counted(client, MCD_OP_MGET, started, get_many(client, items, count));
}

bool mcd_client_has_noreply(const struct mcd_client *client)
{
	return client->noreply_pool != NULL;
}

/* What a noreply write returns: MCD_SENT once the request is written. */
static mcd_rc sent(mcd_rc rc)
{
	return rc == MEMCACHED_SUCCESS ? MCD_SENT : rc;
}

mcd_rc mcd_store_noreply(struct mcd_client *client, enum mcd_store_mode mode, const char *key,
	const char *value, size_t value_len, long ttl)
{
	if (!client->noreply_pool) {
		return mcd_store(client, mode, key, value, value_len, ttl);
	}
	unsigned long started = now_us();

	return counted(client, store_ops[mode], started,
		sent(store_value(client, client->noreply_pool, mode, key, value, value_len, ttl)));
}

mcd_rc mcd_delete_noreply(struct mcd_client *client, const char *key)
{
	if (!client->noreply_pool) {
		return mcd_delete(client, key);
	}
	unsigned long started = now_us();

	return counted(client, MCD_OP_DELETE, started, sent(delete_key(client, client->noreply_pool, key)));
}

mcd_rc mcd_counter_add_noreply(struct mcd_client *client, const char *key, int64_t delta, long ttl)
{
	uint64_t ignored;

	if (!client->noreply_pool) {
		return mcd_counter_add(client, key, delta, ttl, &ignored);
	}
	unsigned long started = now_us();

	return counted(client, MCD_OP_COUNTER, started, sent(send_counter_step(client, key, delta, ttl)));
}

mcd_rc mcd_touch(struct mcd_client *client, const char *key, long ttl)
{
	unsigned long started = now_us();

	return counted(client, MCD_OP_TOUCH, started, touch_key(client, key, ttl));
}

mcd_rc mcd_flush(struct mcd_client *client)
{
	mcd_rc rc = MEMCACHED_SUCCESS;
	memcached_st *memc = take_connection(client, client->pool, &rc);

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
	memcached_return_t stat_rc;
	memcached_stat_st *stats = NULL;
	memcached_st *memc = take_connection(client, client->pool, &rc);

	if (memc) {
		stats = memcached_stat(memc, NULL, &stat_rc);
	}
	for (unsigned int i = 0; i < s->server_count && i < max; i++) {
		struct mcd_server_report *r = &reports[i];

		memset(r, 0, sizeof(*r));
		mcd_server_address(&s->servers[i], r->address);
		r->resting = atomic_load(&client->health[i].resting_until) > now_monotonic();
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
