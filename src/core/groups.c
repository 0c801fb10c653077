/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * groups: joining, leaving and counting call groups across the cluster, and
 * the tick that keeps each group's counter at the truth the nodes publish.
 * The design is in coord.h and the README.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_private.h"
#include "util.h"

/* The most nodes whose counts are read for a group: more are left out. */
#define MAX_NODES 64
/* Room for the cluster's lists of nodes and of groups, as read back. */
#define REGISTRY_MAX (256 * 1024)
/* Ticks in a row a group must be empty everywhere before it leaves the list. */
#define EMPTY_TICKS 2

/* --- joining, leaving, counting --- */

static mcd_rc join(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group, uint64_t limit)
{
	struct mcd_call call;
	char own[MCD_KEY_MAX + 1];
	size_t own_len;
	uint64_t members = 0, ignored;
	struct local_group *g;
	mcd_rc rc = mcd_group_key(client, category, group, NULL, call.key, &call.key_len);

	/* The longest key of the group, this node's count, must fit too. */
	if (rc != MEMCACHED_SUCCESS
		|| (rc = mcd_group_key(client, category, group, coord->node, own, &own_len)) != MEMCACHED_SUCCESS
		|| (rc = mcd_call_begin(client, &client->main, &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	/* The counter decides: racing joins get distinct values, those past the limit step back. */
	rc = mcd_counter_step(call.memc, call.key, call.key_len, call.key, call.key_len, 1, 0, &members);
	if (rc == MEMCACHED_SUCCESS && limit && members > limit) {
		mcd_counter_step(call.memc, call.key, call.key_len, call.key, call.key_len, -1, 0, &ignored);
		rc = MCD_GROUP_FULL;
	}
	mcd_call_end(client, &call, rc);
	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	pthread_mutex_lock(&coord->lock);
	if ((g = mcd_local_group(coord, category, group, true))) {
		g->members++;
		mcd_publish(client, coord, g);
	}
	pthread_mutex_unlock(&coord->lock);
	return g ? MEMCACHED_SUCCESS : MEMCACHED_MEMORY_ALLOCATION_FAILURE;
}

mcd_rc mcd_group_join(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group, uint64_t limit)
{
	unsigned long started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_GROUP, started,
		join(client, coord, category, group, limit));
}

static mcd_rc leave(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group, bool noreply)
{
	char master[MCD_KEY_MAX + 1];
	size_t master_len;
	uint64_t ignored;
	struct local_group *g;
	bool member = false;
	mcd_rc rc = mcd_group_key(client, category, group, NULL, master, &master_len);

	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	noreply = noreply && client->ordered;
	pthread_mutex_lock(&coord->lock);
	if ((g = mcd_local_group(coord, category, group, false)) && g->members > 0) {
		member = true;
		g->members--;
		mcd_publish(client, coord, g);
		if (noreply) {
			/* After the count, on the same connection: nothing to wait for on a hangup. */
			pthread_mutex_lock(&client->ordered_lock);
			rc = memcached_decrement_by_key(client->ordered, master, master_len, master, master_len, 1,
				&ignored);
			pthread_mutex_unlock(&client->ordered_lock);
			rc = memcached_success(rc) ? MCD_SENT : rc;
		}
	}
	pthread_mutex_unlock(&coord->lock);
	if (!member) {
		return MEMCACHED_NOTFOUND;
	}
	if (!noreply) {
		/* Confirmed: the channel that leaves (to join another group, say) and then counts
		 * sees its own leave. */
		struct mcd_call call = { .key_len = master_len };

		memcpy(call.key, master, master_len + 1);
		if ((rc = mcd_call_begin(client, &client->main, &call)) == MEMCACHED_SUCCESS) {
			rc = mcd_call_end(client, &call, mcd_counter_step(call.memc, master, master_len, master,
				master_len, -1, 0, &ignored));
		}
	}
	return rc;
}

mcd_rc mcd_group_leave(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group)
{
	unsigned long started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_GROUP, started,
		leave(client, coord, category, group, false));
}

mcd_rc mcd_group_leave_noreply(struct mcd_client *client, struct mcd_coord *coord, const char *category,
	const char *group)
{
	unsigned long started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_GROUP, started,
		leave(client, coord, category, group, true));
}

/* A whole number as memcached holds it (value, len): 0 when it is not one. */
static uint64_t number(const char *value, size_t len)
{
	char digits[24];
	uint64_t n = 0;

	snprintf(digits, sizeof(digits), "%.*s", (int) (len < sizeof(digits) ? len : sizeof(digits) - 1), value);
	mcd_parse_uint64(digits, &n);
	return n;
}

mcd_rc mcd_group_count(struct mcd_client *client, const char *category, const char *group,
	uint64_t *count)
{
	struct mcd_call call;
	unsigned long started = mcd_now_us();
	mcd_rc rc = mcd_group_key(client, category, group, NULL, call.key, &call.key_len);

	*count = 0;
	if (rc == MEMCACHED_SUCCESS && (rc = mcd_call_begin(client, &client->main, &call)) == MEMCACHED_SUCCESS) {
		size_t len;
		uint32_t flags;
		memcached_return_t got;
		char *text = memcached_get(call.memc, call.key, call.key_len, &len, &flags, &got);

		if (text) {
			*count = number(text, len);
			free(text);
		}
		/* No counter: nobody is in the group. */
		rc = mcd_call_end(client, &call, got == MEMCACHED_NOTFOUND ? MEMCACHED_SUCCESS : got);
	}
	return mcd_stats_record(client->stats, MCD_OP_GROUP, started, rc);
}

/* --- the cluster's lists: mcdnodes (node ids) and mcdgroups ("category:group") --- */

/* True when the space-separated list holds word. */
static bool listed(const char *list, const char *word)
{
	size_t len = strlen(word);

	for (const char *p = list; (p = strstr(p, word)); p += len) {
		if ((p == list || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0')) {
			return true;
		}
	}
	return false;
}

/* Read the list named name into buf (REGISTRY_MAX); *cas is its version, 0 when missing. */
static mcd_rc read_list(struct mcd_client *client, const char *name, char *buf, uint64_t *cas)
{
	struct mcd_call call;
	size_t len;
	mcd_rc rc = mcd_client_key(client, name, call.key, &call.key_len);

	if (rc != MEMCACHED_SUCCESS || (rc = mcd_call_begin(client, &client->main, &call)) != MEMCACHED_SUCCESS) {
		buf[0] = '\0';
		*cas = 0;
		return rc;
	}
	rc = mcd_gets(call.memc, call.key, call.key_len, buf, REGISTRY_MAX, &len, cas);
	return mcd_call_end(client, &call, rc == MEMCACHED_NOTFOUND ? MEMCACHED_SUCCESS : rc);
}

/* Call visit for each word of the space-separated list, as a string of its own. */
static void each_word(const char *list, void (*visit)(const char *word, void *arg), void *arg)
{
	for (const char *p = list; *p; ) {
		char word[2 * MCD_NAME_MAX + 2];
		size_t len;

		p += strspn(p, " ");
		len = strcspn(p, " ");
		if (len && len < sizeof(word)) {
			memcpy(word, p, len);
			word[len] = '\0';
			visit(word, arg);
		}
		p += len;
	}
}

/* Append the words (" a b c") to the list named name, making it if there is none. */
static void enlist(struct mcd_client *client, const char *name, const char *words)
{
	struct mcd_call call;

	if (!words[0] || mcd_client_key(client, name, call.key, &call.key_len) != MEMCACHED_SUCCESS
		|| mcd_call_begin(client, &client->main, &call) != MEMCACHED_SUCCESS) {
		return;
	}
	if (memcached_append(call.memc, call.key, call.key_len, words, strlen(words), 0, 0) == MEMCACHED_NOTSTORED) {
		memcached_add(call.memc, call.key, call.key_len, words, strlen(words), 0, 0);
	}
	mcd_call_end(client, &call, MEMCACHED_SUCCESS);
}

struct kept_words {
	const char *dropped;         /* the words to leave out */
	char *kept;                  /* REGISTRY_MAX */
	size_t used;
};

static void keep_word(const char *word, void *arg)
{
	struct kept_words *k = arg;

	if (!listed(k->dropped, word) && k->used + strlen(word) + 2 < REGISTRY_MAX) {
		k->used += (size_t) snprintf(k->kept + k->used, REGISTRY_MAX - k->used, " %s", word);
	}
}

/* Take the words (" a b") out of the list named name as read at version cas, unless it
 * changed since: a group added meanwhile stays, and the next tick tries again. */
static void unlist(struct mcd_client *client, const char *name, const char *list, uint64_t cas,
	const char *words)
{
	struct mcd_call call;
	struct kept_words k = { .dropped = words, .kept = malloc(REGISTRY_MAX) };

	if (!k.kept || !cas || mcd_client_key(client, name, call.key, &call.key_len) != MEMCACHED_SUCCESS) {
		free(k.kept);
		return;
	}
	k.kept[0] = '\0';
	each_word(list, keep_word, &k);
	if (mcd_call_begin(client, &client->main, &call) == MEMCACHED_SUCCESS) {
		mcd_call_end(client, &call, memcached_cas(call.memc, call.key, call.key_len, k.kept, k.used, 0, 0,
			cas));
	}
	free(k.kept);
}

struct listed_visit {
	void (*visit)(const char *category, const char *group, void *arg);
	void *arg;
};

static void visit_entry(const char *word, void *arg)
{
	const struct listed_visit *v = arg;
	char entry[2 * MCD_NAME_MAX + 2], *colon;

	snprintf(entry, sizeof(entry), "%s", word);
	if ((colon = strchr(entry, ':'))) {
		*colon = '\0';
		v->visit(entry, colon + 1, v->arg);
	}
}

/* Call visit for each "category:group" of the list. */
static void each_listed(const char *groups, void (*visit)(const char *category, const char *group,
	void *arg), void *arg)
{
	struct listed_visit v = { .visit = visit, .arg = arg };

	each_word(groups, visit_entry, &v);
}

/* --- a group as memcached holds it: its counter and the counts the nodes published --- */

struct group_state {
	uint64_t counter;            /* 0 when missing */
	long others;                 /* the sum of the other nodes' published counts */
	long own;                    /* this node's count as published, -1 when missing */
};

struct group_keys {
	char keys[MAX_NODES + 1][MCD_KEY_MAX + 1];
	const char *key_ptrs[MAX_NODES + 1];
	size_t lens[MAX_NODES + 1];
	size_t count;
	struct mcd_client *client;   /* for add_node_key */
	const char *category, *group, *node;
};

/* Add node's published count of the group to the keys to read (this node's is added first). */
static void add_node_key(const char *node, void *arg)
{
	struct group_keys *k = arg;

	if (k->count <= MAX_NODES && strcmp(node, k->node) && mcd_group_key(k->client, k->category, k->group,
		node, k->keys[k->count], &k->lens[k->count]) == MEMCACHED_SUCCESS) {
		k->count++;
	}
}

/* Read group's counter and the counts of nodes (a space-separated list) with one request. */
static mcd_rc read_group(struct mcd_client *client, const char *node, const char *category,
	const char *group, const char *nodes, struct group_state *state)
{
	struct group_keys *k = malloc(sizeof(*k));
	struct mcd_call call;
	memcached_result_st result;
	memcached_return_t fetched = MEMCACHED_END;
	char own[MCD_KEY_MAX + 1];
	size_t own_len = 0;
	mcd_rc rc = k ? mcd_group_key(client, category, group, NULL, call.key, &call.key_len)
		: MEMCACHED_MEMORY_ALLOCATION_FAILURE;

	*state = (struct group_state) { .own = -1 };
	if (rc != MEMCACHED_SUCCESS
		|| (rc = mcd_group_key(client, category, group, node, own, &own_len)) != MEMCACHED_SUCCESS) {
		free(k);
		return rc;
	}
	memcpy(k->keys[0], call.key, call.key_len + 1);
	k->lens[0] = call.key_len;
	k->count = 1;
	memcpy(k->keys[k->count], own, own_len + 1);
	k->lens[k->count++] = own_len;
	k->client = client;
	k->category = category;
	k->group = group;
	k->node = node;
	each_word(nodes, add_node_key, k);
	for (size_t i = 0; i < k->count; i++) {
		k->key_ptrs[i] = k->keys[i];
	}
	if ((rc = mcd_call_begin(client, &client->main, &call)) != MEMCACHED_SUCCESS) {
		free(k);
		return rc;
	}
	rc = memcached_mget_by_key(call.memc, call.key, call.key_len, k->key_ptrs, k->lens, k->count);
	if (memcached_success(rc) && memcached_result_create(call.memc, &result)) {
		while (memcached_fetch_result(call.memc, &result, &fetched)) {
			const char *key = memcached_result_key_value(&result);
			size_t key_len = memcached_result_key_length(&result);
			uint64_t value = number(memcached_result_value(&result), memcached_result_length(&result));

			if (key_len == call.key_len && !memcmp(key, call.key, key_len)) {
				state->counter = value;
			} else if (key_len == own_len && !memcmp(key, own, key_len)) {
				state->own = (long) value;
			} else {
				state->others += (long) value;
			}
		}
		memcached_result_free(&result);
		rc = fetched == MEMCACHED_END || fetched == MEMCACHED_NOTFOUND ? MEMCACHED_SUCCESS : fetched;
	}
	free(k);
	return mcd_call_end(client, &call, rc);
}

/* Step group's counter by -gap, unless another node does it this tick. True when done. */
static bool correct(struct mcd_client *client, struct mcd_coord *coord, const char *node,
	const char *category, const char *group, long gap)
{
	struct mcd_call call;
	char guard[MCD_KEY_MAX + 1];
	size_t guard_len;
	uint64_t ignored;
	const time_t guard_ttl = (time_t) (coord->lease_s / 4 > 0 ? coord->lease_s / 4 : 1);
	bool done = false;
	mcd_rc rc;

	if (mcd_group_key(client, category, group, NULL, call.key, &call.key_len) != MEMCACHED_SUCCESS
		|| mcd_group_key(client, category, group, "reconcile", guard, &guard_len) != MEMCACHED_SUCCESS
		|| mcd_call_begin(client, &client->main, &call) != MEMCACHED_SUCCESS) {
		return false;
	}
	/* One corrector per tick: the guard lives a quarter of a lease. */
	rc = memcached_add_by_key(call.memc, call.key, call.key_len, guard, guard_len, node, strlen(node),
		guard_ttl, 0);
	if (rc == MEMCACHED_SUCCESS) {
		/* A step, not a set: the joins and leaves under way are kept. */
		rc = mcd_counter_step(call.memc, call.key, call.key_len, call.key, call.key_len, -gap, 0, &ignored);
		done = rc == MEMCACHED_SUCCESS;
	} else if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) {
		rc = MEMCACHED_SUCCESS;
	}
	mcd_call_end(client, &call, rc);
	return done;
}

/* --- the tick --- */

struct tick {
	struct mcd_client *client;
	struct mcd_coord *coord;
	char node[MCD_NAME_MAX + 1];
	const char *nodes;
	const char *groups;
	char *missing;               /* " cat:group ..." of this node's groups not listed */
	char *empty;                 /* " cat:group ..." empty everywhere for EMPTY_TICKS ticks */
	unsigned int corrected;
};

/* Append " category:group" to words (REGISTRY_MAX), if it fits. */
static void add_word(char *words, const char *category, const char *group)
{
	size_t used = strlen(words);

	if (used + strlen(category) + strlen(group) + 3 < REGISTRY_MAX) {
		snprintf(words + used, REGISTRY_MAX - used, " %s:%s", category, group);
	}
}

static void reconcile(const char *category, const char *group, void *arg)
{
	struct tick *t = arg;
	struct group_state state;
	struct local_group *g;
	long gap;
	bool again;

	if (read_group(t->client, t->node, category, group, t->nodes, &state) != MEMCACHED_SUCCESS) {
		return;
	}
	pthread_mutex_lock(&t->coord->lock);
	if (!(g = mcd_local_group(t->coord, category, group, true))) {
		pthread_mutex_unlock(&t->coord->lock);
		return;
	}
	/* This node's count is what it knows, whatever memcached holds (lost, or kept from an
	 * earlier life of the same node): put it right where it differs. */
	if (state.own != g->members && (state.own >= 0 || g->members > 0)) {
		mcd_publish(t->client, t->coord, g);
	}
	gap = (long) state.counter - (state.others + g->members);
	again = g->gap_seen && g->gap == gap;
	g->gap = gap;
	g->gap_seen = gap != 0;
	g->empty_ticks = !state.counter && !state.others && !g->members ? g->empty_ticks + 1 : 0;
	if (g->empty_ticks >= EMPTY_TICKS) {
		add_word(t->empty, category, group);
		mcd_local_forget(t->coord, category, group);
	}
	pthread_mutex_unlock(&t->coord->lock);
	/* A gap that stayed the same for a whole tick is no join or leave under way: the members
	 * of a node gone, or a counter memcached lost. */
	if (gap != 0 && again && correct(t->client, t->coord, t->node, category, group, gap)) {
		t->corrected++;
		pthread_mutex_lock(&t->coord->lock);
		if ((g = mcd_local_group(t->coord, category, group, false))) {
			g->gap_seen = false;
		}
		pthread_mutex_unlock(&t->coord->lock);
	}
}

/* Refresh this node's counts of the groups it has members in, and note the unlisted ones. */
static void refresh(struct tick *t)
{
	pthread_mutex_lock(&t->coord->lock);
	for (int b = 0; b < MCD_COORD_BUCKETS; b++) {
		for (struct local_group *g = t->coord->groups[b]; g; g = g->next) {
			char entry[2 * MCD_NAME_MAX + 2];

			if (g->members <= 0) {
				continue;
			}
			mcd_publish(t->client, t->coord, g);
			snprintf(entry, sizeof(entry), "%s:%s", g->category, g->group);
			if (!listed(t->groups, entry)) {
				add_word(t->missing, g->category, g->group);
			}
		}
	}
	pthread_mutex_unlock(&t->coord->lock);
}

unsigned int mcd_coord_tick(struct mcd_client *client, struct mcd_coord *coord)
{
	char *nodes = malloc(REGISTRY_MAX), *groups = malloc(REGISTRY_MAX);
	char *missing = malloc(REGISTRY_MAX), *empty = malloc(REGISTRY_MAX);
	struct tick t = { .client = client, .coord = coord, .nodes = nodes, .groups = groups,
		.missing = missing, .empty = empty };
	uint64_t nodes_cas, groups_cas;

	if (nodes && groups && missing && empty && read_list(client, "mcdnodes", nodes, &nodes_cas) == MEMCACHED_SUCCESS
		&& read_list(client, "mcdgroups", groups, &groups_cas) == MEMCACHED_SUCCESS) {
		char own[MCD_NAME_MAX + 3];

		missing[0] = empty[0] = '\0';
		pthread_mutex_lock(&coord->lock);
		snprintf(t.node, sizeof(t.node), "%s", coord->node);
		pthread_mutex_unlock(&coord->lock);
		if (!listed(nodes, t.node)) {
			snprintf(own, sizeof(own), " %s", t.node);
			enlist(client, "mcdnodes", own);
		}
		refresh(&t);
		enlist(client, "mcdgroups", missing);
		each_listed(groups, reconcile, &t);
		if (empty[0]) {
			unlist(client, "mcdgroups", groups, groups_cas, empty);
		}
	}
	free(nodes);
	free(groups);
	free(missing);
	free(empty);
	return t.corrected;
}

/* --- reports --- */

struct report_walk {
	struct mcd_client *client;
	struct mcd_coord *coord;
	const char *nodes;
	void (*each)(const struct mcd_group_report *report, void *arg);
	void *arg;
	unsigned int count, max;
};

static void report_group(const char *category, const char *group, void *arg)
{
	struct report_walk *w = arg;
	struct group_state state;
	struct mcd_group_report report = { .cluster = -1, .published = -1 };

	if (w->count >= w->max) {
		return;
	}
	snprintf(report.category, sizeof(report.category), "%s", category);
	snprintf(report.group, sizeof(report.group), "%s", group);
	report.here = mcd_group_local(w->coord, category, group);
	if (read_group(w->client, mcd_coord_node(w->coord), category, group, w->nodes, &state)
		== MEMCACHED_SUCCESS) {
		report.cluster = (long) state.counter;
		report.published = state.others + (state.own > 0 ? state.own : 0);
	}
	w->each(&report, w->arg);
	w->count++;
}

unsigned int mcd_coord_groups(struct mcd_client *client, struct mcd_coord *coord,
	void (*each)(const struct mcd_group_report *report, void *arg), void *arg, unsigned int max)
{
	char *nodes = malloc(REGISTRY_MAX), *groups = malloc(REGISTRY_MAX);
	struct report_walk w = { .client = client, .coord = coord, .nodes = nodes, .each = each, .arg = arg,
		.max = max };
	uint64_t cas;

	char *unlisted = malloc(REGISTRY_MAX);

	if (nodes && groups && unlisted && read_list(client, "mcdnodes", nodes, &cas) == MEMCACHED_SUCCESS
		&& read_list(client, "mcdgroups", groups, &cas) == MEMCACHED_SUCCESS) {
		each_listed(groups, report_group, &w);
		/* And this node's groups that its next tick will list. */
		unlisted[0] = '\0';
		pthread_mutex_lock(&coord->lock);
		for (int b = 0; b < MCD_COORD_BUCKETS; b++) {
			for (struct local_group *g = coord->groups[b]; g; g = g->next) {
				char entry[2 * MCD_NAME_MAX + 2];

				snprintf(entry, sizeof(entry), "%s:%s", g->category, g->group);
				if (g->members > 0 && !listed(groups, entry)) {
					add_word(unlisted, g->category, g->group);
				}
			}
		}
		pthread_mutex_unlock(&coord->lock);
		each_listed(unlisted, report_group, &w);
	}
	free(nodes);
	free(groups);
	free(unlisted);
	return w.count;
}
