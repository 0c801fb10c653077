/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * census: a group read whole (its counter, then every incarnation's count,
 * with one request), for the tick's repairs; the groups of the whole cluster
 * for the console and the manager (every group some incarnation listed now
 * uses, read now); and the operator's reset of one group's counter to what
 * the counts say.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_private.h"
#include "util.h"

/* --- a group read whole --- */

struct group_read {
	char (*keys)[MCD_KEY_MAX + 1];
	const char **key_ptrs;
	size_t *lens;
	size_t count;
	size_t room;
	int64_t counter;
	int64_t sum;
	int64_t own;
	const struct mcd_client *client;
	const char *category, *group;
	size_t own_len;
	char own_key[MCD_KEY_MAX + 1];
};

static void add_count_key(const char *inc, void *arg)
{
	struct group_read *r = arg;

	if (r->count < r->room && strlen(inc) == MCD_INC_LEN
		&& mcd_group_key(r->client, r->category, r->group, inc, r->keys[r->count], &r->lens[r->count])
		== MEMCACHED_SUCCESS) {
		r->key_ptrs[r->count] = r->keys[r->count];
		r->count++;
	}
}

static mcd_rc take_value(const memcached_result_st *result, void *arg)
{
	struct group_read *r = arg;
	const char *value = memcached_result_value(result);
	size_t len = memcached_result_length(result);

	if (memcached_result_key_length(result) == r->lens[0]
		&& !memcmp(memcached_result_key_value(result), r->keys[0], r->lens[0])) {
		r->counter = mcd_offset_value(value, len);
	} else if (len && value[0] == 'r') {
		/* A count under retirement ("r" and the count): still in the counter, or just taken out. */
		r->sum += len > 2 ? mcd_offset_value(value + 2, len - 2) : 0;
	} else if (len) {
		/* An empty value is a tombstone: a count its retirement took away already. */
		r->sum += mcd_offset_value(value, len);
		if (memcached_result_key_length(result) == r->own_len
			&& !memcmp(memcached_result_key_value(result), r->own_key, r->own_len)) {
			r->own = mcd_offset_value(value, len);
		}
	}
	return MEMCACHED_SUCCESS;
}

mcd_rc mcd_group_read(struct mcd_client *client, memcached_st *memc, const char *category, const char *group,
	const char *incarnations, struct mcd_group_reading *reading)
{
	struct group_read r = { .counter = INT64_MIN, .own = INT64_MIN, .client = client, .category = category,
		.group = group };
	mcd_rc rc;

	if (reading->own_inc && mcd_group_key(client, category, group, reading->own_inc, r.own_key, &r.own_len)
		!= MEMCACHED_SUCCESS) {
		r.own_len = 0;
	}
	r.room = 1 + (strlen(incarnations) + 1) / (MCD_INC_LEN + 1);
	r.keys = malloc(r.room * sizeof(*r.keys));
	r.key_ptrs = malloc(r.room * sizeof(*r.key_ptrs));
	r.lens = malloc(r.room * sizeof(*r.lens));
	if (!r.keys || !r.key_ptrs || !r.lens) {
		rc = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	} else if ((rc = mcd_group_key(client, category, group, NULL, r.keys[0], &r.lens[0])) == MEMCACHED_SUCCESS) {
		r.key_ptrs[0] = r.keys[0];
		r.count = 1;
		mcd_each_word(incarnations, add_count_key, &r);
		rc = mcd_mget_each(memc, r.keys[0], r.lens[0], r.key_ptrs, r.lens, r.count, take_value, &r);
	}
	reading->counter = r.counter;
	reading->sum = r.sum;
	reading->own = r.own;
	free(r.keys);
	free(r.key_ptrs);
	free(r.lens);
	return rc;
}

/* --- the cluster's groups, for the console and the manager --- */

/* "category:group" words, each once. */
struct census {
	char **names;
	size_t count, room;
};

static void add_name(const char *category, const char *group, void *arg)
{
	struct census *c = arg;
	char name[2 * MCD_NAME_MAX + 2], **grown;

	if (c->count == c->room) {
		size_t room = c->room ? 2 * c->room : 256;

		if (!(grown = realloc(c->names, room * sizeof(*grown)))) {
			return;
		}
		c->names = grown;
		c->room = room;
	}
	snprintf(name, sizeof(name), "%s:%s", category, group);
	if ((c->names[c->count] = strdup(name))) {
		c->count++;
	}
}

static void add_local(struct local_group *g, void *arg)
{
	if (g->members > 0) {
		add_name(g->category, g->group, arg);
	}
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Read group whole on its server. */
static mcd_rc read_whole(struct mcd_client *client, const char *category, const char *group,
	const char *incarnations, struct mcd_group_reading *r)
{
	struct mcd_call call;
	mcd_rc rc = mcd_group_key(client, category, group, NULL, call.key, &call.key_len);

	if (rc == MEMCACHED_SUCCESS && (rc = mcd_call_begin(client, &client->main, &call)) == MEMCACHED_SUCCESS) {
		rc = mcd_call_end(client, &call, mcd_group_read(client, call.memc, category, group, incarnations, r));
	}
	return rc;
}

unsigned int mcd_coord_groups(struct mcd_client *client, struct mcd_coord *coord,
	void (*each)(const struct mcd_group_report *report, void *arg), void *arg, unsigned int max)
{
	struct census c = { .count = 0 };
	char *incarnations = mcd_registry_incarnations(client);
	unsigned int reported = 0;

	if (incarnations && mcd_coord_supported(client)) {
		mcd_index_each(client, incarnations, add_name, &c);
		pthread_mutex_lock(&coord->lock);
		mcd_local_each(coord, add_local, &c);
		pthread_mutex_unlock(&coord->lock);
		if (c.count) {
			qsort(c.names, c.count, sizeof(*c.names), by_name);
		}
	}
	for (size_t i = 0; i < c.count && reported < max; i++) {
		struct mcd_group_report report = { .cluster = -1, .published = -1 };
		struct mcd_group_reading r = { .own_inc = NULL };
		char *colon = strchr(c.names[i], ':');

		if ((i && !strcmp(c.names[i], c.names[i - 1])) || !colon) {
			continue;
		}
		*colon = '\0';
		snprintf(report.category, sizeof(report.category), "%s", c.names[i]);
		snprintf(report.group, sizeof(report.group), "%s", colon + 1);
		*colon = ':';
		report.here = mcd_group_local(coord, report.category, report.group);
		if (read_whole(client, report.category, report.group, incarnations, &r) == MEMCACHED_SUCCESS) {
			report.cluster = r.counter == INT64_MIN ? 0 : (long) r.counter;
			report.published = (long) r.sum;
		}
		/* Those with members somewhere, or that could not be read. */
		if (report.cluster || report.published || report.here) {
			each(&report, arg);
			reported++;
		}
	}
	for (size_t i = 0; i < c.count; i++) {
		free(c.names[i]);
	}
	free(c.names);
	free(incarnations);
	return reported;
}

mcd_rc mcd_group_reset(struct mcd_client *client, const char *category,
	const char *group, long *before, long *after)
{
	struct mcd_group_reading r = { .own_inc = NULL };
	struct mcd_call call;
	char *incarnations = mcd_registry_incarnations(client), value[24];
	mcd_rc rc = mcd_group_key(client, category, group, NULL, call.key, &call.key_len);

	*before = *after = -1;
	if (!incarnations) {
		rc = MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	} else if (rc == MEMCACHED_SUCCESS && !mcd_coord_supported(client)) {
		rc = MEMCACHED_NOT_SUPPORTED;
	}
	if (rc == MEMCACHED_SUCCESS && (rc = mcd_call_begin(client, mcd_counter_pool(client), &call)) == MEMCACHED_SUCCESS) {
		rc = mcd_group_read(client, call.memc, category, group, incarnations, &r);
		if (rc == MEMCACHED_SUCCESS) {
			*before = r.counter == INT64_MIN ? 0 : (long) r.counter;
			*after = r.sum > 0 ? (long) r.sum : 0;
			snprintf(value, sizeof(value), "%llu", (unsigned long long) (MCD_GROUP_OFFSET + (uint64_t) *after));
			/* A set, on purpose: the operator's word over whatever the counter says. */
			rc = memcached_set_by_key(call.memc, call.key, call.key_len, call.key, call.key_len, value,
				strlen(value), 0, 0);
		}
		rc = mcd_call_end(client, &call, rc);
	}
	free(incarnations);
	return rc;
}
