/*
 * A seeded, randomised simulation of a cluster of Asterisk servers sharing call
 * groups: NODES nodes (mcd_coord objects, as many Asterisks would run them) in
 * one process, against a real memcached that the simulation starts, restarts
 * and flushes itself. Each round has three stretches:
 *   chaos:  joins (some refused), leaves, ticks on each node's cadence, and
 *           failures: a node killed (and restarted later under its name), a
 *           node stalled longer than its lease, memcached flushed or killed
 *           and restarted;
 *   heal:   joins, leaves and ticks only, until every group's count is the
 *           truth again (the members of the living nodes), which must happen
 *           within the README's bound after the last failure (its end: a
 *           stall's, a restart's);
 *   quiet:  joins, leaves and ticks: nothing may be corrected, rebuilt or
 *           retired, and every count stays the truth.
 * Throughout, a join admitted past its limit is a failure, except in the
 * windows the README names: memcached lost the group (a lease and a second
 * after: every node ticked, and repaired what leaves sent meanwhile did); a
 * node stalled past its lease (until a lease after it resumes).
 * Time is the simulation's own, one step (a join or a leave) a millisecond:
 * what happens at each step depends on the seed alone, and the run waits for
 * the real clock to catch up with it (memcached's expiries are real); the
 * nodes due to tick at a step tick at once, each on a thread. The seed is
 * printed first: --seed N replays the same schedule (what memcached's clock
 * does meanwhile may differ). --trace prints each failure as it happens.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "coord.h"
#include "options.h"

struct node {
	struct mcd_coord *coord;
	char name[32];
	long *members;               /* per group: the calls this node has in it (the truth) */
	bool alive;
	int64_t next_tick_ms;
	int64_t restart_at_ms;       /* when a killed node comes back */
	int64_t stalled_until_ms;    /* no ticks before this */
	int64_t unsafe_until_ms;     /* a stall's window: until a lease after it ends */
	bool ticked_since_flush;     /* not killed before: a flush leaves connections as they are, so
	                              * nothing tells the node before its tick (the README says so) */
};

static struct {
	unsigned int seed;
	int nodes, groups, rounds;
	long lease_s;
	int chaos_ms, quiet_ms;
	int failure_ms;              /* the least time between two failures (then one in 300 steps) */
	bool trace;
	int watch;                   /* a group whose every change --trace prints (-1: none) */
	const char *port;
} opt = { .nodes = 5, .groups = 40, .rounds = 2, .lease_s = 2, .chaos_ms = 3000, .quiet_ms = 2500, .failure_ms = 300,
	.watch = -1 };

static struct node *nodes;
static struct mcd_client *client, *reader;
static char (*group_names)[32];
static uint64_t *limits;
static pid_t memcached_pid;
static struct mcd_tick_report stretch;  /* what the ticks did in the current stretch */
static int64_t unsafe_until_ms;         /* memcached lost groups: joins may pass a limit until then */
static long admitted, refused, failed_calls, over_in_windows, failures;
/* The real time the last failure ended (a kill, a flush; a stall's end, a restart): heal times
 * are real, as memcached's expiries are. */
static int64_t failure_end_real_ms;

static int64_t real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The simulation's clock: a millisecond a step; real time is let catch up with it. */
static int64_t sim_ms, real_base_ms;

static int64_t now_ms(void)
{
	return sim_ms;
}

static void step_clock(void)
{
	int64_t ahead;

	sim_ms++;
	if ((ahead = sim_ms - (real_ms() - real_base_ms)) > 0) {
		usleep((useconds_t) ahead * 1000);
	}
}

static void trace(const char *fmt, ...)
{
	va_list ap;

	if (opt.trace) {
		va_start(ap, fmt);
		printf("  %7lld ms  ", (long long) sim_ms);
		vprintf(fmt, ap);
		printf("\n");
		va_end(ap);
	}
}

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "FAILED (seed %u) at %lld ms: ", opt.seed, (long long) sim_ms);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nreplay: tests/unit/cluster_sim --port PORT --seed %u --nodes %d --groups %d --rounds %d "
		"--lease %ld\nsimulation: 0 passed, 1 failed\n", opt.seed, opt.nodes, opt.groups, opt.rounds, opt.lease_s);
	if (memcached_pid > 0) {
		kill(memcached_pid, SIGKILL);
		waitpid(memcached_pid, NULL, 0);
	}
	exit(1);
}

static void start_memcached(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t) atoi(opt.port)) };

	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	if ((memcached_pid = fork()) == 0) {
		/* -M: an item is never evicted for room (the README asks this of memcached for groups). */
		execlp("memcached", "memcached", "-u", "nobody", "-l", "127.0.0.1", "-p", opt.port, "-U", "0",
			"-m", "1024", "-M", "-c", "4096", (char *) NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		bool up = connect(fd, (struct sockaddr *) &addr, sizeof(addr)) == 0;

		close(fd);
		if (up) {
			return;
		}
		usleep(10000);
	}
	die("memcached did not start on port %s", opt.port);
}

static void stop_memcached(void)
{
	kill(memcached_pid, SIGKILL);
	waitpid(memcached_pid, NULL, 0);
	memcached_pid = 0;
}

static struct mcd_client *make_client(const char *prefix)
{
	struct mcd_settings s;
	char server[64], err[256];
	struct mcd_client *c;

	snprintf(server, sizeof(server), "127.0.0.1:%s", opt.port);
	mcd_settings_defaults(&s);
	if (mcd_settings_apply(&s, "server", server, err, sizeof(err)) != MCD_CONFIG_OK
		|| mcd_settings_apply(&s, "prefixkey", prefix, err, sizeof(err)) != MCD_CONFIG_OK
		|| mcd_settings_apply(&s, "timeout", "500", err, sizeof(err)) != MCD_CONFIG_OK
		|| mcd_settings_finish(&s, err, sizeof(err)) || !(c = mcd_client_create(&s, NULL, NULL, err, sizeof(err)))) {
		die("client: %s", err);
	}
	return c;
}

static long truth(int g)
{
	long sum = 0;

	for (int n = 0; n < opt.nodes; n++) {
		sum += nodes[n].alive ? nodes[n].members[g] : 0;
	}
	return sum;
}

static bool unsafe(int64_t now)
{
	if (now < unsafe_until_ms) {
		return true;
	}
	for (int n = 0; n < opt.nodes; n++) {
		if (nodes[n].alive && now < nodes[n].unsafe_until_ms) {
			return true;
		}
	}
	return false;
}

/* With --watch, what changed the watched group's counter, as it happens. */
static void watch(const char *what)
{
	static int64_t last = INT64_MIN;
	uint64_t count = 0;
	int64_t members;

	if (opt.watch < 0) {
		return;
	}
	members = mcd_group_count(client, "sim", group_names[opt.watch], &count) == MCD_SUCCESS ? (int64_t) count : -1;
	if (members != last) {
		trace("%s: %s now counts %lld (truth %ld)", what, group_names[opt.watch], (long long) members,
			truth(opt.watch));
		last = members;
	}
}

static void start_node(struct node *n, int64_t now)
{
	if (!(n->coord = mcd_coord_create(n->name, opt.lease_s))) {
		die("out of memory");
	}
	/* Idle groups leave the index after a second: unlisting races with joins all the time. */
	mcd_coord_set_unlist_after(n->coord, 1);
	memset(n->members, 0, (size_t) opt.groups * sizeof(long));
	n->alive = true;
	n->next_tick_ms = now;
	n->stalled_until_ms = 0;
	n->unsafe_until_ms = 0;
	n->ticked_since_flush = true;
}

/* Each living node ticks on its cadence (lease/4), unless stalled. */
/* A tick, on a thread of its own: the nodes due tick at once, as Asterisks do, each in its own
 * process. (In one thread, 50 nodes putting back thousands of groups after a memcached restart
 * would tick one after the other, and the last ones' heartbeats lapse meanwhile.) */
struct due {
	pthread_t thread;
	struct node *node;
	struct mcd_tick_report report;
};

static void *tick_one(void *arg)
{
	struct due *d = arg;

	mcd_coord_tick(client, d->node->coord, &d->report);
	return NULL;
}

static void tick_due(int64_t now)
{
	struct due *due = calloc((size_t) opt.nodes, sizeof(*due));
	int count = 0;

	for (int i = 0; due && i < opt.nodes; i++) {
		struct node *n = &nodes[i];

		if (!n->alive && n->restart_at_ms && now >= n->restart_at_ms) {
			start_node(n, now);
			n->restart_at_ms = 0;
			failure_end_real_ms = real_ms();
		}
		if (!n->alive || now < n->stalled_until_ms || now < n->next_tick_ms) {
			continue;
		}
		if (n->stalled_until_ms) {
			n->stalled_until_ms = 0;
			failure_end_real_ms = real_ms();
		}
		due[count].node = n;
		if (pthread_create(&due[count].thread, NULL, tick_one, &due[count])) {
			die("no thread for a tick");
		}
		count++;
	}
	for (int i = 0; i < count; i++) {
		struct node *n = due[i].node;
		const struct mcd_tick_report *r = &due[i].report;

		pthread_join(due[i].thread, NULL);
		n->ticked_since_flush = true;
		if (opt.watch >= 0) {
			char what[64];

			snprintf(what, sizeof(what), "%s tick", n->name);
			watch(what);
		}
		if (r->retired || r->rebuilt || r->corrected || r->reincarnated) {
			trace("%s tick: %u retired, %u made again, %u repaired%s", n->name, r->retired, r->rebuilt,
				r->corrected, r->reincarnated ? ", counting again as a new incarnation" : "");
		}
		n->next_tick_ms = now + opt.lease_s * 250;
		stretch.retired += r->retired;
		stretch.corrected += r->corrected;
		stretch.rebuilt += r->rebuilt;
		stretch.reincarnated = stretch.reincarnated || r->reincarnated;
	}
	free(due);
}

static void join_or_leave(int64_t now)
{
	int i = rand() % opt.nodes, g = rand() % opt.groups;
	struct node *n = &nodes[i];

	if (!n->alive) {
		return;
	}
	if (rand() % 100 < 55) {
		mcd_rc rc = mcd_group_join(client, n->coord, "sim", group_names[g], limits[g]);

		if (rc == MCD_SUCCESS) {
			n->members[g]++;
			admitted++;
			if ((uint64_t) truth(g) > limits[g]) {
				if (!unsafe(now)) {
					uint64_t count = 0;

					mcd_group_count(client, "sim", group_names[g], &count);
					for (int k = 0; k < opt.nodes; k++) {
						printf("  %s: %s, %ld members here\n", nodes[k].name, nodes[k].alive ? "alive" : "dead",
							nodes[k].members[g]);
					}
					printf("  the counter says %llu\n", (unsigned long long) count);
					die("group %s admitted %ld calls, over its limit of %llu, with no failure window open",
						group_names[g], truth(g), (unsigned long long) limits[g]);
				}
				over_in_windows++;
			}
		} else {
			refused += rc == MCD_GROUP_FULL;
			failed_calls += rc != MCD_GROUP_FULL;
		}
	} else if (n->members[g] > 0) {
		/* The call ends whatever memcached answers. */
		failed_calls += mcd_group_leave_noreply(client, n->coord, "sim", group_names[g]) != MCD_SENT;
		n->members[g]--;
	}
	if (g == opt.watch) {
		char what[64];

		snprintf(what, sizeof(what), "%s join or leave (%ld here)", n->name, n->members[g]);
		watch(what);
	}
	if (mcd_group_local(n->coord, "sim", group_names[g]) != n->members[g]) {
		die("node %s counts %ld members of %s here, the truth is %ld", n->name,
			mcd_group_local(n->coord, "sim", group_names[g]), group_names[g], n->members[g]);
	}
}

/* One failure, at random. */
static void fail(int64_t now)
{
	int kind = rand() % 5, i = rand() % opt.nodes;
	struct node *n = &nodes[i];

	failures++;
	failure_end_real_ms = real_ms();
	if (kind <= 1 && n->alive && n->ticked_since_flush) {
		/* kill -9: nothing sent; its calls are gone; back under its name, or later. */
		mcd_coord_destroy(n->coord);
		n->coord = NULL;
		n->alive = false;
		n->restart_at_ms = now + rand() % (opt.lease_s * 1000 + 1);
		trace("%s killed, back at %lld ms", n->name, (long long) n->restart_at_ms);
	} else if (kind == 2 && n->alive) {
		/* Longer than the lease: the cluster retires it while its calls go on. */
		n->stalled_until_ms = now + opt.lease_s * 1000 + 1500;
		n->unsafe_until_ms = n->stalled_until_ms + opt.lease_s * 1000;
		trace("%s stalled until %lld ms", n->name, (long long) n->stalled_until_ms);
	} else if (kind == 3) {
		for (int k = 0; k < opt.nodes; k++) {
			nodes[k].ticked_since_flush = false;
		}
		mcd_flush(client);
		unsafe_until_ms = now + opt.lease_s * 1000 + 1000;
		trace("memcached flushed");
	} else if (kind == 4) {
		int down_ms = rand() % 300;

		stop_memcached();
		usleep((useconds_t) down_ms * 1000);
		start_memcached();
		unsafe_until_ms = now + opt.lease_s * 1000 + 1000;
		trace("memcached killed, back after %d ms", down_ms);
	}
}

/* The first group whose count is not the truth, or -1. The counters are read as another
 * application would, many at a time, through a client whose prefix is the module's namespace. */
static int first_wrong(int64_t *count)
{
	struct mcd_mget_item items[MCD_MGET_MAX];
	char keys[MCD_MGET_MAX][64];

	for (int first = 0; first < opt.groups; first += MCD_MGET_MAX) {
		int n = opt.groups - first < MCD_MGET_MAX ? opt.groups - first : MCD_MGET_MAX, wrong = -1;

		for (int i = 0; i < n; i++) {
			snprintf(keys[i], sizeof(keys[i]), "g:sim:%s", group_names[first + i]);
			items[i] = (struct mcd_mget_item) { .key = keys[i] };
		}
		mcd_mget(reader, items, (size_t) n);
		for (int i = 0; i < n; i++) {
			int64_t members = items[i].rc == MCD_SUCCESS ? (int64_t) (strtoull(items[i].value, NULL, 10)
				- MCD_GROUP_OFFSET) : items[i].rc == MCD_NOTFOUND ? 0 : -1;

			if (wrong < 0 && members != truth(first + i)) {
				wrong = first + i;
				*count = members;
			}
			mcd_value_free(items[i].value);
		}
		if (wrong >= 0) {
			return wrong;
		}
	}
	return -1;
}

static void run_round(int round, int64_t *worst_heal)
{
	int64_t start = now_ms(), last_failure = start, healed_at = 0, bound;
	int64_t count = 0;
	int wrong;

	stretch = (struct mcd_tick_report) { .retired = 0 };
	/* chaos: a failure now and then, at random */
	for (int64_t now = start; now - start < opt.chaos_ms; step_clock(), now = now_ms()) {
		tick_due(now);
		if (now - last_failure > opt.failure_ms && rand() % 300 == 0) {
			fail(now);
			last_failure = now;
		}
		join_or_leave(now);
	}
	/* heal: within the README's bound after the last failure ended (a stall's end, a restart):
	 * the heartbeat's lease, memcached's one-second clock, a tick, two more ticks for a large
	 * retirement (each spends at most a quarter lease on it), and half a second of slack. */
	for (int64_t now = now_ms(), checked = 0; ; step_clock(), now = now_ms()) {
		bool pending = false;

		tick_due(now);
		join_or_leave(now);
		for (int i = 0; i < opt.nodes; i++) {
			pending = pending || nodes[i].stalled_until_ms || nodes[i].restart_at_ms;
		}
		if (pending || now - checked < 200) {
			continue;
		}
		checked = now;
		bound = failure_end_real_ms + opt.lease_s * 1750 + 1500;
		if ((wrong = first_wrong(&count)) < 0) {
			healed_at = real_ms();
			break;
		}
		if (real_ms() > bound + 200) {
			die("round %d: group %s counts %lld, the truth is %ld, %lld ms after the last failure ended "
				"(bound %lld ms)", round, group_names[wrong], (long long) count, truth(wrong),
				(long long) (real_ms() - failure_end_real_ms), (long long) (bound - failure_end_real_ms));
		}
	}
	if (healed_at - failure_end_real_ms > *worst_heal) {
		*worst_heal = healed_at - failure_end_real_ms;
	}
	printf("round %d: %ld failures so far; healed %lld ms after the last one ended (%u retired, %u made again, "
		"%u repaired%s)\n", round, failures, (long long) (healed_at - failure_end_real_ms), stretch.retired,
		stretch.rebuilt, stretch.corrected, stretch.reincarnated ? ", a stalled node counted again" : "");
	/* quiet: no failure, so nothing is touched, and every count stays the truth */
	stretch = (struct mcd_tick_report) { .retired = 0 };
	for (int64_t now = now_ms(), quiet_start = now; now - quiet_start < opt.quiet_ms; step_clock(), now = now_ms()) {
		tick_due(now);
		join_or_leave(now);
	}
	if (stretch.retired || stretch.rebuilt || stretch.corrected || stretch.reincarnated) {
		die("round %d: with no failure, the ticks retired %u, rebuilt %u, repaired %u", round, stretch.retired,
			stretch.rebuilt, stretch.corrected);
	}
	if ((wrong = first_wrong(&count)) >= 0) {
		die("round %d: with no failure, group %s counts %lld, the truth is %ld", round, group_names[wrong],
			(long long) count, truth(wrong));
	}
}

static void parse(int argc, char **argv)
{
	opt.seed = (unsigned int) time(NULL) ^ (unsigned int) getpid();
	for (int i = 1; i < argc; i++) {
		const char *value = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--help") || !value) {
			printf("usage: cluster_sim --port PORT [--seed N] [--nodes N] [--groups N] [--rounds N] "
				"[--lease SECONDS] [--chaos-ms MS] [--quiet-ms MS] [--failure-ms MS] [--trace 1] [--watch GROUP]\n");
			exit(strcmp(argv[i], "--help") ? 2 : 0);
		}
		i++;
		if (!strcmp(argv[i - 1], "--port")) {
			opt.port = value;
		} else if (!strcmp(argv[i - 1], "--seed")) {
			opt.seed = (unsigned int) strtoul(value, NULL, 10);
		} else if (!strcmp(argv[i - 1], "--nodes")) {
			opt.nodes = atoi(value);
		} else if (!strcmp(argv[i - 1], "--groups")) {
			opt.groups = atoi(value);
		} else if (!strcmp(argv[i - 1], "--rounds")) {
			opt.rounds = atoi(value);
		} else if (!strcmp(argv[i - 1], "--lease")) {
			opt.lease_s = atol(value);
		} else if (!strcmp(argv[i - 1], "--chaos-ms")) {
			opt.chaos_ms = atoi(value);
		} else if (!strcmp(argv[i - 1], "--quiet-ms")) {
			opt.quiet_ms = atoi(value);
		} else if (!strcmp(argv[i - 1], "--failure-ms")) {
			opt.failure_ms = atoi(value);
		} else if (!strcmp(argv[i - 1], "--trace")) {
			opt.trace = atoi(value) != 0;
		} else if (!strcmp(argv[i - 1], "--watch")) {
			opt.watch = atoi(value);
			opt.trace = true;
		}
	}
	if (!opt.port || opt.nodes < 2 || opt.groups < 1 || opt.lease_s < 2) {
		fprintf(stderr, "cluster_sim: --port is needed; at least 2 nodes, 1 group, a lease of 2 s\n");
		exit(2);
	}
}

int main(int argc, char **argv)
{
	int64_t worst_heal = 0, started;

	parse(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("cluster simulation: seed %u, %d nodes, %d groups, %d rounds, lease %ld s, a failure at most every "
		"%d ms\n", opt.seed, opt.nodes, opt.groups, opt.rounds, opt.lease_s, opt.failure_ms);
	srand(opt.seed);
	nodes = calloc((size_t) opt.nodes, sizeof(*nodes));
	group_names = calloc((size_t) opt.groups, sizeof(*group_names));
	limits = calloc((size_t) opt.groups, sizeof(*limits));
	for (int g = 0; g < opt.groups; g++) {
		snprintf(group_names[g], sizeof(group_names[g]), "g%d_%u", g, opt.seed);
		limits[g] = 1 + (uint64_t) (rand() % 6);
	}
	start_memcached();
	client = make_client("sim_");
	reader = make_client("sim_" MCD_OWN_KEY_PREFIX);
	real_base_ms = real_ms();
	started = now_ms();
	for (int i = 0; i < opt.nodes; i++) {
		snprintf(nodes[i].name, sizeof(nodes[i].name), "pbx%d", i);
		nodes[i].members = calloc((size_t) opt.groups, sizeof(long));
		start_node(&nodes[i], started);
	}
	for (int round = 1; round <= opt.rounds; round++) {
		run_round(round, &worst_heal);
	}
	printf("%ld joins admitted, %ld refused, %ld calls failed (memcached away), %ld admitted past a limit "
		"inside failure windows; worst heal %lld ms; %.1f s\n", admitted, refused, failed_calls, over_in_windows,
		(long long) worst_heal, (real_ms() - real_base_ms) / 1000.0);
	for (int i = 0; i < opt.nodes; i++) {
		mcd_coord_destroy(nodes[i].coord);
		free(nodes[i].members);
	}
	mcd_client_destroy(client);
	mcd_client_destroy(reader);
	stop_memcached();
	free(nodes);
	free(group_names);
	free(limits);
	printf("simulation: 1 passed, 0 failed\n");
	return 0;
}
