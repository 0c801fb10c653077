/*
 * Unit tests of the core's coordination (src/core/coord.h): nodes (mcd_coord
 * objects) in one process sharing the real memcached named by MCD_TEST_SERVER.
 * A node "crashes" when it is destroyed: it sends nothing, as after kill -9.
 * Leases are 2 s, the shortest there is: a test that waits for a heartbeat to
 * lapse polls for a few seconds.
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "client_private.h"
#include "coord.h"
#include "options.h"

static char err[256];

static struct mcd_client *client_with(const char *option, const char *value)
{
	struct mcd_settings s;
	const char *server = getenv("MCD_TEST_SERVER");
	struct mcd_client *client;

	assert_non_null(server);
	mcd_settings_defaults(&s);
	assert_int_equal(mcd_settings_apply(&s, "server", server, err, sizeof(err)), MCD_CONFIG_OK);
	assert_int_equal(mcd_settings_apply(&s, "prefixkey", "c_", err, sizeof(err)), MCD_CONFIG_OK);
	if (option) {
		assert_int_equal(mcd_settings_apply(&s, option, value, err, sizeof(err)), MCD_CONFIG_OK);
	}
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
	client = mcd_client_create(&s, NULL, NULL, err, sizeof(err));
	assert_non_null(client);
	return client;
}

static struct mcd_client *client_for(void)
{
	return client_with(NULL, NULL);
}

/* A name no other test (or earlier run) uses. */
static void unique(char *buf, size_t len, const char *what)
{
	static int n;
	snprintf(buf, len, "%s_%d_%ld_%ld", what, n++, (long) getpid(), (long) time(NULL));
}

static uint64_t count_of(struct mcd_client *c, const char *category, const char *group)
{
	uint64_t n = 999;

	assert_int_equal(mcd_group_count(c, category, group, &n), MCD_SUCCESS);
	return n;
}

/* What the ticks of the nodes did, summed. */
static struct mcd_tick_report totals;

static void tick_all(struct mcd_client *c, struct mcd_coord **nodes, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		struct mcd_tick_report r;

		if (nodes[i]) {
			mcd_coord_tick(c, nodes[i], &r);
			totals.retired += r.retired;
			totals.corrected += r.corrected;
			totals.rebuilt += r.rebuilt;
			totals.reincarnated = totals.reincarnated || r.reincarnated;
		}
	}
}

/* Tick the nodes every 250 ms until group (category "") counts want, for at most limit_s. */
static bool ticks_reach(struct mcd_client *c, struct mcd_coord **nodes, size_t count, const char *group,
	uint64_t want, int limit_s)
{
	for (int i = 0; i < limit_s * 4; i++) {
		tick_all(c, nodes, count);
		if (count_of(c, "", group) == want) {
			return true;
		}
		usleep(250000);
	}
	return false;
}

static void groups_join_leave_and_count_with_a_limit(void **state)
{
	struct mcd_client *c = client_for();
	struct mcd_coord *a = mcd_coord_create("node_a", 30), *b = mcd_coord_create("node_b", 30);
	char group[64];
	int in = 0;

	unique(group, sizeof(group), "trunk");
	assert_int_equal(count_of(c, "", group), 0);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(mcd_group_join(c, i % 2 ? a : b, "", group, 0), MCD_SUCCESS);
	}
	/* Ten more with a limit of 15: five get in. */
	for (int i = 0; i < 10; i++) {
		mcd_rc rc = mcd_group_join(c, i % 2 ? a : b, "", group, 15);

		assert_true(rc == MCD_SUCCESS || rc == MCD_GROUP_FULL);
		in += rc == MCD_SUCCESS;
	}
	assert_int_equal(in, 5);
	assert_int_equal(count_of(c, "", group), 15);
	assert_int_equal(mcd_group_local(a, "", group) + mcd_group_local(b, "", group), 15);
	/* Leaves, confirmed (seen at once by the next count) or sent without waiting. */
	assert_int_equal(mcd_group_leave(c, a, "", group), MCD_SUCCESS);
	assert_int_equal(count_of(c, "", group), 14);
	for (long n = mcd_group_local(a, "", group); n > 0; n--) {
		assert_int_equal(mcd_group_leave_noreply(c, a, "", group), MCD_SENT);
	}
	for (long n = mcd_group_local(b, "", group); n > 0; n--) {
		assert_int_equal(mcd_group_leave_noreply(c, b, "", group), MCD_SENT);
	}
	assert_int_equal(mcd_group_leave(c, a, "", group), MCD_NOTFOUND);
	assert_int_equal(count_of(c, "", group), 0);
	/* Names: a category has no ':', nothing has a space. */
	assert_string_equal(mcd_rc_name(mcd_group_join(c, a, "a:b", group, 0)), "MEMCACHED_BAD_KEY_PROVIDED");
	assert_string_equal(mcd_rc_name(mcd_group_join(c, a, "", "with space", 0)), "MEMCACHED_BAD_KEY_PROVIDED");
	assert_string_equal(mcd_rc_name(mcd_group_join(c, a, "", "a:b", 0)), "MEMCACHED_BAD_KEY_PROVIDED");
	assert_int_equal(mcd_group_join(c, a, "", "", 0), MCD_ARGUMENT_NEEDED);
	mcd_coord_destroy(a);
	mcd_coord_destroy(b);
	mcd_client_destroy(c);
}

struct racer {
	struct mcd_client *client;
	struct mcd_coord *coord;
	const char *group;
	int joins, admitted, failed;
};

static void *race(void *arg)
{
	struct racer *r = arg;

	for (int i = 0; i < r->joins; i++) {
		mcd_rc rc = mcd_group_join(r->client, r->coord, "race", r->group, 50);

		r->admitted += rc == MCD_SUCCESS;
		r->failed += rc != MCD_SUCCESS && rc != MCD_GROUP_FULL;
	}
	return NULL;
}

static void racing_joins_on_two_nodes_admit_exactly_the_limit(void **state)
{
	struct mcd_client *c = client_for();
	struct mcd_coord *nodes[2] = { mcd_coord_create("race_a", 30), mcd_coord_create("race_b", 30) };
	pthread_t threads[8];
	struct racer racers[8];
	char group[64];
	int admitted = 0;

	unique(group, sizeof(group), "race");
	for (int i = 0; i < 8; i++) {
		racers[i] = (struct racer) { .client = c, .coord = nodes[i % 2], .group = group, .joins = 25 };
		assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(threads[i], NULL);
		admitted += racers[i].admitted;
		assert_int_equal(racers[i].failed, 0);
	}
	/* 200 joins for 50 places: exactly 50, and the counter says so. */
	assert_int_equal(admitted, 50);
	assert_int_equal(count_of(c, "race", group), 50);
	assert_int_equal(mcd_group_local(nodes[0], "race", group) + mcd_group_local(nodes[1], "race", group), 50);
	mcd_coord_destroy(nodes[0]);
	mcd_coord_destroy(nodes[1]);
	mcd_client_destroy(c);
}

/* The first failure: a node joins an idle group, is killed before any tick of its
 * own, and restarts under the same name. Its member is taken away once, after its lease. */
static void a_node_killed_right_after_its_first_join_is_retired_once(void **state)
{
	struct mcd_client *c = client_for();
	struct mcd_coord *nodes[3] = { mcd_coord_create("crash_a", 2), mcd_coord_create("crash_b", 2), NULL };
	char alone[64], shared[64];

	totals = (struct mcd_tick_report) { .retired = 0 };
	unique(alone, sizeof(alone), "e2001");
	unique(shared, sizeof(shared), "trunk");
	tick_all(c, nodes, 2);
	nodes[2] = mcd_coord_create("crash_c", 2);
	assert_int_equal(mcd_group_join(c, nodes[2], "", alone, 1), MCD_SUCCESS);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(mcd_group_join(c, nodes[i % 3], "", shared, 0), MCD_SUCCESS);
	}
	assert_int_equal(mcd_group_join(c, nodes[0], "", alone, 1), MCD_GROUP_FULL);
	mcd_coord_destroy(nodes[2]);
	/* Restarted with the same node id: a new incarnation, which retires the old one too. */
	nodes[2] = mcd_coord_create("crash_c", 2);
	assert_true(ticks_reach(c, nodes, 3, alone, 0, 10));
	assert_true(ticks_reach(c, nodes, 3, shared, 4, 2));
	/* Once: more ticks take nothing more away. */
	for (int i = 0; i < 8; i++) {
		tick_all(c, nodes, 3);
		usleep(250000);
	}
	assert_int_equal(count_of(c, "", shared), 4);
	assert_int_equal(totals.retired, 1);
	assert_int_equal(totals.corrected, 0);
	assert_int_equal(mcd_group_join(c, nodes[2], "", alone, 1), MCD_SUCCESS);
	for (int i = 0; i < 3; i++) {
		mcd_coord_destroy(nodes[i]);
	}
	mcd_client_destroy(c);
}

static void counts_come_back_after_memcached_forgets(void **state)
{
	struct mcd_client *c = client_for();
	struct mcd_coord *nodes[2] = { mcd_coord_create("forget_a", 2), mcd_coord_create("forget_b", 2) };
	char group[64];

	totals = (struct mcd_tick_report) { .retired = 0 };
	unique(group, sizeof(group), "forget");
	for (int i = 0; i < 7; i++) {
		assert_int_equal(mcd_group_join(c, nodes[i < 4 ? 0 : 1], "", group, 0), MCD_SUCCESS);
	}
	tick_all(c, nodes, 2);
	/* As after a restart of memcached: everything gone, the registry too. */
	assert_int_equal(mcd_flush(c), MCD_SUCCESS);
	assert_int_equal(count_of(c, "", group), 0);
	assert_true(ticks_reach(c, nodes, 2, group, 7, 10));
	assert_true(totals.rebuilt >= 1);
	/* And the members go as they leave: the counts came back with them. */
	for (int i = 0; i < 7; i++) {
		assert_int_equal(mcd_group_leave(c, nodes[i < 4 ? 0 : 1], "", group), MCD_SUCCESS);
	}
	assert_int_equal(count_of(c, "", group), 0);
	mcd_coord_destroy(nodes[0]);
	mcd_coord_destroy(nodes[1]);
	mcd_client_destroy(c);
}

/* A counter lost alone (evicted: outside the design, where memcached runs with -M): the join
 * that finds it missing makes it again with itself, and the node repairs it at its ticks. */
static void a_counter_lost_alone_is_repaired_by_the_node_that_found_it(void **state)
{
	struct mcd_client *c = client_for(), *own = client_with("prefixkey", "c_" MCD_OWN_KEY_PREFIX);
	struct mcd_coord *nodes[2] = { mcd_coord_create("lost_a", 2), mcd_coord_create("lost_b", 2) };
	char group[64], counter[96];

	totals = (struct mcd_tick_report) { .retired = 0 };
	unique(group, sizeof(group), "lost");
	for (int i = 0; i < 5; i++) {
		assert_int_equal(mcd_group_join(c, nodes[i % 2], "", group, 0), MCD_SUCCESS);
	}
	tick_all(c, nodes, 2);
	snprintf(counter, sizeof(counter), "g::%s", group);
	assert_int_equal(mcd_delete(own, counter), MCD_SUCCESS);
	assert_int_equal(mcd_group_join(c, nodes[0], "", group, 6), MCD_SUCCESS);
	assert_true(ticks_reach(c, nodes, 2, group, 6, 5));
	assert_int_equal(totals.corrected, 1);
	assert_int_equal(mcd_group_join(c, nodes[1], "", group, 6), MCD_GROUP_FULL);
	/* Repaired once: more ticks change nothing. */
	for (int i = 0; i < 6; i++) {
		tick_all(c, nodes, 2);
	}
	assert_int_equal(count_of(c, "", group), 6);
	mcd_coord_destroy(nodes[0]);
	mcd_coord_destroy(nodes[1]);
	mcd_client_destroy(own);
	mcd_client_destroy(c);
}

/* A node whose ticks stop for longer than its lease is retired while alive: at its next tick
 * it counts its members again, under a new incarnation. */
static void a_stalled_node_is_retired_and_counts_again(void **state)
{
	struct mcd_client *c = client_for();
	struct mcd_coord *nodes[2] = { mcd_coord_create("stall_a", 2), mcd_coord_create("stall_b", 2) };
	char group[64], before[120], after[120];

	totals = (struct mcd_tick_report) { .retired = 0 };
	unique(group, sizeof(group), "stall");
	tick_all(c, nodes, 2);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(mcd_group_join(c, nodes[0], "", group, 0), MCD_SUCCESS);
	}
	assert_int_equal(mcd_group_join(c, nodes[1], "", group, 0), MCD_SUCCESS);
	mcd_coord_self(nodes[0], before, sizeof(before));
	/* Only b ticks: a's members are taken away once its heartbeat lapses. */
	assert_true(ticks_reach(c, &nodes[1], 1, group, 1, 10));
	tick_all(c, nodes, 1);
	assert_true(totals.reincarnated);
	mcd_coord_self(nodes[0], after, sizeof(after));
	assert_string_not_equal(before, after);
	assert_int_equal(count_of(c, "", group), 4);
	assert_int_equal(mcd_group_leave(c, nodes[0], "", group), MCD_SUCCESS);
	assert_int_equal(count_of(c, "", group), 3);
	mcd_coord_destroy(nodes[0]);
	mcd_coord_destroy(nodes[1]);
	mcd_client_destroy(c);
}

/* Joins and leaves with ticks between, on three nodes: no failure, so nothing is corrected. */
static void nothing_is_corrected_where_nothing_failed(void **state)
{
	struct mcd_client *c = client_for();
	struct mcd_coord *nodes[3] = { mcd_coord_create("calm_a", 2), mcd_coord_create("calm_b", 2),
		mcd_coord_create("calm_c", 2) };
	char groups[4][64];
	long members[4] = { 0 };

	totals = (struct mcd_tick_report) { .retired = 0 };
	for (int g = 0; g < 4; g++) {
		unique(groups[g], sizeof(groups[g]), "calm");
	}
	srand(7);
	for (int step = 0; step < 600; step++) {
		int g = rand() % 4, n = rand() % 3;

		if (rand() % 2 && mcd_group_join(c, nodes[n], "", groups[g], 5) == MCD_SUCCESS) {
			members[g]++;
		} else if (mcd_group_local(nodes[n], "", groups[g]) > 0) {
			assert_int_equal(mcd_group_leave_noreply(c, nodes[n], "", groups[g]), MCD_SENT);
			members[g]--;
		}
		if (step % 50 == 0) {
			tick_all(c, nodes, 3);
		}
		assert_true(members[g] <= 5);
	}
	tick_all(c, nodes, 3);
	for (int g = 0; g < 4; g++) {
		assert_int_equal(count_of(c, "", groups[g]), members[g]);
	}
	assert_int_equal(totals.corrected + totals.rebuilt + totals.retired, 0);
	for (int i = 0; i < 3; i++) {
		mcd_coord_destroy(nodes[i]);
	}
	mcd_client_destroy(c);
}

struct seen {
	char names[16][200];
	long cluster[16];
	int count;
};

static void note_group(const struct mcd_group_report *r, void *arg)
{
	struct seen *s = arg;

	if (s->count < 16) {
		snprintf(s->names[s->count], sizeof(s->names[0]), "%s:%s", r->category, r->group);
		s->cluster[s->count++] = r->cluster;
	}
}

/* Every group another node uses is shown, with its count, from that node's first join. */
static void the_census_shows_other_nodes_groups_and_a_reset_repairs_one(void **state)
{
	struct mcd_client *c = client_for(), *own = client_with("prefixkey", "c_" MCD_OWN_KEY_PREFIX);
	struct mcd_coord *a = mcd_coord_create("census_a", 30), *b = mcd_coord_create("census_b", 30);
	char group[64], counter[120], wanted[100];
	struct seen seen = { .count = 0 };
	long before, after;
	uint64_t value;

	/* A fresh registry: earlier tests left other groups in it. */
	assert_int_equal(mcd_flush(c), MCD_SUCCESS);
	unique(group, sizeof(group), "census");
	mcd_coord_tick(c, a, &totals);
	mcd_coord_tick(c, b, &totals);
	assert_int_equal(mcd_group_join(c, b, "ext", group, 0), MCD_SUCCESS);
	assert_int_equal(mcd_coord_groups(c, a, note_group, &seen, 100), 1);
	snprintf(wanted, sizeof(wanted), "ext:%s", group);
	assert_string_equal(seen.names[0], wanted);
	assert_int_equal(seen.cluster[0], 1);
	/* Something outside the design: the counter stepped by another client. */
	snprintf(counter, sizeof(counter), "g:ext:%s", group);
	assert_int_equal(mcd_counter_add(own, counter, 3, 0, &value), MCD_SUCCESS);
	assert_int_equal(count_of(c, "ext", group), 4);
	assert_int_equal(mcd_group_reset(c, "ext", group, &before, &after), MCD_SUCCESS);
	assert_int_equal(before, 4);
	assert_int_equal(after, 1);
	assert_int_equal(count_of(c, "ext", group), 1);
	mcd_coord_destroy(a);
	mcd_coord_destroy(b);
	mcd_client_destroy(own);
	mcd_client_destroy(c);
}

/* Where a key may move to another server, a counter or a lock could be in two places. */
static void groups_and_locks_refuse_to_run_where_keys_move(void **state)
{
	struct mcd_client *c = client_with("remove_failed_servers", "yes");
	struct mcd_coord *a = mcd_coord_create("moving_a", 30);
	char token[MCD_TOKEN_MAX];
	uint64_t n;

	assert_string_equal(mcd_rc_name(mcd_group_join(c, a, "", "g", 0)), "MEMCACHED_NOT_SUPPORTED");
	assert_string_equal(mcd_rc_name(mcd_group_count(c, "", "g", &n)), "MEMCACHED_NOT_SUPPORTED");
	assert_string_equal(mcd_rc_name(mcd_lock(c, a, "l", 5, 0, "x", token)), "MEMCACHED_NOT_SUPPORTED");
	mcd_coord_destroy(a);
	mcd_client_destroy(c);
}

static void locks_are_released_only_by_their_owner(void **state)
{
	struct mcd_client *c = client_for();
	struct mcd_coord *a = mcd_coord_create("lock_a", 30), *b = mcd_coord_create("lock_b", 30);
	char name[64], first[MCD_TOKEN_MAX], second[MCD_TOKEN_MAX];
	long members, locks;

	unique(name, sizeof(name), "lock");
	assert_int_equal(mcd_lock(c, a, name, 60, 0, "SIP/a-1", first), MCD_SUCCESS);
	assert_int_equal(mcd_lock_check(c, name, first), MCD_SUCCESS);
	assert_int_equal(mcd_lock(c, b, name, 60, 0, "SIP/b-1", second), MCD_LOCK_BUSY);
	/* Waiting 300 ms does not help while it is held... */
	assert_int_equal(mcd_lock(c, b, name, 60, 300, "SIP/b-1", second), MCD_LOCK_BUSY);
	mcd_coord_totals(a, &members, &locks);
	assert_int_equal(locks, 1);
	/* ...a release does, and the other owner's token cannot release it. */
	assert_int_equal(mcd_unlock(c, b, name, "lock_b 1 SIP/b-1"), MCD_NOT_LOCKED);
	assert_int_equal(mcd_unlock(c, a, name, first), MCD_SUCCESS);
	assert_int_equal(mcd_lock_check(c, name, first), MCD_NOT_LOCKED);
	assert_int_equal(mcd_lock(c, b, name, 1, 0, "SIP/b-1", second), MCD_SUCCESS);
	/* b's lock expires after a second and a takes it: b's late release leaves it with a, and
	 * b's check says it lost it. */
	usleep(2100000);
	assert_int_equal(mcd_lock(c, a, name, 60, 0, "SIP/a-2", first), MCD_SUCCESS);
	assert_int_equal(mcd_lock_check(c, name, second), MCD_NOT_LOCKED);
	assert_int_equal(mcd_unlock(c, b, name, second), MCD_NOT_LOCKED);
	assert_int_equal(mcd_lock(c, b, name, 60, 0, "SIP/b-2", second), MCD_LOCK_BUSY);
	assert_int_equal(mcd_unlock(c, a, name, first), MCD_SUCCESS);
	assert_int_equal(mcd_lock(c, a, "", 60, 0, "x", first), MCD_ARGUMENT_NEEDED);
	mcd_coord_destroy(a);
	mcd_coord_destroy(b);
	mcd_client_destroy(c);
}

static void a_lock_longer_than_30_days_is_held(void **state)
{
	struct mcd_client *c = client_for();
	struct mcd_coord *a = mcd_coord_create("long_a", 30), *b = mcd_coord_create("long_b", 30);
	char name[64], first[MCD_TOKEN_MAX], second[MCD_TOKEN_MAX];

	/* Sent as 40 days, memcached would read a date in 1970 and drop it at once. */
	unique(name, sizeof(name), "long");
	assert_int_equal(mcd_lock(c, a, name, 40L * 24 * 3600, 0, "SIP/a-1", first), MCD_SUCCESS);
	assert_int_equal(mcd_lock(c, b, name, 60, 0, "SIP/b-1", second), MCD_LOCK_BUSY);
	assert_int_equal(mcd_unlock(c, a, name, first), MCD_SUCCESS);
	mcd_coord_destroy(a);
	mcd_coord_destroy(b);
	mcd_client_destroy(c);
}

/* A memcached of the test's own, on a free port: its pid (to stop and continue it) and port. */
static pid_t own_memcached(char *port, size_t len)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t addr_len = sizeof(addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	pid_t pid;

	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *) &addr, sizeof(addr)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *) &addr, &addr_len), 0);
	close(fd);
	snprintf(port, len, "%d", ntohs(addr.sin_port));
	if ((pid = fork()) == 0) {
		execlp("memcached", "memcached", "-u", "nobody", "-l", "127.0.0.1", "-p", port, "-U", "0", (char *) NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		bool up;

		fd = socket(AF_INET, SOCK_STREAM, 0);
		up = connect(fd, (struct sockaddr *) &addr, sizeof(addr)) == 0;
		close(fd);
		if (up) {
			return pid;
		}
		usleep(10000);
	}
	fail_msg("memcached did not start");
	return pid;
}

/* SIGSTOP is delivered on the way: wait until the process shows stopped ("T" in /proc). */
static void stop_process(pid_t pid)
{
	char path[64], stat[256];

	kill(pid, SIGSTOP);
	snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
	for (int i = 0; i < 200; i++) {
		FILE *f = fopen(path, "r");
		char *state = f && fgets(stat, sizeof(stat), f) ? strrchr(stat, ')') : NULL;

		if (f) {
			fclose(f);
		}
		if (state && (state[2] == 'T' || state[2] == 't')) {
			return;
		}
		usleep(5000);
	}
	fail_msg("memcached did not stop");
}

/* The add reaches memcached but its answer does not come in time (memcached stopped with
 * SIGSTOP, then continued): memcached stores the lock for nobody. The tick releases it. */
static void a_lock_whose_add_timed_out_is_released_by_the_tick(void **state)
{
	char port[16], server[32], token[MCD_TOKEN_MAX], other[MCD_TOKEN_MAX];
	pid_t pid = own_memcached(port, sizeof(port));
	struct mcd_client *c;
	struct mcd_coord *a = mcd_coord_create("orphan_a", 30), *b = mcd_coord_create("orphan_b", 30);
	struct mcd_settings s;
	struct mcd_tick_report r;
	mcd_rc rc = MCD_LOCK_BUSY;

	snprintf(server, sizeof(server), "127.0.0.1:%s", port);
	mcd_settings_defaults(&s);
	assert_int_equal(mcd_settings_apply(&s, "server", server, err, sizeof(err)), MCD_CONFIG_OK);
	assert_int_equal(mcd_settings_apply(&s, "timeout", "200", err, sizeof(err)), MCD_CONFIG_OK);
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
	assert_non_null(c = mcd_client_create(&s, NULL, NULL, err, sizeof(err)));
	/* A first call opens the connection while memcached answers. */
	assert_int_equal(mcd_lock(c, b, "warm", 60, 0, "x", other), MCD_SUCCESS);
	stop_process(pid);
	assert_string_equal(mcd_rc_name(mcd_lock(c, a, "orphan", 600, 0, "SIP/a-1", token)), "MEMCACHED_TIMEOUT");
	kill(pid, SIGCONT);
	/* memcached stored it on waking: a lock nobody holds, for 600 s... */
	for (int i = 0; i < 50 && (rc = mcd_lock(c, b, "orphan", 60, 0, "SIP/b-1", other)) != MCD_LOCK_BUSY; i++) {
		usleep(100000);
	}
	assert_int_equal(rc, MCD_LOCK_BUSY);
	/* ...until a's tick releases it. */
	for (int i = 0; i < 50 && (rc = mcd_lock(c, b, "orphan", 60, 0, "SIP/b-1", other)) == MCD_LOCK_BUSY; i++) {
		mcd_coord_tick(c, a, &r);
		usleep(100000);
	}
	assert_int_equal(rc, MCD_SUCCESS);
	assert_int_equal(mcd_lock_check(c, "orphan", other), MCD_SUCCESS);
	mcd_coord_destroy(a);
	mcd_coord_destroy(b);
	mcd_client_destroy(c);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(groups_join_leave_and_count_with_a_limit),
		cmocka_unit_test(racing_joins_on_two_nodes_admit_exactly_the_limit),
		cmocka_unit_test(a_node_killed_right_after_its_first_join_is_retired_once),
		cmocka_unit_test(counts_come_back_after_memcached_forgets),
		cmocka_unit_test(a_counter_lost_alone_is_repaired_by_the_node_that_found_it),
		cmocka_unit_test(a_stalled_node_is_retired_and_counts_again),
		cmocka_unit_test(nothing_is_corrected_where_nothing_failed),
		cmocka_unit_test(the_census_shows_other_nodes_groups_and_a_reset_repairs_one),
		cmocka_unit_test(groups_and_locks_refuse_to_run_where_keys_move),
		cmocka_unit_test(locks_are_released_only_by_their_owner),
		cmocka_unit_test(a_lock_longer_than_30_days_is_held),
		cmocka_unit_test(a_lock_whose_add_timed_out_is_released_by_the_tick),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
