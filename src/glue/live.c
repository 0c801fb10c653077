/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * live: the client calls use, and the resolver thread that builds it. Server
 * names are looked up here, never on a call's path or the loader's: again
 * every RESOLVE_RETRY_S until they resolve (calls get MEMCACHED_NO_SERVERS
 * meanwhile, and the log says why), then every RESOLVE_REFRESH_S, since
 * managed endpoints move. A new client is swapped in whole; calls in flight
 * keep the one they started with, which this thread destroys once the last
 * lets it go (a destroy waits for the client's prober).
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include "asterisk.h"

#include <time.h>

#include "asterisk/astobj2.h"
#include "asterisk/linkedlists.h"
#include "asterisk/lock.h"
#include "asterisk/logger.h"
#include "asterisk/utils.h"

#include "glue/internal.h"

#define RESOLVE_RETRY_S 2
#define RESOLVE_REFRESH_S 60
/* How long load and reload wait for the first lookup: /etc/hosts and numeric addresses are
 * ready at once; a name that waits on DNS does not hold the loader longer than this. */
#define FIRST_LOOKUP_WAIT_MS 500

enum lookup_outcome {
	LOOKED_UP,                   /* the live client serves these settings */
	NOT_RESOLVED,                /* a name did not resolve: tried again */
	UNUSABLE,                    /* libmemcached refused the settings: dropped */
};

/* A client no call uses any more, waiting for the resolver thread to destroy it. */
struct retired {
	struct mcd_client *client;
	AST_LIST_ENTRY(retired) entry;
};

static AO2_GLOBAL_OBJ_STATIC(live_client);

static struct mcd_stats stats;

/* Everything below under lock. Generations number the settings each load hands over. */
static struct {
	ast_mutex_t lock;
	ast_cond_t wake;             /* new settings, a retired client, or stopping (monotonic) */
	ast_cond_t looked_up;        /* an attempt ended (monotonic) */
	pthread_t thread;
	int running;
	int stopping;
	struct mcd_settings wanted;  /* as the file gave them (names, not addresses) */
	unsigned long wanted_gen;    /* 0: no usable file yet */
	unsigned long last_gen;      /* the last generation handed over: numbers are never reused */
	unsigned long tried_gen;     /* the generation of the last attempt that ended */
	unsigned long done_gen;      /* the newest generation an attempt ended for */
	unsigned long unusable_gen;  /* the newest generation libmemcached refused */
	struct mcd_settings in_use;  /* what the live client was built from */
	unsigned long in_use_gen;
	char problem[300];           /* why calls get MEMCACHED_NO_SERVERS, or "" */
	AST_LIST_HEAD_NOLOCK(, retired) retired;
} resolver;

struct mcd_stats *mcd_module_stats(void)
{
	return &stats;
}

struct mcd_live *mcd_live_get(void)
{
	return ao2_global_obj_ref(live_client);
}

void mcd_live_problem(char *buf, size_t len)
{
	ast_mutex_lock(&resolver.lock);
	ast_copy_string(buf, resolver.problem, len);
	ast_mutex_unlock(&resolver.lock);
}

void mcd_live_set_problem(const char *problem)
{
	int changed;

	ast_mutex_lock(&resolver.lock);
	changed = strcmp(resolver.problem, problem);
	ast_copy_string(resolver.problem, problem, sizeof(resolver.problem));
	ast_mutex_unlock(&resolver.lock);
	if (changed && *problem) {
		ast_log(LOG_ERROR, "res_memcached: %s\n", problem);
	}
}

/* The last call that held a client let it go: the resolver thread destroys it, so that no call
 * waits for its prober. Once the thread is gone (unloading), it goes at once. */
static void live_destroy(void *obj)
{
	struct mcd_live *live = obj;
	struct retired *r = NULL;

	if (!live->client) {
		return;
	}
	ast_mutex_lock(&resolver.lock);
	if (resolver.running && !resolver.stopping && (r = ast_calloc(1, sizeof(*r)))) {
		r->client = live->client;
		AST_LIST_INSERT_TAIL(&resolver.retired, r, entry);
		ast_cond_signal(&resolver.wake);
	}
	ast_mutex_unlock(&resolver.lock);
	if (!r) {
		mcd_client_destroy(live->client);
	}
}

/* Destroy the retired clients (lock held; released meanwhile). */
static void destroy_retired(void)
{
	struct retired *r;

	while ((r = AST_LIST_REMOVE_HEAD(&resolver.retired, entry))) {
		ast_mutex_unlock(&resolver.lock);
		mcd_client_destroy(r->client);
		ast_free(r);
		ast_mutex_lock(&resolver.lock);
	}
}

/* Whether the two lists name the same servers at the same addresses. */
static int same_servers(const struct mcd_settings *a, const struct mcd_settings *b)
{
	if (a->server_count != b->server_count) {
		return 0;
	}
	for (unsigned int i = 0; i < a->server_count; i++) {
		char one[MCD_ADDRESS_LEN], other[MCD_ADDRESS_LEN];

		if (strcmp(mcd_server_address(&a->servers[i], one), mcd_server_address(&b->servers[i], other))) {
			return 0;
		}
	}
	return 1;
}

/* Look the servers of settings up; build and swap in a client when the settings are new
 * (fresh) or the addresses moved. The health of servers the old client shares is kept. */
static enum lookup_outcome look_up_and_build(struct mcd_settings settings, int fresh)
{
	RAII_VAR(struct mcd_live *, old, mcd_live_get(), ao2_cleanup);
	struct mcd_live *live;
	char err[200], problem[300];

	for (unsigned int i = 0; i < settings.server_count; i++) {
		if (mcd_server_resolve(&settings.servers[i], err, sizeof(err))) {
			/* A client that works keeps working on the addresses it has. */
			if (old && !fresh) {
				return LOOKED_UP;
			}
			snprintf(problem, sizeof(problem), "%s; looked up again every %d s, %s", err, RESOLVE_RETRY_S,
				old ? "the previous servers stay in use until it resolves"
				: "calls get MEMCACHED_NO_SERVERS meanwhile");
			mcd_live_set_problem(problem);
			return NOT_RESOLVED;
		}
	}
	if (!fresh && old && same_servers(&settings, mcd_client_settings(old->client))) {
		return LOOKED_UP;
	}
	live = ao2_alloc_options(sizeof(*live), live_destroy, AO2_ALLOC_OPT_LOCK_NOLOCK);
	if (!live || !(live->client = mcd_client_create(&settings, &stats, mcd_report_notice, err, sizeof(err)))) {
		snprintf(problem, sizeof(problem), "%s: %s; %s", MCD_CONFIG_FILE, live ? err : "out of memory",
			old ? "the previous servers stay in use" : "calls get MEMCACHED_NO_SERVERS meanwhile");
		if (live) {
			/* Never built: nothing to destroy. */
			ao2_ref(live, -1);
		}
		if (old) {
			ast_log(LOG_ERROR, "res_memcached: %s\n", problem);
		} else {
			mcd_live_set_problem(problem);
		}
		return UNUSABLE;
	}
	mcd_client_adopt_health(live->client, old ? old->client : NULL);
	if (!fresh) {
		ast_log(LOG_NOTICE, "res_memcached: the servers' addresses changed; using them now\n");
	}
	mcd_conf_log(mcd_client_settings(live->client));
	mcd_coordination_configure(mcd_client_settings(live->client));
	ao2_global_obj_replace_unref(live_client, live);
	ao2_ref(live, -1);
	mcd_live_set_problem("");
	return LOOKED_UP;
}

static void *resolver_run(void *unused)
{
	struct timespec due = mcd_monotonic_after_ms(0);

	(void) unused;
	ast_mutex_lock(&resolver.lock);
	while (!resolver.stopping) {
		destroy_retired();
		/* New settings at once; a retry, or a look at the live ones' addresses, when due. */
		if (resolver.wanted_gen && (resolver.wanted_gen != resolver.tried_gen || mcd_monotonic_passed(&due))) {
			const unsigned long gen = resolver.wanted_gen;
			const struct mcd_settings settings = resolver.wanted;
			/* New settings (or ones not built yet) are built; the live ones only looked up. */
			const int fresh = gen != resolver.in_use_gen;
			enum lookup_outcome outcome;

			ast_mutex_unlock(&resolver.lock);
			outcome = look_up_and_build(settings, fresh);
			ast_mutex_lock(&resolver.lock);
			if (outcome == LOOKED_UP) {
				resolver.in_use = settings;
				resolver.in_use_gen = gen;
			} else if (outcome == UNUSABLE && gen == resolver.wanted_gen) {
				/* Settings libmemcached refuses are dropped: the live ones stay wanted. */
				resolver.wanted = resolver.in_use;
				resolver.wanted_gen = resolver.in_use_gen;
			}
			resolver.tried_gen = gen;
			resolver.done_gen = gen > resolver.done_gen ? gen : resolver.done_gen;
			resolver.unusable_gen = outcome == UNUSABLE ? gen : resolver.unusable_gen;
			ast_cond_broadcast(&resolver.looked_up);
			due = mcd_monotonic_after_ms((outcome == NOT_RESOLVED ? RESOLVE_RETRY_S : RESOLVE_REFRESH_S) * 1000L);
			continue;
		}
		if (!AST_LIST_EMPTY(&resolver.retired)) {
			continue;
		}
		if (resolver.wanted_gen) {
			ast_cond_timedwait(&resolver.wake, &resolver.lock, &due);
		} else {
			ast_cond_wait(&resolver.wake, &resolver.lock);
		}
	}
	destroy_retired();
	ast_mutex_unlock(&resolver.lock);
	return NULL;
}

int mcd_live_load(int reloading)
{
	struct timespec deadline = mcd_monotonic_after_ms(FIRST_LOOKUP_WAIT_MS);
	struct mcd_settings settings;
	unsigned long gen;
	int unusable;

	switch (mcd_conf_read(&settings, reloading)) {
	case MCD_CONF_UNCHANGED:
		ast_verb(2, "res_memcached: %s unchanged, nothing to reload\n", MCD_CONFIG_FILE);
		return 0;
	case MCD_CONF_BAD:
		return -1;
	case MCD_CONF_READ:
		break;
	}
	ast_mutex_lock(&resolver.lock);
	resolver.wanted = settings;
	gen = resolver.wanted_gen = ++resolver.last_gen;
	ast_cond_signal(&resolver.wake);
	while (resolver.done_gen < gen
		&& ast_cond_timedwait(&resolver.looked_up, &resolver.lock, &deadline) != ETIMEDOUT) {
	}
	/* A name still being looked up is no failure: the resolver goes on with it. */
	unusable = resolver.unusable_gen == gen;
	ast_mutex_unlock(&resolver.lock);
	return unusable ? -1 : 0;
}

int mcd_live_init(void)
{
	pthread_condattr_t attr;

	memset(&resolver, 0, sizeof(resolver));
	ast_mutex_init(&resolver.lock);
	/* Waits on the monotonic clock: a clock stepped back (NTP at boot) delays no lookup. */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	ast_cond_init(&resolver.wake, &attr);
	ast_cond_init(&resolver.looked_up, &attr);
	pthread_condattr_destroy(&attr);
	if (ast_pthread_create_background(&resolver.thread, NULL, resolver_run, NULL)) {
		ast_log(LOG_ERROR, "res_memcached: cannot start its resolver thread\n");
		return -1;
	}
	resolver.running = 1;
	return 0;
}

void mcd_live_stop(void)
{
	if (resolver.running) {
		ast_mutex_lock(&resolver.lock);
		resolver.stopping = 1;
		ast_cond_signal(&resolver.wake);
		ast_mutex_unlock(&resolver.lock);
		pthread_join(resolver.thread, NULL);
		resolver.running = 0;
	}
}

void mcd_live_cleanup(void)
{
	mcd_live_stop();
	/* The thread is gone: the last client is destroyed at once. */
	ao2_global_obj_release(live_client);
	ast_cond_destroy(&resolver.wake);
	ast_cond_destroy(&resolver.looked_up);
	ast_mutex_destroy(&resolver.lock);
}
