/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * retire: the registry's share of a tick (registry.c has its keys). The
 * heartbeat; this incarnation's entry in the list (made again if memcached
 * lost it, renamed after a reload, or replaced by a new incarnation when the
 * cluster retired this one while it stalled); and the retirement of dead
 * incarnations, claimed with a compare-and-swap of the list so that exactly
 * one survivor takes each dead one's counts away.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_private.h"
#include "util.h"

/* The most entries a tick reads in the list. */
#define MAX_ENTRIES 256

/* One word of the list. */
struct entry {
	char word[MCD_ENTRY_MAX + 1];
	char node[MCD_NAME_MAX + 1];
	char inc[MCD_INC_LEN + 1];
	char by[MCD_INC_LEN + 1];    /* the incarnation retiring it, or "" */
	bool alive;                  /* its heartbeat is there */
	bool by_alive;
};

struct registry_view {
	struct entry entries[MAX_ENTRIES];
	size_t count;
	char *list;                  /* as read, MCD_REGISTRY_MAX */
	uint64_t cas;
};

/* Read from the right: "NODE/INC" or "NODE/INC!BY", where the ids have a fixed length and
 * NODE may hold any byte of a token. An incarnation listed twice (two joins enlisting it at
 * once) is read once. */
static void parse_entry(const char *word, void *arg)
{
	struct registry_view *v = arg;
	struct entry *e = &v->entries[v->count];
	const size_t len = strlen(word), id = MCD_INC_LEN + 1;
	const bool retiring = len > 2 * id && word[len - id] == '!' && word[len - 2 * id] == '/';
	const size_t head = retiring ? len - id : len;

	if (v->count >= MAX_ENTRIES || len > MCD_ENTRY_MAX || head <= id || word[head - id] != '/') {
		return;
	}
	for (size_t i = 0; i < v->count; i++) {
		/* Listed twice (a join enlisting it while another retires it): the claim counts. */
		if (!strncmp(v->entries[i].inc, word + head - MCD_INC_LEN, MCD_INC_LEN)) {
			if (retiring && !v->entries[i].by[0]) {
				snprintf(v->entries[i].word, sizeof(v->entries[i].word), "%s", word);
				snprintf(v->entries[i].by, sizeof(v->entries[i].by), "%s", word + len - MCD_INC_LEN);
			}
			return;
		}
	}
	*e = (struct entry) { .alive = false };
	snprintf(e->word, sizeof(e->word), "%s", word);
	snprintf(e->node, sizeof(e->node), "%.*s", (int) (head - id), word);
	snprintf(e->inc, sizeof(e->inc), "%.*s", MCD_INC_LEN, word + head - MCD_INC_LEN);
	snprintf(e->by, sizeof(e->by), "%s", retiring ? word + len - MCD_INC_LEN : "");
	v->count++;
}

struct beats {
	struct registry_view *v;
	char (*keys)[MCD_KEY_MAX + 1];
	size_t *lens;
};

static mcd_rc mark_alive(const memcached_result_st *result, void *arg)
{
	struct beats *b = arg;

	for (size_t i = 0; i < 2 * b->v->count; i++) {
		if (memcached_result_key_length(result) == b->lens[i]
			&& !memcmp(memcached_result_key_value(result), b->keys[i], b->lens[i])) {
			*(i % 2 ? &b->v->entries[i / 2].by_alive : &b->v->entries[i / 2].alive) = true;
		}
	}
	return MEMCACHED_SUCCESS;
}

/* Write own heartbeat, read the list and every heartbeat it names (its entries' and retirers'). */
static mcd_rc read_view(struct mcd_client *client, const char *inc, long lease_s, struct registry_view *v)
{
	struct beats b = { .v = v, .keys = malloc(2 * MAX_ENTRIES * sizeof(*b.keys)),
		.lens = malloc(2 * MAX_ENTRIES * sizeof(*b.lens)) };
	const char **ptrs = malloc(2 * MAX_ENTRIES * sizeof(*ptrs));
	struct mcd_call call;
	char name[64], key[MCD_KEY_MAX + 1];
	size_t key_len, len = 0;
	mcd_rc rc = b.keys && b.lens && ptrs ? MEMCACHED_SUCCESS : MEMCACHED_MEMORY_ALLOCATION_FAILURE;

	snprintf(name, sizeof(name), "hb:%s", inc);
	if (rc == MEMCACHED_SUCCESS && (rc = mcd_registry_call(client, name, &call, key, &key_len)) == MEMCACHED_SUCCESS) {
		rc = memcached_set_by_key(call.memc, call.key, call.key_len, key, key_len, "1", 1, (time_t) lease_s, 0);
		if (rc == MEMCACHED_SUCCESS) {
			rc = mcd_gets(call.memc, call.key, call.key_len, call.key, call.key_len, v->list, MCD_REGISTRY_MAX,
				&len, &v->cas);
			rc = rc == MEMCACHED_SUCCESS && len >= MCD_REGISTRY_MAX ? MEMCACHED_E2BIG
				: rc == MEMCACHED_NOTFOUND ? MEMCACHED_SUCCESS : rc;
		}
		if (rc == MEMCACHED_SUCCESS) {
			mcd_each_word(v->list, parse_entry, v);
			for (size_t i = 0; i < 2 * v->count; i++) {
				const struct entry *e = &v->entries[i / 2];

				snprintf(name, sizeof(name), "hb:%s", i % 2 && e->by[0] ? e->by : e->inc);
				mcd_client_own_key(client, name, b.keys[i], &b.lens[i]);
				ptrs[i] = b.keys[i];
			}
			rc = v->count ? mcd_mget_each(call.memc, call.key, call.key_len, ptrs, b.lens, 2 * v->count,
				mark_alive, &b) : MEMCACHED_SUCCESS;
		}
		rc = mcd_call_end(client, &call, rc);
	}
	free(b.keys);
	free(b.lens);
	free(ptrs);
	return rc;
}

struct rewrite {
	const char *inc, *with;
	char *list;
	size_t used;
	bool replaced;
};

/* Copy one word of the list: the words of the incarnation replaced by with, once; each other
 * word once. */
static void rewrite_word(const char *w, void *arg)
{
	struct rewrite *r = arg;
	char inc[MCD_INC_LEN + 1];

	if (mcd_registry_word_inc(w, inc) && !strcmp(inc, r->inc)) {
		if (r->replaced) {
			return;
		}
		r->replaced = true;
		w = r->with;
	}
	if (w[0] && !mcd_listed(r->list, w) && r->used + strlen(w) + 2 < MCD_REGISTRY_MAX) {
		r->used += (size_t) snprintf(r->list + r->used, MCD_REGISTRY_MAX - r->used, " %s", w);
	}
}

/* The list as read, with the words of incarnation inc replaced by with ("" to drop them), every
 * other word kept (those this tick could not read too): written unless it changed since. */
static mcd_rc swap_word(struct mcd_client *client, const struct registry_view *v, const char *inc,
	const char *with)
{
	struct rewrite r = { .inc = inc, .with = with, .list = malloc(MCD_REGISTRY_MAX) };
	mcd_rc rc = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	struct mcd_call call;
	char key[MCD_KEY_MAX + 1];
	size_t key_len;

	if (!r.list) {
		return rc;
	}
	r.list[0] = '\0';
	mcd_each_word(v->list, rewrite_word, &r);
	if ((rc = mcd_registry_call(client, "nodes", &call, key, &key_len)) == MEMCACHED_SUCCESS) {
		rc = mcd_call_end(client, &call, memcached_cas_by_key(call.memc, call.key, call.key_len, key, key_len,
			r.list, r.used, 0, 0, v->cas));
	}
	free(r.list);
	return rc;
}

/* Take incarnation inc out of the list as it is now (a swap that loses a race leaves it for the
 * next tick). */
static void drop_word(struct mcd_client *client, const char *inc)
{
	struct registry_view *v = calloc(1, sizeof(*v));
	struct mcd_call call;
	char key[MCD_KEY_MAX + 1];
	size_t key_len, len = 0;
	mcd_rc rc = MEMCACHED_MEMORY_ALLOCATION_FAILURE;

	if (v && (v->list = malloc(MCD_REGISTRY_MAX))
		&& (rc = mcd_registry_call(client, "nodes", &call, key, &key_len)) == MEMCACHED_SUCCESS) {
		rc = mcd_call_end(client, &call, mcd_gets(call.memc, call.key, call.key_len, key, key_len, v->list,
			MCD_REGISTRY_MAX, &len, &v->cas));
	}
	if (rc == MEMCACHED_SUCCESS && len < MCD_REGISTRY_MAX) {
		swap_word(client, v, inc, "");
	}
	if (v) {
		free(v->list);
	}
	free(v);
}

/* Whether the marker name (retired:INC) is there: read into a buffer of its own. */
static bool retired(struct mcd_client *client, const char *name)
{
	char *marker = malloc(MCD_REGISTRY_MAX);
	uint64_t cas;
	bool found = marker && mcd_registry_get(client, name, marker, &cas) == MEMCACHED_SUCCESS;

	free(marker);
	return found;
}

/* Take one group's count of incarnation inc away from its counter, once: the count is swapped
 * to "r COUNT" (only the swap that does it goes on), the counter stepped, then the count
 * emptied (a tombstone). Readings count "r COUNT" as the count: never above the counter. */
static bool retire_group(struct mcd_client *client, const char *inc, long lease_s, const char *category,
	const char *group)
{
	struct group_keys k;
	struct mcd_call call;
	char value[32], marked[40];
	size_t len;
	uint64_t cas, ignored;
	mcd_rc rc;

	if (mcd_group_keys(client, category, group, inc, &k) != MEMCACHED_SUCCESS) {
		/* Not a group's name (another client wrote it): nothing to take. */
		return true;
	}
	call.key_len = k.master_len;
	memcpy(call.key, k.master, k.master_len + 1);
	if (mcd_call_begin(client, mcd_counter_pool(client), &call) != MEMCACHED_SUCCESS) {
		return false;
	}
	rc = mcd_gets(call.memc, k.master, k.master_len, k.count, k.count_len, value, sizeof(value), &len, &cas);
	if (rc == MEMCACHED_SUCCESS && len && value[0] != 'r') {
		int64_t members = mcd_offset_value(value, len);

		snprintf(marked, sizeof(marked), "r %s", value);
		rc = memcached_cas_by_key(call.memc, k.master, k.master_len, k.count, k.count_len, marked, strlen(marked),
			0, 0, cas);
		if (rc == MEMCACHED_SUCCESS && members) {
			rc = mcd_step(call.memc, k.master, k.master_len, k.master, k.master_len, -members, &ignored);
		}
		if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND) {
			rc = memcached_set_by_key(call.memc, k.master, k.master_len, k.count, k.count_len, "", 0,
				(time_t) (2 * lease_s), 0);
		}
	}
	/* Done: taken away (or a tombstone, or gone, or "r" left by a retirer that died, which
	 * nothing can settle: the README says so). A lost swap or a fault: again next tick. */
	return mcd_call_end(client, &call, rc == MEMCACHED_NOTFOUND ? MEMCACHED_SUCCESS : rc) == MEMCACHED_SUCCESS;
}

struct retirement {
	struct mcd_client *client;
	const char *inc;
	long lease_s;
	uint64_t deadline_us;
	bool failed;                 /* a group of the shard is still to be taken */
};

static void retire_listed(const char *category, const char *group, void *arg)
{
	struct retirement *r = arg;

	if (mcd_now_us() >= r->deadline_us || !retire_group(r->client, r->inc, r->lease_s, category, group)) {
		r->failed = true;
	}
}

/* Retire incarnation e (claimed by this one) shard by shard, until deadline_us. True when done. */
static bool retire(struct mcd_client *client, const struct entry *e, long lease_s, uint64_t deadline_us)
{
	struct retirement r = { .client = client, .inc = e->inc, .lease_s = lease_s, .deadline_us = deadline_us };
	char *list = malloc(MCD_REGISTRY_MAX), name[64];
	uint64_t cas;
	bool done = list != NULL;

	for (unsigned int shard = 0; done && shard < MCD_INDEX_SHARDS; shard++) {
		snprintf(name, sizeof(name), "ix:%s:%u", e->inc, shard);
		mcd_rc rc = mcd_registry_get(client, name, list, &cas);

		r.failed = false;
		if (rc == MEMCACHED_SUCCESS) {
			mcd_each_listed(list, retire_listed, &r);
		}
		/* A shard is dropped once every group in it was taken (a tombstone makes a second pass
		 * harmless); else the next tick goes through it again. */
		done = rc == MEMCACHED_NOTFOUND || (rc == MEMCACHED_SUCCESS && !r.failed
			&& memcached_success(mcd_registry_delete(client, name)));
	}
	free(list);
	return done;
}

void mcd_registry_tick(struct mcd_client *client, struct mcd_coord *coord, struct mcd_tick_report *report)
{
	struct registry_view *v = calloc(1, sizeof(*v));
	char node[MCD_NAME_MAX + 1], inc[MCD_INC_LEN + 1], word[MCD_ENTRY_MAX + 1], name[64], *incs = NULL;
	long lease_s;
	const struct entry *own = NULL;
	uint64_t deadline_us;
	size_t used = 0;
	bool duplicate = false;

	pthread_mutex_lock(&coord->lock);
	snprintf(node, sizeof(node), "%s", coord->node);
	snprintf(inc, sizeof(inc), "%s", coord->inc);
	lease_s = coord->lease_s;
	pthread_mutex_unlock(&coord->lock);
	/* A tick spends at most a quarter lease on retirements: the heartbeat comes first. */
	deadline_us = mcd_now_us() + (uint64_t) lease_s * 250000U;
	if (!v || !(v->list = malloc(MCD_REGISTRY_MAX)) || !(incs = malloc(MAX_ENTRIES * (MCD_INC_LEN + 1) + 1))
		|| read_view(client, inc, lease_s, v) != MEMCACHED_SUCCESS) {
		report->registry_failed = true;
		goto done;
	}
	snprintf(word, sizeof(word), "%s/%s", node, inc);
	incs[0] = '\0';
	for (size_t i = 0; i < v->count; i++) {
		const struct entry *e = &v->entries[i];

		used += (size_t) snprintf(incs + used, MCD_INC_LEN + 2, " %s", e->inc);
		if (!strcmp(e->inc, inc)) {
			own = e;
		} else if (!e->by[0] && e->alive && !strcmp(e->node, node)) {
			duplicate = true;
		}
	}
	/* Two live incarnations of one node id, for longer than a restart within the lease explains. */
	pthread_mutex_lock(&coord->lock);
	coord->duplicate_since = !duplicate ? 0 : coord->duplicate_since ? coord->duplicate_since : mcd_monotonic_s();
	if (coord->duplicate_since && mcd_monotonic_s() - coord->duplicate_since > 2 * lease_s) {
		snprintf(report->duplicate, sizeof(report->duplicate), "%s", node);
	}
	pthread_mutex_unlock(&coord->lock);
	pthread_mutex_lock(&coord->lock);
	free(coord->incarnations);
	coord->incarnations = strdup(incs);
	pthread_mutex_unlock(&coord->lock);
	snprintf(name, sizeof(name), "retired:%s", inc);
	if ((own && own->by[0]) || (!own && retired(client, name))) {
		mcd_coord_reincarnate(client, coord);
		report->reincarnated = true;
		goto done;
	}
	if (!own) {
		/* New, or memcached lost the list, and this incarnation's index with it (they share a
		 * server): listed again, and its groups too (tick.c). */
		mcd_coord_enlist(client, coord, true);
		/* Nobody is retired from a list this node could not find itself in. */
		goto done;
	} else if (strcmp(own->word, word)) {
		/* Renamed by a reload: the counts are the incarnation's, only the name changes. */
		swap_word(client, v, inc, word);
		goto done;
	}
	for (size_t i = 0; i < v->count && mcd_now_us() < deadline_us; i++) {
		const struct entry *e = &v->entries[i];
		char claimed[MCD_ENTRY_MAX + 1];
		bool mine = !strcmp(e->by, inc);

		if (!strcmp(e->inc, inc) || (!mine && (e->by[0] ? e->by_alive : e->alive))) {
			continue;
		}
		/* Dead, or its retirer died: whoever swaps the list first retires it. */
		snprintf(claimed, sizeof(claimed), "%s/%s!%s", e->node, e->inc, inc);
		if (!mine && swap_word(client, v, e->inc, claimed) != MEMCACHED_SUCCESS) {
			break;
		}
		if (retire(client, e, lease_s, deadline_us)) {
			snprintf(name, sizeof(name), "retired:%s", e->inc);
			mcd_registry_put(client, name, "1", 0, (time_t) (10 * lease_s));
			snprintf(name, sizeof(name), "hb:%s", e->inc);
			mcd_registry_delete(client, name);
			report->retired++;
			drop_word(client, e->inc);
		}
		/* A swap changed the list: the rest waits for the next tick's reading. One of this
		 * node's own claims that did not finish holds up no other. */
		if (!mine) {
			break;
		}
	}
done:
	if (v) {
		free(v->list);
	}
	free(v);
	free(incs);
}
