/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * mget: many keys read with one request per server that holds any of them.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdlib.h>
#include <string.h>

#include "client_private.h"

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

/* Where one server's answer goes: the items, and the wire keys they were sent as. */
struct mget_answer {
	struct mcd_mget_item *items;
	const struct mget_call *m;
};

/* Give each item whose wire key is the result's its value, unless it already has one. */
static mcd_rc give_value(const memcached_result_st *result, void *arg)
{
	const struct mget_answer *a = arg;
	const char *key = memcached_result_key_value(result), *value = memcached_result_value(result);
	size_t key_len = memcached_result_key_length(result), value_len = memcached_result_length(result);

	for (size_t w = 0; w < a->m->sent; w++) {
		struct mcd_mget_item *item = &a->items[a->m->item_of[w]];

		if (item->value || a->m->wire_len[w] != key_len || memcmp(a->m->wire[w], key, key_len)) {
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
	struct mget_answer answer = { .items = items, .m = m };
	mcd_rc end;

	for (size_t w = 0; w < m->sent; w++) {
		if (m->server_of[w] == server) {
			keys[n] = m->wire[w];
			lens[n++] = m->wire_len[w];
		}
	}
	/* by_key with the group's first key: every key goes to the server they share. */
	end = mcd_mget_each(memc, keys[0], lens[0], keys, lens, n, give_value, &answer);
	for (size_t w = 0; w < m->sent; w++) {
		if (m->server_of[w] == server && !items[m->item_of[w]].value && end != MEMCACHED_SUCCESS) {
			items[m->item_of[w]].rc = end;
		}
	}
	return end;
}

/* Servers are asked one after the other, within one timeout for them all: a server asked
 * gets what is left of it as its own, and one asked after it is spent is not asked (its items
 * time out). False then. */
static bool ask_in_time(struct mcd_client *client, memcached_st *memc, struct mcd_mget_item *items,
	const struct mget_call *m, uint32_t server, uint64_t deadline, bool *whole)
{
	const uint64_t now = mcd_now_us();
	const uint64_t left_ms = now < deadline ? (deadline - now + 999) / 1000 : 0;

	for (size_t w = 0; w < m->sent; w++) {
		if (m->server_of[w] == server && !items[m->item_of[w]].value) {
			items[m->item_of[w]].rc = left_ms ? MEMCACHED_NOTFOUND : MEMCACHED_TIMEOUT;
		}
	}
	if (!left_ms) {
		return false;
	}
	*whole = left_ms >= (uint64_t) client->settings.timeout_ms;
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
		*whole ? (uint64_t) client->settings.timeout_ms : left_ms);
	return true;
}

static mcd_rc get_many(struct mcd_client *client, struct mcd_mget_item *items, size_t count)
{
	struct mget_call m = { .sent = 0 };
	memcached_st *memc = NULL;
	mcd_rc rc = MEMCACHED_SUCCESS;
	uint64_t deadline;

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

		if ((items[i].rc = mcd_client_key(client, items[i].key, key, &key_len)) != MEMCACHED_SUCCESS) {
			continue;
		}
		items[i].rc = MEMCACHED_NOTFOUND;
		m.wire[m.sent] = key;
		m.wire_len[m.sent] = key_len;
		m.item_of[m.sent++] = i;
	}
	deadline = mcd_now_us() + (uint64_t) client->settings.timeout_ms * 1000U;
	if (m.sent && !(memc = mcd_take_connection(client, &client->main, &rc))) {
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
		bool first = true, whole = true;

		for (size_t earlier = 0; earlier < w; earlier++) {
			first = first && m.server_of[earlier] != server;
		}
		if (!first) {
			continue;
		}
		if (mcd_tracks_health(client) && mcd_server_resting(client, server)) {
			for (size_t k = w; k < m.sent; k++) {
				if (m.server_of[k] == server) {
					items[m.item_of[k]].rc = MEMCACHED_SERVER_TEMPORARILY_DISABLED;
				}
			}
			continue;
		}
		if (!ask_in_time(client, memc, items, &m, server, deadline, &whole)) {
			continue;
		}
		rc = get_from_server(memc, items, &m, server);
		if (mcd_connection_lost(client, memc, server, rc)
			&& ask_in_time(client, memc, items, &m, server, deadline, &whole)) {
			/* A read changes nothing: once more, on a fresh connection. */
			rc = get_from_server(memc, items, &m, server);
		}
		/* A timeout in a wait the servers before cut short says nothing of this one. */
		if (mcd_tracks_health(client) && (whole || rc != MEMCACHED_TIMEOUT)) {
			mcd_note_server(client, server, rc);
		}
	}
	if (memc) {
		memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, (uint64_t) client->settings.timeout_ms);
		mcd_give_back(&client->main, memc);
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

mcd_rc mcd_mget(struct mcd_client *client, struct mcd_mget_item *items, size_t count)
{
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_MGET, started, get_many(client, items, count));
}
