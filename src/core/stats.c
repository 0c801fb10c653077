/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * stats: counting operations, their results and their times.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdatomic.h>
#include <time.h>

#include "stats.h"

_Static_assert(sizeof(((struct mcd_op_stats *) 0)->calls) == 8, "counts of 64 bits on every build");
_Static_assert(sizeof(((struct mcd_op_stats *) 0)->total_us) == 8, "sums of 64 bits on every build");

const char *mcd_op_name(enum mcd_op op)
{
	static const char *const names[MCD_OP_COUNT] = {
		"get", "set", "add", "replace", "append", "prepend", "delete", "counter", "touch", "mget",
		"group", "lock", "rate",
	};

	return op < MCD_OP_COUNT ? names[op] : "?";
}

uint64_t mcd_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

static const unsigned long bucket_us[MCD_TIME_BUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
};

unsigned long mcd_time_bucket_us(int i)
{
	return i >= 0 && i < MCD_TIME_BUCKETS ? bucket_us[i] : 0;
}

mcd_rc mcd_stats_record(struct mcd_stats *stats, enum mcd_op op, uint64_t started_us, mcd_rc rc)
{
	struct mcd_op_stats *s;
	uint64_t took, worst;

	if (!stats) {
		return rc;
	}
	s = &stats->ops[op];
	took = mcd_now_us() - started_us;
	atomic_fetch_add(&s->calls, 1);
	atomic_fetch_add(&s->by_result[mcd_result_slot(rc)], 1);
	atomic_fetch_add(&s->total_us, took);
	for (int i = 0; i <= MCD_TIME_BUCKETS; i++) {
		if (i == MCD_TIME_BUCKETS || took <= bucket_us[i]) {
			atomic_fetch_add(&s->by_time[i], 1);
			break;
		}
	}
	worst = atomic_load(&s->worst_us);
	while (took > worst && !atomic_compare_exchange_weak(&s->worst_us, &worst, took)) {
	}
	return rc;
}

uint64_t mcd_stats_histogram(const struct mcd_op_stats *stats, uint64_t at_most[MCD_TIME_BUCKETS])
{
	uint64_t below = 0;

	/* Not calls, which a call counts before its bucket: each total here is a sum of what was
	 * read, so no bucket exceeds the next, nor the last the count, whatever ran meanwhile. */
	for (int i = 0; i < MCD_TIME_BUCKETS; i++) {
		below += atomic_load(&stats->by_time[i]);
		at_most[i] = below;
	}
	return below + atomic_load(&stats->by_time[MCD_TIME_BUCKETS]);
}

void mcd_stats_outcomes(const struct mcd_op_stats *stats, uint64_t *out)
{
	for (int i = 0; i < MCD_OUTCOME_COUNT; i++) {
		out[i] = 0;
	}
	for (int slot = 0; slot < MCD_RESULT_SLOTS; slot++) {
		uint64_t n = atomic_load(&stats->by_result[slot]);

		if (n) {
			out[mcd_rc_outcome(mcd_result_of_slot(slot))] += n;
		}
	}
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
		for (int i = 0; i <= MCD_TIME_BUCKETS; i++) {
			atomic_store(&s->by_time[i], 0);
		}
	}
}
