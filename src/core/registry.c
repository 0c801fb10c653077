/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * registry: the cluster's lists that groups.c reconciles from: mcdnodes (the
 * node ids in use) and mcdgroups ("category:group" entries), space-separated,
 * and each node's heartbeat mcdnode:NODE, all on the server of mcdnodes. A
 * node whose heartbeat is gone (no tick for a whole lease) leaves mcdnodes;
 * a group empty everywhere leaves mcdgroups (groups.c says which).
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_private.h"
#include "util.h"

/* Most nodes whose heartbeats one tick reads. */
#define MAX_HEARTBEATS 128

/* Begin a call on the registry's server, with the key of name (a list, or "node:NODE") in
 * key: mcdnodes' key, in call->key, places them all, so that one server holds the registry. */
static mcd_rc registry_call(struct mcd_client *client, const char *name, struct mcd_call *call,
	char key[MCD_KEY_MAX + 1], size_t *key_len)
{
	mcd_rc rc = mcd_client_own_key(client, "nodes", call->key, &call->key_len);

	if (rc == MEMCACHED_SUCCESS) {
		rc = mcd_client_own_key(client, name, key, key_len);
	}
	return rc == MEMCACHED_SUCCESS ? mcd_call_begin(client, &client->main, call) : rc;
}

/* Read the list named name into buf (MCD_REGISTRY_MAX), with its version (0 when missing). A list
 * that does not fit is an error: cut short, it would be written back without its tail. */
static mcd_rc read_list(struct mcd_client *client, const char *name, char *buf, uint64_t *cas)
{
	struct mcd_call call;
	char key[MCD_KEY_MAX + 1];
	size_t key_len, len = 0;
	mcd_rc rc;

	buf[0] = '\0';
	*cas = 0;
	if ((rc = registry_call(client, name, &call, key, &key_len)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	rc = mcd_gets(call.memc, call.key, call.key_len, key, key_len, buf, MCD_REGISTRY_MAX, &len, cas);
	if (rc == MEMCACHED_SUCCESS && len >= MCD_REGISTRY_MAX) {
		rc = MEMCACHED_E2BIG;
	}
	return mcd_call_end(client, &call, rc == MEMCACHED_NOTFOUND ? MEMCACHED_SUCCESS : rc);
}

mcd_rc mcd_registry_read(struct mcd_client *client, struct mcd_registry *r)
{
	mcd_rc rc;

	r->nodes = malloc(MCD_REGISTRY_MAX);
	r->groups = malloc(MCD_REGISTRY_MAX);
	if (!r->nodes || !r->groups) {
		return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	}
	if ((rc = read_list(client, "nodes", r->nodes, &r->nodes_cas)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	return read_list(client, "groups", r->groups, &r->groups_cas);
}

void mcd_registry_free(struct mcd_registry *r)
{
	free(r->nodes);
	free(r->groups);
	r->nodes = r->groups = NULL;
}

/* Append the words (" a b c") to the list named name, making it if there is none. */
static void enlist(struct mcd_client *client, const char *name, const char *words)
{
	struct mcd_call call;
	char key[MCD_KEY_MAX + 1];
	size_t key_len;

	if (!words[0] || registry_call(client, name, &call, key, &key_len) != MEMCACHED_SUCCESS) {
		return;
	}
	if (memcached_append_by_key(call.memc, call.key, call.key_len, key, key_len, words, strlen(words), 0, 0)
		== MEMCACHED_NOTSTORED) {
		memcached_add_by_key(call.memc, call.key, call.key_len, key, key_len, words, strlen(words), 0, 0);
	}
	mcd_call_end(client, &call, MEMCACHED_SUCCESS);
}

struct kept_words {
	const char *dropped;         /* the words to leave out */
	char *kept;                  /* MCD_REGISTRY_MAX */
	size_t used;
};

/* Keep word unless dropped. (A word two nodes appended at once is listed twice until it is
 * dropped: groups.c reconciles it once a tick all the same.) */
static void keep_word(const char *word, void *arg)
{
	struct kept_words *k = arg;

	if (!mcd_listed(k->dropped, word) && k->used + strlen(word) + 2 < MCD_REGISTRY_MAX) {
		k->used += (size_t) snprintf(k->kept + k->used, MCD_REGISTRY_MAX - k->used, " %s", word);
	}
}

/* Write the list named name, as read at version cas, without the words (" a b"), unless it
 * changed since: a word added meanwhile stays, and the next tick tries again. */
static void unlist(struct mcd_client *client, const char *name, const char *list, uint64_t cas,
	const char *words)
{
	struct mcd_call call;
	char key[MCD_KEY_MAX + 1];
	size_t key_len;
	struct kept_words k = { .dropped = words };

	if (!words[0] || !cas || !(k.kept = malloc(MCD_REGISTRY_MAX))) {
		free(k.kept);
		return;
	}
	k.kept[0] = '\0';
	mcd_each_word(list, keep_word, &k);
	if (registry_call(client, name, &call, key, &key_len) == MEMCACHED_SUCCESS) {
		mcd_call_end(client, &call, memcached_cas_by_key(call.memc, call.key, call.key_len, key, key_len,
			k.kept, k.used, 0, 0, cas));
	}
	free(k.kept);
}

struct heartbeats {
	struct mcd_client *client;
	char keys[MAX_HEARTBEATS][MCD_KEY_MAX + 1];
	const char *key_ptrs[MAX_HEARTBEATS];
	size_t lens[MAX_HEARTBEATS];
	char nodes[MAX_HEARTBEATS][MCD_NAME_MAX + 1];
	bool alive[MAX_HEARTBEATS];
	size_t count;
	char gone[MAX_HEARTBEATS * (MCD_NAME_MAX + 2)];
};

static void heartbeat_key(const char *node, void *arg)
{
	struct heartbeats *h = arg;
	char name[MCD_NAME_MAX + 16];

	/* A word no node id can be is not looked for (nor dropped). */
	if (h->count >= MAX_HEARTBEATS || strlen(node) > MCD_NAME_MAX) {
		return;
	}
	snprintf(name, sizeof(name), "node:%.*s", MCD_NAME_MAX, node);
	if (mcd_client_own_key(h->client, name, h->keys[h->count], &h->lens[h->count]) == MEMCACHED_SUCCESS) {
		snprintf(h->nodes[h->count], sizeof(h->nodes[h->count]), "%.*s", MCD_NAME_MAX, node);
		h->key_ptrs[h->count] = h->keys[h->count];
		h->count++;
	}
}

/* Mark alive the listed node whose heartbeat this is. */
static mcd_rc mark_alive(const memcached_result_st *result, void *arg)
{
	struct heartbeats *h = arg;

	for (size_t i = 0; i < h->count; i++) {
		h->alive[i] = h->alive[i] || (memcached_result_key_length(result) == h->lens[i]
			&& !memcmp(memcached_result_key_value(result), h->keys[i], h->lens[i]));
	}
	return MEMCACHED_SUCCESS;
}

/* Write this node's heartbeat (living a whole lease), and drop from mcdnodes the listed nodes
 * whose heartbeat memcached no longer has. On any failure, nothing is dropped. */
static void beat_and_prune(struct mcd_client *client, const char *node, long lease_s,
	const struct mcd_registry *r)
{
	struct heartbeats *h = calloc(1, sizeof(*h));
	struct mcd_call call;
	char name[MCD_NAME_MAX + 16], own[MCD_KEY_MAX + 1];
	size_t own_len, used = 0;
	mcd_rc rc;

	snprintf(name, sizeof(name), "node:%s", node);
	if (!h || registry_call(client, name, &call, own, &own_len) != MEMCACHED_SUCCESS) {
		free(h);
		return;
	}
	h->client = client;
	rc = memcached_set_by_key(call.memc, call.key, call.key_len, own, own_len, "1", 1, (time_t) lease_s, 0);
	mcd_each_word(r->nodes, heartbeat_key, h);
	if (memcached_success(rc) && h->count) {
		rc = mcd_mget_each(call.memc, call.key, call.key_len, h->key_ptrs, h->lens, h->count, mark_alive, h);
	}
	rc = mcd_call_end(client, &call, memcached_success(rc) ? MEMCACHED_SUCCESS : rc);
	for (size_t i = 0; rc == MEMCACHED_SUCCESS && i < h->count; i++) {
		if (!h->alive[i] && strcmp(h->nodes[i], node)) {
			used += (size_t) snprintf(h->gone + used, sizeof(h->gone) - used, " %s", h->nodes[i]);
		}
	}
	if (rc == MEMCACHED_SUCCESS) {
		unlist(client, "nodes", r->nodes, r->nodes_cas, h->gone);
	}
	free(h);
}

void mcd_registry_keep(struct mcd_client *client, struct mcd_coord *coord, const struct mcd_registry *r)
{
	char node[MCD_NAME_MAX + 2] = " ";

	mcd_coord_node(coord, node + 1, sizeof(node) - 1);
	beat_and_prune(client, node + 1, mcd_coord_lease(coord), r);
	if (!mcd_listed(r->nodes, node + 1)) {
		enlist(client, "nodes", node);
	}
}

void mcd_registry_enlist_groups(struct mcd_client *client, const char *words)
{
	enlist(client, "groups", words);
}

void mcd_registry_unlist_groups(struct mcd_client *client, const struct mcd_registry *r, const char *words)
{
	unlist(client, "groups", r->groups, r->groups_cas, words);
}
