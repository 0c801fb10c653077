/*
 * The network's floor for the benchmark: the same memcached operations as the
 * dialplan loops, straight from libmemcached, with no Asterisk in between.
 *
 *   raw HOST PORT OP COUNT THREADS BINARY
 *
 * HOST may be the path of a unix socket (PORT is then ignored).
 * OP is set, get, append, incr, mget8 (one memcached_mget of 8 keys) or setnr
 * (set with libmemcached's noreply). Each thread has its own connection and does
 * COUNT operations on keys of its own. Prints "OP THREADS total_ops seconds".
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmemcached/memcached.h>

struct job {
	const char *host;
	int port;
	const char *op;
	long count;
	int binary;
	int id;
	long failures;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
	struct job *job = arg;
	memcached_st *memc = memcached_create(NULL);
	char key[64];
	size_t key_len, value_len;
	uint32_t flags;
	uint64_t counter;
	memcached_return_t rc;

	if (job->host[0] == '/') {
		memcached_server_add_unix_socket(memc, job->host);
	} else {
		memcached_server_add(memc, job->host, (in_port_t) job->port);
	}
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, (uint64_t) job->binary);
	memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	char many[8][64];
	const char *many_keys[8];
	size_t many_lens[8];

	key_len = (size_t) snprintf(key, sizeof(key), "raw_%s_%d", job->op, job->id);
	memcached_set(memc, key, key_len, "0", 1, 0, 0);
	for (int j = 0; j < 8; j++) {
		many_lens[j] = (size_t) snprintf(many[j], sizeof(many[j]), "%s_%d", key, j);
		many_keys[j] = many[j];
		memcached_set(memc, many[j], many_lens[j], "value", 5, 0, 0);
	}
	if (!strcmp(job->op, "setnr")) {
		memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_NOREPLY, 1);
	}
	for (long i = 0; i < job->count; i++) {
		if (!strcmp(job->op, "mget8")) {
			memcached_result_st result;
			int found = 0;

			rc = memcached_mget(memc, many_keys, many_lens, 8);
			memcached_result_create(memc, &result);
			while (memcached_fetch_result(memc, &result, NULL)) {
				found++;
			}
			memcached_result_free(&result);
			if (rc == MEMCACHED_SUCCESS && found != 8) {
				rc = MEMCACHED_NOTFOUND;
			}
		} else if (!strcmp(job->op, "set") || !strcmp(job->op, "setnr")) {
			rc = memcached_set(memc, key, key_len, "value", 5, 0, 0);
		} else if (!strcmp(job->op, "get")) {
			char *value = memcached_get(memc, key, key_len, &value_len, &flags, &rc);
			free(value);
		} else if (!strcmp(job->op, "append")) {
			rc = memcached_append(memc, key, key_len, "x", 1, 0, 0);
		} else {
			rc = memcached_increment(memc, key, key_len, 1, &counter);
		}
		if (rc != MEMCACHED_SUCCESS) {
			job->failures++;
		}
	}
	memcached_free(memc);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[1024];
	struct job jobs[1024];
	int count;
	double started, took;
	long failures = 0;

	if (argc != 7 || (count = atoi(argv[5])) < 1 || count > 1024) {
		fprintf(stderr, "usage: raw HOST PORT set|get|append|incr|mget8|setnr COUNT THREADS BINARY\n");
		return 2;
	}
	started = now();
	for (int t = 0; t < count; t++) {
		jobs[t] = (struct job) { argv[1], atoi(argv[2]), argv[3], atol(argv[4]), atoi(argv[6]), t, 0 };
		pthread_create(&threads[t], NULL, run, &jobs[t]);
	}
	for (int t = 0; t < count; t++) {
		pthread_join(threads[t], NULL);
		failures += jobs[t].failures;
	}
	took = now() - started;
	printf("%s %d %ld %.6f %ld\n", argv[3], count, atol(argv[4]) * count, took, failures);
	return failures ? 1 : 0;
}
