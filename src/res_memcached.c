/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * The module itself: load, unload and reload, and the live client that a
 * reload replaces as a whole. What the module offers is in src/glue/ (one
 * file per Asterisk feature area, see internal.h); everything that talks to
 * memcached is in src/core/, which knows nothing of Asterisk.
 *
 * The module always loads: with a memcached.conf it cannot use, or servers
 * whose names do not resolve yet, every call answers MEMCACHED_NO_SERVERS
 * and the log says why. Names are looked up by the resolver thread, never on
 * a call's path or the loader's: again every RESOLVE_RETRY_S until they
 * resolve, then every RESOLVE_REFRESH_S, since managed endpoints move.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

/*** MODULEINFO
	<depend>memcached</depend>
	<support_level>extended</support_level>
 ***/

#include "asterisk.h"

#include "asterisk/astobj2.h"
#include "asterisk/lock.h"
#include "asterisk/logger.h"
#include "asterisk/module.h"
#include "asterisk/time.h"
#include "asterisk/utils.h"

#include "glue/internal.h"

#define RESOLVE_RETRY_S 2
#define RESOLVE_REFRESH_S 60
/* How long load and reload wait for the first lookup: /etc/hosts and numeric addresses are
 * ready at once; a name that waits on DNS does not hold the loader longer than this. */
#define FIRST_LOOKUP_WAIT_MS 500

static AO2_GLOBAL_OBJ_STATIC(live_client);

static struct mcd_stats stats;

/* The resolver: the settings memcached.conf asks for, and why there is no client (if not). */
static struct {
	ast_mutex_t lock;
	ast_cond_t wake;             /* new settings, or stopping */
	ast_cond_t looked_up;        /* an attempt ended */
	pthread_t thread;
	int running;
	int stopping;
	int have_settings;           /* wanted holds settings from a usable memcached.conf */
	int new_settings;            /* wanted changed since the last attempt */
	unsigned long attempts;
	int outcome;                 /* of the last attempt: LOOKED_UP, NOT_RESOLVED or UNUSABLE */
	struct mcd_settings wanted;
	struct mcd_settings in_use;  /* as the file gave them, for the live client */
	int have_in_use;
	char problem[300];           /* why calls get MEMCACHED_NO_SERVERS, or "" */
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

/* Say why calls cannot be served (logged when it changes), or "" once they can. */
static void set_problem(const char *problem)
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

static void live_destroy(void *obj)
{
	struct mcd_live *live = obj;

	mcd_client_destroy(live->client);
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

enum lookup_outcome {
	LOOKED_UP,                   /* the live client serves these settings */
	NOT_RESOLVED,                /* a name did not resolve: tried again */
	UNUSABLE,                    /* libmemcached refused the settings: dropped */
};

/* Look the servers of settings up; build and swap in a client when the settings are new or
 * the addresses moved. The health of servers the old client shares is kept. */
static enum lookup_outcome look_up_and_build(struct mcd_settings *settings, int fresh)
{
	RAII_VAR(struct mcd_live *, old, mcd_live_get(), ao2_cleanup);
	struct mcd_live *live;
	char err[200], problem[300];

	for (unsigned int i = 0; i < settings->server_count; i++) {
		if (mcd_server_resolve(&settings->servers[i], err, sizeof(err))) {
			/* A client that works keeps working on the addresses it has. */
			if (old && !fresh) {
				return LOOKED_UP;
			}
			snprintf(problem, sizeof(problem), "%s; looked up again every %d s, %s", err, RESOLVE_RETRY_S,
				old ? "the previous servers stay in use until it resolves"
				: "calls get MEMCACHED_NO_SERVERS meanwhile");
			set_problem(problem);
			return NOT_RESOLVED;
		}
	}
	if (!fresh && old && same_servers(settings, mcd_client_settings(old->client))) {
		return LOOKED_UP;
	}
	live = ao2_alloc_options(sizeof(*live), live_destroy, AO2_ALLOC_OPT_LOCK_NOLOCK);
	if (!live || !(live->client = mcd_client_create(settings, &stats, mcd_report_notice, err, sizeof(err)))) {
		snprintf(problem, sizeof(problem), "%s: %s; %s", MCD_CONFIG_FILE, live ? err : "out of memory",
			old ? "the previous servers stay in use" : "calls get MEMCACHED_NO_SERVERS meanwhile");
		ao2_cleanup(live);
		if (old) {
			ast_log(LOG_ERROR, "res_memcached: %s\n", problem);
		} else {
			set_problem(problem);
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
	set_problem("");
	return LOOKED_UP;
}

static void *resolver_run(void *unused)
{
	(void) unused;
	struct timeval due = ast_tvnow();
	int retry_fresh = 0;         /* new settings whose lookup failed: tried again when due */

	ast_mutex_lock(&resolver.lock);
	while (!resolver.stopping) {
		if (resolver.have_settings && (resolver.new_settings || ast_tvcmp(ast_tvnow(), due) >= 0)) {
			struct mcd_settings settings = resolver.wanted;
			int fresh = resolver.new_settings || retry_fresh;
			enum lookup_outcome outcome;

			resolver.new_settings = 0;
			ast_mutex_unlock(&resolver.lock);
			outcome = look_up_and_build(&settings, fresh);
			ast_mutex_lock(&resolver.lock);
			retry_fresh = outcome == NOT_RESOLVED && fresh;
			if (outcome == LOOKED_UP && fresh) {
				resolver.in_use = resolver.wanted;
				resolver.have_in_use = 1;
			} else if (outcome == UNUSABLE) {
				/* Settings libmemcached refuses are dropped: the live ones stay wanted. */
				resolver.wanted = resolver.in_use;
				resolver.have_settings = resolver.have_in_use;
			}
			resolver.outcome = outcome;
			resolver.attempts++;
			ast_cond_broadcast(&resolver.looked_up);
			due = ast_tvadd(ast_tvnow(), ast_tv(outcome == NOT_RESOLVED ? RESOLVE_RETRY_S : RESOLVE_REFRESH_S, 0));
		}
		if (resolver.stopping || resolver.new_settings) {
			continue;
		}
		if (!resolver.have_settings) {
			ast_cond_wait(&resolver.wake, &resolver.lock);
		} else {
			struct timespec until = { .tv_sec = due.tv_sec, .tv_nsec = due.tv_usec * 1000 };

			ast_cond_timedwait(&resolver.wake, &resolver.lock, &until);
		}
	}
	ast_mutex_unlock(&resolver.lock);
	return NULL;
}

int mcd_live_load(int reloading)
{
	struct mcd_settings settings;
	struct timeval until = ast_tvadd(ast_tvnow(), ast_samp2tv(FIRST_LOOKUP_WAIT_MS, 1000));
	struct timespec deadline = { .tv_sec = until.tv_sec, .tv_nsec = until.tv_usec * 1000 };
	unsigned long attempt;
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
	resolver.have_settings = 1;
	resolver.new_settings = 1;
	attempt = resolver.attempts;
	ast_cond_signal(&resolver.wake);
	while (resolver.attempts == attempt
		&& ast_cond_timedwait(&resolver.looked_up, &resolver.lock, &deadline) != ETIMEDOUT) {
	}
	/* A name still being looked up is no failure: the resolver goes on with it. */
	unusable = resolver.attempts != attempt && resolver.outcome == UNUSABLE;
	ast_mutex_unlock(&resolver.lock);
	return unusable ? -1 : 0;
}

static void stop_resolver(void)
{
	if (!resolver.running) {
		return;
	}
	ast_mutex_lock(&resolver.lock);
	resolver.stopping = 1;
	ast_cond_signal(&resolver.wake);
	ast_mutex_unlock(&resolver.lock);
	pthread_join(resolver.thread, NULL);
	resolver.running = 0;
}

static int unload_module(void)
{
	int res = 0;

	/* In this order, each of them: the coordination's last leaves need the live client. */
	res |= mcd_manager_cleanup();
	res |= mcd_cli_cleanup();
	res |= mcd_coordination_cleanup();
	res |= mcd_rates_cleanup();
	res |= mcd_dialplan_cleanup();
	stop_resolver();
	ao2_global_obj_release(live_client);
	ast_cond_destroy(&resolver.wake);
	ast_cond_destroy(&resolver.looked_up);
	ast_mutex_destroy(&resolver.lock);
	return res;
}

static int load_module(void)
{
	memset(&resolver, 0, sizeof(resolver));
	ast_mutex_init(&resolver.lock);
	ast_cond_init(&resolver.wake, NULL);
	ast_cond_init(&resolver.looked_up, NULL);
	if (ast_pthread_create_background(&resolver.thread, NULL, resolver_run, NULL)) {
		ast_log(LOG_ERROR, "res_memcached: cannot start its resolver thread\n");
		unload_module();
		return AST_MODULE_LOAD_DECLINE;
	}
	resolver.running = 1;
	if (mcd_dialplan_init() || mcd_rates_init() || mcd_coordination_init() || mcd_cli_init()
		|| mcd_manager_init()) {
		unload_module();
		return AST_MODULE_LOAD_DECLINE;
	}
	/* Every function and application exists whatever the file says: a call that reaches
	 * one gets a result, never a hangup for a missing application. */
	if (mcd_live_load(0)) {
		set_problem(MCD_CONFIG_FILE " cannot be used (see the errors above): fix it and run "
			"'module reload res_memcached'; calls get MEMCACHED_NO_SERVERS meanwhile");
	}
	return AST_MODULE_LOAD_SUCCESS;
}

static int reload_module(void)
{
	if (mcd_live_load(1)) {
		ast_log(LOG_ERROR, "%s not reloaded: the previous configuration stays in use\n", MCD_CONFIG_FILE);
		return AST_MODULE_LOAD_DECLINE;
	}
	return AST_MODULE_LOAD_SUCCESS;
}

/* Global symbols: res_memcached_prometheus links against res_memcached_metrics, the one
 * function this module does not hide (see glue/metrics.h). */
AST_MODULE_INFO(ASTERISK_GPL_KEY, AST_MODFLAG_GLOBAL_SYMBOLS, "memcached access for the dialplan",
	.support_level = AST_MODULE_SUPPORT_EXTENDED,
	.load = load_module,
	.unload = unload_module,
	.reload = reload_module,
);
