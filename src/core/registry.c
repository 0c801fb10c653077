/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * registry: the cluster's incarnations and what each uses, all on the server
 * of the key "nodes": the list itself ("NODE/INC" words, "NODE/INC!BY" while
 * incarnation BY retires it), each incarnation's heartbeat hb:INC, the index
 * of its groups in shards ix:INC:N, and retired:INC once it is retired. Here
 * a dead incarnation is claimed (compare-and-swap of the list: one survivor
 * wins) and retired: each of its counts is swapped to a tombstone, then taken
 * from its group's counter, so no count is taken twice.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_private.h"
#include "util.h"

mcd_rc mcd_registry_call(struct mcd_client *client, const char *name, struct mcd_call *call,
	char key[MCD_KEY_MAX + 1], size_t *key_len)
{
	mcd_rc rc = mcd_client_own_key(client, "nodes", call->key, &call->key_len);

	if (rc == MEMCACHED_SUCCESS) {
		rc = mcd_client_own_key(client, name, key, key_len);
	}
	return rc == MEMCACHED_SUCCESS ? mcd_call_begin(client, &client->main, call) : rc;
}

/* Append words (" a b") to the value named name, making it where there is none. */
mcd_rc mcd_registry_append(struct mcd_client *client, const char *name, const char *words)
{
	struct mcd_call call;
	char key[MCD_KEY_MAX + 1];
	size_t key_len, len = strlen(words);
	mcd_rc rc = mcd_registry_call(client, name, &call, key, &key_len);

	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	rc = memcached_append_by_key(call.memc, call.key, call.key_len, key, key_len, words, len, 0, 0);
	if (rc == MEMCACHED_NOTSTORED) {
		rc = memcached_add_by_key(call.memc, call.key, call.key_len, key, key_len, words, len, 0, 0);
		/* Made meanwhile by another: append to it. */
		if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) {
			rc = memcached_append_by_key(call.memc, call.key, call.key_len, key, key_len, words, len, 0, 0);
		}
	}
	return mcd_call_end(client, &call, rc);
}

/* Read the value named name into buf (MCD_REGISTRY_MAX) with its version: NOTFOUND when missing. */
mcd_rc mcd_registry_get(struct mcd_client *client, const char *name, char *buf, uint64_t *cas)
{
	struct mcd_call call;
	char key[MCD_KEY_MAX + 1];
	size_t key_len, len = 0;
	mcd_rc rc = mcd_registry_call(client, name, &call, key, &key_len);

	buf[0] = '\0';
	*cas = 0;
	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	rc = mcd_gets(call.memc, call.key, call.key_len, key, key_len, buf, MCD_REGISTRY_MAX, &len, cas);
	return mcd_call_end(client, &call, rc == MEMCACHED_SUCCESS && len >= MCD_REGISTRY_MAX ? MEMCACHED_E2BIG : rc);
}

/* Write value as name's, unless it changed since version cas (0: as it is; ttl for set). */
mcd_rc mcd_registry_put(struct mcd_client *client, const char *name, const char *value, uint64_t cas,
	time_t ttl)
{
	struct mcd_call call;
	char key[MCD_KEY_MAX + 1];
	size_t key_len;
	mcd_rc rc = mcd_registry_call(client, name, &call, key, &key_len);

	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	rc = cas ? memcached_cas_by_key(call.memc, call.key, call.key_len, key, key_len, value, strlen(value), 0, 0, cas)
		: memcached_set_by_key(call.memc, call.key, call.key_len, key, key_len, value, strlen(value), ttl, 0);
	return mcd_call_end(client, &call, rc);
}

mcd_rc mcd_registry_delete(struct mcd_client *client, const char *name)
{
	struct mcd_call call;
	char key[MCD_KEY_MAX + 1];
	size_t key_len;
	mcd_rc rc = mcd_registry_call(client, name, &call, key, &key_len);

	if (rc == MEMCACHED_SUCCESS) {
		rc = mcd_call_end(client, &call, memcached_delete_by_key(call.memc, call.key, call.key_len, key, key_len, 0));
	}
	return rc;
}

struct inc_list {
	char *out;
	size_t used;
};

bool mcd_registry_word_inc(const char *word, char inc[MCD_INC_LEN + 1])
{
	const size_t len = strlen(word), id = MCD_INC_LEN + 1;
	const size_t head = len > 2 * id && word[len - id] == '!' && word[len - 2 * id] == '/' ? len - id : len;

	if (head <= id || word[head - id] != '/') {
		return false;
	}
	snprintf(inc, MCD_INC_LEN + 1, "%.*s", MCD_INC_LEN, word + head - MCD_INC_LEN);
	return true;
}

/* The id of one list entry, appended to the list unless it is there already. */
static void add_inc(const char *word, void *arg)
{
	struct inc_list *l = arg;
	char inc[MCD_INC_LEN + 1];

	if (mcd_registry_word_inc(word, inc) && !mcd_listed(l->out, inc)) {
		l->used += (size_t) sprintf(l->out + l->used, " %s", inc);
	}
}

char *mcd_registry_incarnations(struct mcd_client *client)
{
	char *list = malloc(MCD_REGISTRY_MAX);
	struct inc_list l = { .out = malloc(MCD_REGISTRY_MAX) };
	uint64_t cas;
	mcd_rc rc = list && l.out ? mcd_registry_get(client, "nodes", list, &cas) : MEMCACHED_MEMORY_ALLOCATION_FAILURE;

	if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND) {
		/* Every entry's id is shorter than the entry itself: the ids fit. */
		l.out[0] = '\0';
		mcd_each_word(rc == MEMCACHED_SUCCESS ? list : "", add_inc, &l);
	} else {
		free(l.out);
		l.out = NULL;
	}
	free(list);
	return l.out;
}

/* --- an incarnation's index of groups --- */

mcd_rc mcd_index_add(struct mcd_client *client, const char *inc, const char *category, const char *group)
{
	char name[64], words[2 * MCD_NAME_MAX + 4];

	snprintf(words, sizeof(words), " %s:%s", category, group);
	snprintf(name, sizeof(name), "ix:%s:%u", inc, mcd_group_hash(category, group) % MCD_INDEX_SHARDS);
	return mcd_registry_append(client, name, words);
}

struct index_walk {
	void (*visit)(const char *category, const char *group, void *arg);
	void *arg;
	char *list;
};

static void walk_incarnation(struct mcd_client *client, const char *inc, struct index_walk *w)
{
	for (unsigned int shard = 0; shard < MCD_INDEX_SHARDS; shard++) {
		char name[64];
		uint64_t cas;

		snprintf(name, sizeof(name), "ix:%s:%u", inc, shard);
		if (mcd_registry_get(client, name, w->list, &cas) == MEMCACHED_SUCCESS) {
			mcd_each_listed(w->list, w->visit, w->arg);
		}
	}
}

mcd_rc mcd_index_each(struct mcd_client *client, const char *incarnations,
	void (*visit)(const char *category, const char *group, void *arg), void *arg)
{
	struct index_walk w = { .visit = visit, .arg = arg, .list = malloc(MCD_REGISTRY_MAX) };
	char inc[MCD_INC_LEN + 1];

	if (!w.list) {
		return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	}
	for (const char *p = incarnations; *p; ) {
		size_t len;

		p += strspn(p, " ");
		if ((len = strcspn(p, " ")) == MCD_INC_LEN) {
			memcpy(inc, p, MCD_INC_LEN);
			inc[MCD_INC_LEN] = '\0';
			walk_incarnation(client, inc, &w);
		}
		p += len;
	}
	free(w.list);
	return MEMCACHED_SUCCESS;
}
