/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * mcd_client: pool, key building and the memcached operations.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <netdb.h>
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
	&& (int) MCD_NO_SERVERS == (int) MEMCACHED_NO_SERVERS, "mcd_client.h mirrors libmemcached's numbers");

/* memcached takes an expiry above 30 days as an absolute Unix time. */
#define RELATIVE_EXPIRY_MAX (60L * 60 * 24 * 30)

struct mcd_client {
	struct mcd_settings settings;
	memcached_st *master;        /* template the pool clones; never used for I/O itself */
	memcached_pool_st *pool;
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
	}
	return "MEMCACHED_UNKNOWN_RESULT";
}

#undef NAME

bool mcd_rc_is_answer(mcd_rc rc)
{
	return rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND || rc == MEMCACHED_NOTSTORED
		|| rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_STORED || rc == MEMCACHED_DELETED;
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
		{ MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, s->remove_failed_servers, "remove_failed_servers" },
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

struct mcd_client *mcd_client_create(const struct mcd_settings *settings, char *err, size_t errlen)
{
	struct mcd_client *client = calloc(1, sizeof(*client));

	if (!client) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	client->settings = *settings;
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
	size_t key_len = key ? strlen(key) : 0;

	if (key_len == 0) {
		return MCD_ARGUMENT_NEEDED;
	}
	if (client->prefix_len + key_len > MCD_KEY_MAX) {
		return MCD_KEY_TOO_LONG;
	}
	/* A space or CR/LF in a text-protocol key would end the command early. */
	if (!mcd_key_bytes_valid(key, key_len)) {
		return MEMCACHED_BAD_KEY_PROVIDED;
	}
	memcpy(out, client->settings.prefix, client->prefix_len);
	memcpy(out + client->prefix_len, key, key_len + 1);
	*out_len = client->prefix_len + key_len;
	return MEMCACHED_SUCCESS;
}

static memcached_st *take_connection(struct mcd_client *client, mcd_rc *rc)
{
	struct timespec wait = { .tv_sec = client->settings.pool_wait_s };
	memcached_return_t fetch_rc = MEMCACHED_SUCCESS;
	memcached_st *memc = memcached_pool_fetch(client->pool, &wait, &fetch_rc);

	if (!memc) {
		/* Every connection is busy: a wait that ran out reads as a timeout. With no
		 * wait the pool says NOTFOUND, which would look like a missing key. */
		*rc = (fetch_rc == MEMCACHED_SUCCESS) ? MEMCACHED_MEMORY_ALLOCATION_FAILURE
			: (fetch_rc == MEMCACHED_NOTFOUND ? MEMCACHED_TIMEOUT : (mcd_rc) fetch_rc);
	}
	return memc;
}

static void give_back(struct mcd_client *client, memcached_st *memc)
{
	memcached_pool_release(client->pool, memc);
}

mcd_rc mcd_get(struct mcd_client *client, const char *key, char **value, size_t *value_len)
{
	char full_key[MCD_KEY_MAX + 1];
	size_t key_len;
	uint32_t flags;
	memcached_return_t mrc;
	memcached_st *memc;
	mcd_rc rc = build_key(client, key, full_key, &key_len);

	*value = NULL;
	*value_len = 0;
	if (rc != MEMCACHED_SUCCESS || !(memc = take_connection(client, &rc))) {
		return rc;
	}
	*value = memcached_get(memc, full_key, key_len, value_len, &flags, &mrc);
	give_back(client, memc);
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

mcd_rc mcd_store(struct mcd_client *client, enum mcd_store_mode mode, const char *key,
	const char *value, size_t value_len, long ttl)
{
	char full_key[MCD_KEY_MAX + 1];
	size_t key_len;
	memcached_st *memc;
	time_t expiry = (time_t) mcd_wire_expiry(ttl, (long) time(NULL));
	mcd_rc rc = build_key(client, key, full_key, &key_len);

	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	if (!value) {
		return MCD_ARGUMENT_NEEDED;
	}
	if (value_len > (size_t) client->settings.max_value_length) {
		return MCD_VALUE_TOO_LONG;
	}
	if (!(memc = take_connection(client, &rc))) {
		return rc;
	}
	switch (mode) {
	case MCD_STORE_SET:
		rc = memcached_set(memc, full_key, key_len, value, value_len, expiry, 0);
		break;
	case MCD_STORE_ADD:
		rc = memcached_add(memc, full_key, key_len, value, value_len, expiry, 0);
		break;
	case MCD_STORE_REPLACE:
		rc = memcached_replace(memc, full_key, key_len, value, value_len, expiry, 0);
		break;
	case MCD_STORE_APPEND:
		rc = memcached_append(memc, full_key, key_len, value, value_len, expiry, 0);
		break;
	case MCD_STORE_PREPEND:
		rc = memcached_prepend(memc, full_key, key_len, value, value_len, expiry, 0);
		break;
	}
	give_back(client, memc);
	return rc;
}

mcd_rc mcd_delete(struct mcd_client *client, const char *key)
{
	char full_key[MCD_KEY_MAX + 1];
	size_t key_len;
	memcached_st *memc;
	mcd_rc rc = build_key(client, key, full_key, &key_len);

	if (rc != MEMCACHED_SUCCESS || !(memc = take_connection(client, &rc))) {
		return rc;
	}
	rc = memcached_delete(memc, full_key, key_len, 0);
	give_back(client, memc);
	return rc;
}

mcd_rc mcd_counter_set(struct mcd_client *client, const char *key, uint64_t value, long ttl)
{
	char text[24];
	int len = snprintf(text, sizeof(text), "%llu", (unsigned long long) value);

	return mcd_store(client, MCD_STORE_SET, key, text, (size_t) len, ttl);
}

mcd_rc mcd_counter_add(struct mcd_client *client, const char *key, int64_t delta, long ttl,
	uint64_t *result)
{
	char full_key[MCD_KEY_MAX + 1];
	size_t key_len;
	memcached_st *memc;
	time_t expiry = (time_t) mcd_wire_expiry(ttl, (long) time(NULL));
	uint32_t step;
	mcd_rc rc = build_key(client, key, full_key, &key_len);

	*result = 0;
	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	if (delta > MCD_INCREMENT_MAX || delta < -MCD_INCREMENT_MAX) {
		return MCD_BAD_INCREMENT;
	}
	step = (uint32_t) (delta < 0 ? -delta : delta);
	if (!(memc = take_connection(client, &rc))) {
		return rc;
	}
	/* incr/decr are atomic on the server but cannot create a counter (not in the text
	 * protocol), so a miss is answered with add; if another client's add wins that
	 * race, our incr is simply tried again on the counter it made. */
	for (int attempt = 0; attempt < 3; attempt++) {
		char initial[24];
		int initial_len;

		rc = delta < 0 ? memcached_decrement(memc, full_key, key_len, step, result)
			: memcached_increment(memc, full_key, key_len, step, result);
		if (rc != MEMCACHED_NOTFOUND || delta == 0) {
			break;
		}
		*result = delta > 0 ? (uint64_t) delta : 0;
		initial_len = snprintf(initial, sizeof(initial), "%llu", (unsigned long long) *result);
		rc = memcached_add(memc, full_key, key_len, initial, (size_t) initial_len, expiry, 0);
		if (rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS) {
			break;
		}
	}
	give_back(client, memc);
	if (rc != MEMCACHED_SUCCESS) {
		*result = 0;
	}
	return rc;
}
