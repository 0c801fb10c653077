/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * metrics: a snapshot of the module's figures as plain data, the one thing
 * res_memcached exports to other modules. res_memcached_prometheus renders
 * it on Asterisk's Prometheus endpoint; being a module of its own, it leaves
 * res_memcached free to load where res_prometheus is absent (Asterisk 16).
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_GLUE_METRICS_H
#define MCD_GLUE_METRICS_H

#include <stdint.h>

#define MCD_METRICS_OPS 16
#define MCD_METRICS_RESULTS 64
#define MCD_METRICS_BUCKETS 14
#define MCD_METRICS_SERVERS 32
#define MCD_METRICS_POOLS 3

struct mcd_metrics_result {
	const char *name;            /* as in MCDRESULT */
	const char *outcome;         /* answer, refused, error, fault, resting, overload */
	uint64_t calls;
};

struct mcd_metrics_op {
	const char *name;            /* get, set, ... as in "memcached show stats" */
	uint64_t calls;              /* calls timed: never fewer than at_most's last (+Inf, _count) */
	uint64_t total_us;
	uint64_t at_most[MCD_METRICS_BUCKETS];  /* calls that took at most bucket_us[i], cumulative */
	unsigned int result_count;
	struct mcd_metrics_result results[MCD_METRICS_RESULTS];  /* those with calls only */
};

struct mcd_metrics_server {
	char address[300];
	int up;                      /* 1 when the last calls found it answering, else 0 */
	unsigned int faults;         /* faults in a row */
};

struct mcd_metrics_pool {
	const char *name;            /* calls, counters, noreply writes */
	unsigned int in_use, peak, size;
};

struct mcd_metrics {
	unsigned int op_count;
	struct mcd_metrics_op ops[MCD_METRICS_OPS];
	unsigned long bucket_us[MCD_METRICS_BUCKETS];
	unsigned int server_count;   /* 0 when the module has no configuration */
	struct mcd_metrics_server servers[MCD_METRICS_SERVERS];
	unsigned int pool_count;
	struct mcd_metrics_pool pools[MCD_METRICS_POOLS];
	long group_members;          /* this Asterisk's MCDGROUP members */
	long locks_held;             /* the MCDLOCK locks its channels hold */
	char node[100];
};

/*! Fill metrics with the module's figures as they are now: counts, times, what the calls have
 * found of each server, the pools, groups and locks. No network. 0, or -1 before the module
 * is loaded. */
int res_memcached_metrics(struct mcd_metrics *metrics);

#endif
