/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * operations: the single-key operations, each timed and counted.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_private.h"
#include "util.h"

int64_t mcd_wire_expiry(int64_t ttl, int64_t now)
{
	return ttl > MCD_RELATIVE_EXPIRY_MAX ? now + ttl : ttl;
}

mcd_rc mcd_call_begin(struct mcd_client *client, struct mcd_pool *pool, struct mcd_call *call)
{
	mcd_rc rc = MEMCACHED_SUCCESS;

	call->pool = pool;
	if (!(call->memc = mcd_take_connection(client, pool, &rc))) {
		return rc;
	}
	call->server = MCD_NO_SERVER;
	if (mcd_tracks_health(client)) {
		call->server = memcached_generate_hash(call->memc, call->key, call->key_len);
		if (mcd_server_resting(client, call->server)) {
			mcd_give_back(pool, call->memc);
			return MEMCACHED_SERVER_TEMPORARILY_DISABLED;
		}
	}
	return MEMCACHED_SUCCESS;
}

mcd_rc mcd_call_end(struct mcd_client *client, struct mcd_call *call, mcd_rc rc)
{
	mcd_give_back(call->pool, call->memc);
	/* A write sent without waiting heard nothing back: only its failure says something. */
	if (call->pool != &client->noreply || rc != MEMCACHED_SUCCESS) {
		mcd_note_server(client, call->server, rc);
	}
	return rc;
}

mcd_rc mcd_mget_each(memcached_st *memc, const char *master, size_t master_len, const char *const *keys,
	const size_t *lens, size_t count, mcd_rc (*take)(const memcached_result_st *result, void *arg), void *arg)
{
	memcached_result_st result;
	memcached_return_t end = MEMCACHED_END;
	mcd_rc rc = memcached_mget_by_key(memc, master, master_len, keys, lens, count);

	if (!memcached_success(rc)) {
		return rc;
	}
	/* On a result of our own: libmemcached frees an allocated one itself when the fetch ends. */
	if (!memcached_result_create(memc, &result)) {
		return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	}
	rc = MEMCACHED_SUCCESS;
	while (memcached_fetch_result(memc, &result, &end)) {
		if (rc == MEMCACHED_SUCCESS) {
			rc = take(&result, arg);
		}
	}
	memcached_result_free(&result);
	/* The fetch ends with END, or NOTFOUND when none of the keys was there. */
	return end == MEMCACHED_END || end == MEMCACHED_NOTFOUND ? rc : (mcd_rc) end;
}

struct version {
	char *buf;
	size_t size;
	size_t *len;
	uint64_t *cas;
	bool found;
};

static mcd_rc take_version(const memcached_result_st *result, void *arg)
{
	struct version *v = arg;

	*v->len = memcached_result_length(result);
	snprintf(v->buf, v->size, "%.*s", (int) (*v->len < v->size ? *v->len : v->size - 1),
		memcached_result_value(result));
	*v->cas = memcached_result_cas(result);
	v->found = true;
	return MEMCACHED_SUCCESS;
}

mcd_rc mcd_gets(memcached_st *memc, const char *master, size_t master_len, const char *key, size_t key_len,
	char *buf, size_t size, size_t *len, uint64_t *cas)
{
	struct version v = { .buf = buf, .size = size, .len = len, .cas = cas };
	mcd_rc rc;

	buf[0] = '\0';
	*len = 0;
	*cas = 0;
	rc = mcd_mget_each(memc, master, master_len, &key, &key_len, 1, take_version, &v);
	return rc == MEMCACHED_SUCCESS && !v.found ? MEMCACHED_NOTFOUND : rc;
}

mcd_rc mcd_counter_step(memcached_st *memc, const char *master, size_t master_len, const char *key,
	size_t key_len, int64_t delta, time_t expiry, uint64_t *result)
{
	/* In range: callers refuse anything beyond MCD_INCREMENT_MAX. */
	const uint32_t step = (uint32_t) (delta < 0 ? -delta : delta);
	mcd_rc rc = MEMCACHED_SUCCESS;

	/* incr/decr are atomic on the server but cannot create a counter (not in the text
	 * protocol), so a miss is answered with add; if another client's add wins that
	 * race, our incr is simply tried again on the counter it made. */
	for (int attempt = 0; attempt < 3; attempt++) {
		char initial[24];
		int initial_len;

		rc = delta < 0 ? memcached_decrement_by_key(memc, master, master_len, key, key_len, step, result)
			: memcached_increment_by_key(memc, master, master_len, key, key_len, step, result);
		if (rc != MEMCACHED_NOTFOUND || delta == 0) {
			break;
		}
		*result = delta > 0 ? (uint64_t) delta : 0;
		initial_len = snprintf(initial, sizeof(initial), "%llu", (unsigned long long) *result);
		rc = memcached_add_by_key(memc, master, master_len, key, key_len, initial, (size_t) initial_len,
			expiry, 0);
		if (rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS) {
			break;
		}
	}
	if (rc != MEMCACHED_SUCCESS) {
		*result = 0;
	}
	return rc;
}

static mcd_rc get_value(struct mcd_client *client, const char *key, char **value, size_t *value_len)
{
	struct mcd_call call;
	uint32_t flags;
	memcached_return_t mrc;
	mcd_rc rc = mcd_client_key(client, key, call.key, &call.key_len);

	*value = NULL;
	*value_len = 0;
	if (rc != MEMCACHED_SUCCESS || (rc = mcd_call_begin(client, &client->main, &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	*value = memcached_get(call.memc, call.key, call.key_len, value_len, &flags, &mrc);
	if (mrc != MEMCACHED_SUCCESS && mcd_connection_lost(client, call.memc, call.server, mrc)) {
		/* A read changes nothing: once more, on a fresh connection. */
		free(*value);
		*value = memcached_get(call.memc, call.key, call.key_len, value_len, &flags, &mrc);
	}
	mcd_call_end(client, &call, mrc);
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

/* The text protocol answers NOT_STORED where the binary one tells why: the same outcome
 * gets the same name whichever protocol carried it. Only add can find the key there;
 * replace, append and prepend need it. */
static mcd_rc same_in_both_protocols(enum mcd_store_mode mode, mcd_rc rc)
{
	if (rc != MEMCACHED_NOTSTORED || mode == MCD_STORE_SET) {
		return rc;
	}
	return mode == MCD_STORE_ADD ? MEMCACHED_DATA_EXISTS : MEMCACHED_NOTFOUND;
}

static mcd_rc store_value(struct mcd_client *client, struct mcd_pool *pool,
	enum mcd_store_mode mode, const char *key, const char *value, size_t value_len, long ttl)
{
	struct mcd_call call;
	time_t expiry = (time_t) mcd_wire_expiry(ttl, (int64_t) time(NULL));
	mcd_rc rc = mcd_client_key(client, key, call.key, &call.key_len);

	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	if (!value) {
		return MCD_ARGUMENT_NEEDED;
	}
	if (value_len > (size_t) client->settings.max_value_length) {
		return MCD_VALUE_TOO_LONG;
	}
	if ((rc = mcd_call_begin(client, pool, &call)) != MEMCACHED_SUCCESS) {
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
	return mcd_call_end(client, &call, same_in_both_protocols(mode, rc));
}

static mcd_rc delete_key(struct mcd_client *client, struct mcd_pool *pool, const char *key)
{
	struct mcd_call call;
	mcd_rc rc = mcd_client_key(client, key, call.key, &call.key_len);

	if (rc != MEMCACHED_SUCCESS || (rc = mcd_call_begin(client, pool, &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	return mcd_call_end(client, &call, memcached_delete(call.memc, call.key, call.key_len, 0));
}

/* mcd_call_begin for a counter step of delta on key: the key and the step checked first. */
static mcd_rc counter_call_begin(struct mcd_client *client, struct mcd_pool *pool, const char *key,
	int64_t delta, struct mcd_call *call)
{
	mcd_rc rc = mcd_client_key(client, key, call->key, &call->key_len);

	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	if (delta > MCD_INCREMENT_MAX || delta < -MCD_INCREMENT_MAX) {
		return MCD_BAD_INCREMENT;
	}
	return mcd_call_begin(client, pool, call);
}

static mcd_rc add_to_counter(struct mcd_client *client, const char *key, int64_t delta, long ttl,
	uint64_t *result)
{
	struct mcd_call call;
	mcd_rc rc = counter_call_begin(client, mcd_counter_pool(client),
		key, delta, &call);

	*result = 0;
	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	rc = mcd_counter_step(call.memc, call.key, call.key_len, call.key, call.key_len, delta,
		(time_t) mcd_wire_expiry(ttl, (int64_t) time(NULL)), result);
	if (delta == 0 && mcd_connection_lost(client, call.memc, call.server, rc)) {
		/* A read (a step of 0 creates nothing): once more, on a fresh connection. */
		rc = mcd_counter_step(call.memc, call.key, call.key_len, call.key, call.key_len, 0, 0, result);
	}
	return mcd_call_end(client, &call, rc);
}

static mcd_rc touch_key(struct mcd_client *client, const char *key, long ttl)
{
	struct mcd_call call;
	time_t expiry = (time_t) mcd_wire_expiry(ttl, (int64_t) time(NULL));
	mcd_rc rc = mcd_client_key(client, key, call.key, &call.key_len);

	if (rc != MEMCACHED_SUCCESS || (rc = mcd_call_begin(client, &client->main, &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	rc = memcached_touch(call.memc, call.key, call.key_len, expiry);
	if (mcd_connection_lost(client, call.memc, call.server, rc)) {
		/* Setting the same expiry twice is setting it once. */
		rc = memcached_touch(call.memc, call.key, call.key_len, expiry);
	}
	return mcd_call_end(client, &call, rc);
}

/* A counter step without waiting: "add 0" creates a missing counter (and is refused
 * unseen when it exists), then incr/decr moves it. Both ride one noreply connection. */
static mcd_rc send_counter_step(struct mcd_client *client, const char *key, int64_t delta, long ttl)
{
	struct mcd_call call;
	time_t expiry = (time_t) mcd_wire_expiry(ttl, (int64_t) time(NULL));
	uint64_t ignored;
	mcd_rc rc = counter_call_begin(client, &client->noreply, key, delta, &call);

	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	rc = memcached_add(call.memc, call.key, call.key_len, "0", 1, expiry, 0);
	if (rc == MEMCACHED_SUCCESS && delta) {
		uint32_t step = (uint32_t) (delta < 0 ? -delta : delta);

		rc = delta < 0 ? memcached_decrement(call.memc, call.key, call.key_len, step, &ignored)
			: memcached_increment(call.memc, call.key, call.key_len, step, &ignored);
	}
	return mcd_call_end(client, &call, rc);
}

/* --- the public operations: each one timed and counted (flush and server reports are not) --- */

/* The operation each store mode is counted as. */
static const enum mcd_op store_ops[] = {
	[MCD_STORE_SET] = MCD_OP_SET, [MCD_STORE_ADD] = MCD_OP_ADD,
	[MCD_STORE_REPLACE] = MCD_OP_REPLACE, [MCD_STORE_APPEND] = MCD_OP_APPEND,
	[MCD_STORE_PREPEND] = MCD_OP_PREPEND,
};


mcd_rc mcd_get(struct mcd_client *client, const char *key, char **value, size_t *value_len)
{
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_GET, started, get_value(client, key, value, value_len));
}

mcd_rc mcd_store(struct mcd_client *client, enum mcd_store_mode mode, const char *key,
	const char *value, size_t value_len, long ttl)
{
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, store_ops[mode], started,
		store_value(client, &client->main, mode, key, value, value_len, ttl));
}

mcd_rc mcd_delete(struct mcd_client *client, const char *key)
{
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_DELETE, started, delete_key(client, &client->main, key));
}

mcd_rc mcd_counter_set(struct mcd_client *client, const char *key, uint64_t value, long ttl)
{
	char text[24];
	int len = snprintf(text, sizeof(text), "%llu", (unsigned long long) value);
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_COUNTER, started,
		store_value(client, &client->main, MCD_STORE_SET, key, text, (size_t) len, ttl));
}

mcd_rc mcd_counter_add(struct mcd_client *client, const char *key, int64_t delta, long ttl,
	uint64_t *result)
{
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_COUNTER, started, add_to_counter(client, key, delta, ttl, result));
}


mcd_rc mcd_store_noreply(struct mcd_client *client, enum mcd_store_mode mode, const char *key,
	const char *value, size_t value_len, long ttl)
{
	if (!client->noreply.pool) {
		return mcd_store(client, mode, key, value, value_len, ttl);
	}
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, store_ops[mode], started,
		mcd_sent(store_value(client, &client->noreply, mode, key, value, value_len, ttl)));
}

mcd_rc mcd_delete_noreply(struct mcd_client *client, const char *key)
{
	if (!client->noreply.pool) {
		return mcd_delete(client, key);
	}
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_DELETE, started,
		mcd_sent(delete_key(client, &client->noreply, key)));
}

mcd_rc mcd_counter_add_noreply(struct mcd_client *client, const char *key, int64_t delta, long ttl)
{
	uint64_t ignored;

	/* A step of 0 is a read, and a read waits for its answer. */
	if (!client->noreply.pool || delta == 0) {
		return mcd_counter_add(client, key, delta, ttl, &ignored);
	}
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_COUNTER, started,
		mcd_sent(send_counter_step(client, key, delta, ttl)));
}

mcd_rc mcd_touch(struct mcd_client *client, const char *key, long ttl)
{
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_TOUCH, started, touch_key(client, key, ttl));
}
