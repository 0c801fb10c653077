/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * metrics: the module's figures as a snapshot for res_memcached_prometheus
 * (see metrics.h). Reads what the module already knows: a scrape never
 * waits on the network.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include "asterisk.h"

#include <stdatomic.h>

#include "asterisk/astobj2.h"
#include "asterisk/utils.h"

#include "glue/internal.h"
#include "glue/metrics.h"

_Static_assert(MCD_METRICS_OPS >= MCD_OP_COUNT, "room for every operation");
_Static_assert(MCD_METRICS_RESULTS >= MCD_RESULT_SLOTS, "room for every result");
_Static_assert(MCD_METRICS_BUCKETS == MCD_TIME_BUCKETS, "the same buckets");
_Static_assert(MCD_METRICS_SERVERS >= MCD_MAX_SERVERS, "room for every server");
_Static_assert(MCD_METRICS_POOLS == MCD_POOL_KINDS, "every pool");

static void take_op(struct mcd_metrics_op *out, enum mcd_op op, const struct mcd_op_stats *s)
{
	out->name = mcd_op_name(op);
	/* The count comes with the buckets, so that the histogram holds in every scrape. */
	out->calls = mcd_stats_histogram(s, out->at_most);
	out->total_us = atomic_load(&s->total_us);
	out->result_count = 0;
	for (int slot = 0; slot < MCD_RESULT_SLOTS; slot++) {
		uint64_t n = atomic_load(&s->by_result[slot]);
		mcd_rc rc = mcd_result_of_slot(slot);

		if (n) {
			out->results[out->result_count++] = (struct mcd_metrics_result) {
				.name = mcd_rc_name(rc), .outcome = mcd_outcome_name(mcd_rc_outcome(rc)), .calls = n,
			};
		}
	}
}

/* The one symbol other modules see: res_memcached_prometheus links against it. */
__attribute__((visibility("default")))
int res_memcached_metrics(struct mcd_metrics *metrics)
{
	RAII_VAR(struct mcd_live *, live, mcd_live_get(), ao2_cleanup);
	struct mcd_pool_usage usage[MCD_POOL_KINDS];
	struct mcd_coord *coord = mcd_coordination();

	memset(metrics, 0, sizeof(*metrics));
	metrics->op_count = MCD_OP_COUNT;
	for (int op = 0; op < MCD_OP_COUNT; op++) {
		take_op(&metrics->ops[op], op, &mcd_module_stats()->ops[op]);
	}
	for (int i = 0; i < MCD_TIME_BUCKETS; i++) {
		metrics->bucket_us[i] = mcd_time_bucket_us(i);
	}
	if (coord) {
		mcd_coord_totals(coord, &metrics->group_members, &metrics->locks_held);
		mcd_coord_node(coord, metrics->node, sizeof(metrics->node));
	}
	if (!live) {
		return -1;
	}
	for (unsigned int i = 0; i < mcd_client_settings(live->client)->server_count; i++) {
		struct mcd_metrics_server *server = &metrics->servers[metrics->server_count++];
		struct mcd_server_health health;
		char address[MCD_ADDRESS_LEN];

		mcd_server_health(live->client, i, &health);
		ast_copy_string(server->address, mcd_server_address(&mcd_client_settings(live->client)->servers[i],
			address), sizeof(server->address));
		server->faults = health.faults;
		server->up = !health.resting && !health.other_protocol && !health.faults;
	}
	mcd_client_pool_usage(live->client, usage);
	for (int kind = 0; kind < MCD_POOL_KINDS; kind++) {
		if (usage[kind].exists) {
			metrics->pools[metrics->pool_count++] = (struct mcd_metrics_pool) {
				.name = mcd_pool_name(kind), .in_use = usage[kind].in_use, .peak = usage[kind].peak,
				.size = usage[kind].size,
			};
		}
	}
	return 0;
}
