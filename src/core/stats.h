/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * stats: per kind of operation, how many calls ended with each result and
 * how long they took. Lock-free: any number of threads count at once.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_STATS_H
#define MCD_STATS_H

#include <stdint.h>

#include "results.h"

/* The kinds of operation that are counted. */
enum mcd_op {
	MCD_OP_GET,
	MCD_OP_SET,
	MCD_OP_ADD,
	MCD_OP_REPLACE,
	MCD_OP_APPEND,
	MCD_OP_PREPEND,
	MCD_OP_DELETE,
	MCD_OP_COUNTER,
	MCD_OP_TOUCH,
	MCD_OP_MGET,
	MCD_OP_GROUP,                /* group joins, leaves and counts */
	MCD_OP_LOCK,                 /* locks taken and released */
	MCD_OP_RATE,                 /* rate checks (MCDRATE) */
	MCD_OP_COUNT,
};

/* Bounds of the time buckets: calls that took at most 100 us, 250 us, ... 2.5 s. */
#define MCD_TIME_BUCKETS 14

/* 64 bits each, also where long has 32 (armhf, i386): a busy server passes 2^32 calls in weeks,
 * and 2^32 microseconds of summed time in hours. */
struct mcd_op_stats {
	_Atomic uint64_t calls;
	_Atomic uint64_t by_result[MCD_RESULT_SLOTS];
	_Atomic uint64_t total_us;
	_Atomic uint64_t worst_us;
	_Atomic uint64_t by_time[MCD_TIME_BUCKETS + 1];  /* calls in each bucket, then those that
	                                                  * took longer than the last bound */
};

/* Shared by every client built while the module is loaded, so a reload keeps them. */
struct mcd_stats {
	struct mcd_op_stats ops[MCD_OP_COUNT];
};

/*! The name of operation op ("get", "set", ...). */
const char *mcd_op_name(enum mcd_op op);

/*! Microseconds on the monotonic clock: what a call's start is taken with. */
uint64_t mcd_now_us(void);

/*! Count one op that started at started_us (mcd_now_us) and ended with rc. Returns rc. */
mcd_rc mcd_stats_record(struct mcd_stats *stats, enum mcd_op op, uint64_t started_us, mcd_rc rc);

/*! The upper bound of time bucket i, in microseconds. */
unsigned long mcd_time_bucket_us(int i);

/*! One op's times as a consistent histogram, whatever is counted or reset meanwhile: at_most[i]
 * gets the calls that took at most bucket i's bound (cumulative, never decreasing as i grows).
 * Returns the calls timed in all, never fewer than at_most[MCD_TIME_BUCKETS - 1]: the +Inf
 * bucket and the count. Each bucket is read once; the calls count is not read. */
uint64_t mcd_stats_histogram(const struct mcd_op_stats *stats, uint64_t at_most[MCD_TIME_BUCKETS]);

/*! The calls of one op by outcome (mcd_rc_outcome of each result): out has MCD_OUTCOME_COUNT. */
void mcd_stats_outcomes(const struct mcd_op_stats *stats, uint64_t *out);

/*! Zero every count. */
void mcd_stats_reset(struct mcd_stats *stats);

#endif
