/*
 * The cost of call groups, measured on the core against the memcached named by
 * MCD_TEST_SERVER (host:port): a join (the first in a group, and later ones), a
 * leave, a count, and a tick of a node with GROUPS groups among NODES listed
 * nodes; then the retirement of that node by another. Prints figures; never
 * fails on them. Run by make bench (bench-here), or:
 *   harness/with-memcached.sh bench/coord_bench [GROUPS] [NODES]
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "coord.h"
#include "options.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static struct mcd_client *make_client(void)
{
	struct mcd_settings s;
	char err[256];
	struct mcd_client *c;

	mcd_settings_defaults(&s);
	if (!getenv("MCD_TEST_SERVER") || mcd_settings_apply(&s, "server", getenv("MCD_TEST_SERVER"), err, sizeof(err))
		|| mcd_settings_apply(&s, "prefixkey", "bench_", err, sizeof(err)) || mcd_settings_finish(&s, err, sizeof(err))
		|| !(c = mcd_client_create(&s, NULL, NULL, err, sizeof(err)))) {
		fprintf(stderr, "coord_bench: no client (%s): set MCD_TEST_SERVER\n", getenv("MCD_TEST_SERVER") ? err : "");
		exit(2);
	}
	return c;
}

int main(int argc, char **argv)
{
	const int groups = argc > 1 ? atoi(argv[1]) : 10000, nodes = argc > 2 ? atoi(argv[2]) : 100;
	struct mcd_client *c = make_client();
	struct mcd_coord **node = calloc((size_t) nodes, sizeof(*node));
	struct mcd_tick_report r;
	char name[64], run[32];
	double t, tick = 1e9;
	uint64_t n;

	snprintf(run, sizeof(run), "%ld", (long) time(NULL));
	mcd_flush(c);
	for (int i = 0; i < nodes; i++) {
		snprintf(name, sizeof(name), "bench%d", i);
		/* Node 0 with a lease of 2 s, for its death to be seen within the bench. */
		node[i] = mcd_coord_create(name, i ? 30 : 2);
		mcd_coord_tick(c, node[i], &r);
	}
	t = now_s();
	for (int g = 0; g < groups; g++) {
		snprintf(name, sizeof(name), "group-%s-%d", run, g);
		mcd_group_join(c, node[0], "bench", name, 0);
	}
	printf("first join into a group (lists it: registry, index, count): %.0f us\n", (now_s() - t) / groups * 1e6);
	t = now_s();
	for (int g = 0; g < groups; g++) {
		snprintf(name, sizeof(name), "group-%s-%d", run, g);
		mcd_group_join(c, node[0], "bench", name, 0);
	}
	printf("a later join (one round trip): %.0f us\n", (now_s() - t) / groups * 1e6);
	t = now_s();
	for (int g = 0; g < groups; g++) {
		snprintf(name, sizeof(name), "group-%s-%d", run, g);
		mcd_group_count(c, "bench", name, &n);
	}
	printf("a count (one round trip): %.0f us\n", (now_s() - t) / groups * 1e6);
	t = now_s();
	for (int g = 0; g < groups; g++) {
		snprintf(name, sizeof(name), "group-%s-%d", run, g);
		mcd_group_leave_noreply(c, node[0], "bench", name);
	}
	printf("a leave at hangup (sent, not waited for): %.0f us\n", (now_s() - t) / groups * 1e6);
	for (int i = 0; i < 5; i++) {
		t = now_s();
		mcd_coord_tick(c, node[0], &r);
		tick = now_s() - t < tick ? now_s() - t : tick;
	}
	printf("a tick of a node in %d groups, %d nodes listed: %.1f ms (the best of 5)\n", groups, nodes, tick * 1e3);
	/* The node dies: another retires it (ticking every 100 ms, to see when). */
	mcd_coord_destroy(node[0]);
	t = now_s();
	for (r.retired = 0; !r.retired && now_s() - t < 60; usleep(100000)) {
		mcd_coord_tick(c, node[1], &r);
	}
	printf("its death seen and its %d counts taken away by another node: %.1f s after its last tick "
		"(its lease: 2 s)\n", groups, now_s() - t);
	for (int i = 1; i < nodes; i++) {
		mcd_coord_destroy(node[i]);
	}
	free(node);
	mcd_client_destroy(c);
	return 0;
}
