/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * health: what calls learn of each server (faults in a row, a rest), the
 * prober that asks resting servers off the call path whether they answer
 * again (and which protocol they speak), and the console's server reports.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_private.h"
#include "util.h"

/* Say something to the administrator through the glue, if it listens. */
static void notice(const struct mcd_client *client, const char *format, ...)
{
	char message[512];
	va_list ap;

	if (!client->notice) {
		return;
	}
	va_start(ap, format);
	vsnprintf(message, sizeof(message), format, ap);
	va_end(ap);
	client->notice(message);
}

/* Whether server i answers a version request in the given protocol with a version, on a
 * connection of its own, within the configured timeouts. *replied (unless NULL) says whether
 * it answered at all: a proxy's version (mcrouter's) may not read as a number. */
static bool answers(const struct mcd_client *client, unsigned int i, bool binary, bool *replied)
{
	memcached_st *memc = memcached_create(NULL);
	bool answered = false;
	mcd_rc rc = MEMCACHED_FAILURE;

	if (memc && !memcached_failed(mcd_add_server(memc, &client->settings.servers[i]))
		&& !mcd_set_timeouts(memc, &client->settings)
		&& !memcached_failed(memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, binary))) {
		const memcached_instance_st *instance = memcached_server_instance_by_position(memc, 0);

		rc = memcached_version(memc);
		answered = memcached_server_major_version(instance) != UINT8_MAX;
		/* The server's own outcome: a refused connection, a timeout, or a reply not understood. */
		if (rc == MEMCACHED_SOME_ERRORS) {
			rc = memcached_server_error_return(instance);
		}
	}
	memcached_free(memc);
	if (replied) {
		*replied = answered || (rc != MEMCACHED_FAILURE && mcd_rc_outcome(rc) != MCD_OUTCOME_FAULT);
	}
	return answered;
}

/* A server that starts resting may be well but speak only the other protocol (a proxy that
 * speaks no binary, a memcached started with -B binary): find out once, and say so. True when
 * it is known to speak the other one. */
static bool probe_protocol(struct mcd_client *client, unsigned int server)
{
	const bool binary = client->settings.binary_protocol;
	char address[MCD_ADDRESS_LEN];

	if (!atomic_exchange(&client->health[server].probe_due, false) || !answers(client, server, !binary, NULL)) {
		return atomic_load(&client->health[server].other_protocol);
	}
	atomic_store(&client->health[server].other_protocol, true);
	mcd_server_address(&client->settings.servers[server], address);
	if (binary) {
		notice(client, "memcached server %s does not answer the binary protocol but answers the "
			"text protocol: it is a proxy (memcached's own, twemproxy, mcrouter) or a server that "
			"speaks text only. Set binary_proto=no (or auto) in memcached.conf.", address);
	} else {
		notice(client, "memcached server %s does not answer the text protocol but answers the "
			"binary protocol (a memcached started with -B binary, or with -S, which then wants a "
			"username and password too). Set binary_proto=yes in memcached.conf.", address);
	}
	return true;
}

static void wake_prober(struct mcd_client *client);

/* A fault that says the connection itself is gone (closed or reset by the server, refused),
 * not merely slow: after one, every pooled handle reconnects before use. */
static bool connection_gone(mcd_rc rc)
{
	return rc == MEMCACHED_CONNECTION_FAILURE || rc == MEMCACHED_WRITE_FAILURE
		|| rc == MEMCACHED_READ_FAILURE || rc == MEMCACHED_UNKNOWN_READ_FAILURE || rc == MEMCACHED_ERRNO;
}

bool mcd_connection_lost(struct mcd_client *client, memcached_st *memc, uint32_t server, mcd_rc rc)
{
	struct mcd_handle_slot *slot = memcached_get_user_data(memc);

	if (!connection_gone(rc)) {
		return false;
	}
	/* A server thought well had closed this connection (it restarted, say): the other
	 * handles' connections to it are as stale. While it is failing, that is known already. */
	if (server < client->settings.server_count && !atomic_load(&client->health[server].faults)) {
		atomic_fetch_add(&client->connections_epoch, 1);
	}
	memcached_quit(memc);
	if (slot) {
		slot->epoch = atomic_load(&client->connections_epoch);
	}
	return true;
}

void mcd_note_server(struct mcd_client *client, uint32_t server, mcd_rc rc)
{
	struct server_health *health;

	if (server >= client->settings.server_count) {
		return;
	}
	health = &client->health[server];
	switch (mcd_rc_outcome(rc)) {
	case MCD_OUTCOME_ANSWER:
	case MCD_OUTCOME_ERROR:
		/* It answered. Read first: a store on every success would bounce the line between CPUs. */
		if (atomic_load(&health->faults)) {
			atomic_store(&health->faults, 0);
		}
		if (!atomic_load(&health->probe_due)) {
			atomic_store(&health->other_protocol, false);
			atomic_store(&health->probe_due, true);
		}
		break;
	case MCD_OUTCOME_FAULT:
		/* The first fault of a run that closed connections: the others are stale too. */
		if (atomic_fetch_add(&health->faults, 1) == 0 && connection_gone(rc)) {
			atomic_fetch_add(&client->connections_epoch, 1);
		}
		if (atomic_load(&health->faults) >= (unsigned int) client->settings.server_failure_limit
			&& client->settings.retry_timeout_s > 0) {
			/* libmemcached rests a server only after connect failures, and only in the
			 * one handle that saw them: a hung server would cost every call a timeout.
			 * The prober ends the rest at the server's first answer. */
			atomic_store(&health->resting_until, mcd_monotonic_s() + client->settings.retry_timeout_s);
			wake_prober(client);
		}
		break;
	case MCD_OUTCOME_REFUSED:
	case MCD_OUTCOME_RESTING:
	case MCD_OUTCOME_OVERLOAD:
	case MCD_OUTCOME_COUNT:
		/* The server was not asked: nothing learned about it. */
		break;
	}
}

/* --- the prober: resting servers asked for their version off the call path --- */

/* One resting server asked: used again at its first reply; else, the first time it rests, asked
 * in the other protocol too. A silent one rests on until retry_timeout, when calls try it. */
struct probe {
	struct mcd_client *client;
	unsigned int server;
	pthread_t thread;
	bool started;
};

static void *probe_one(void *arg)
{
	struct probe *p = arg;
	struct server_health *health = &p->client->health[p->server];
	bool replied = false;

	/* A version, or a reply of some kind from a server not known to speak the other protocol
	 * (mcrouter's version is no number): it is back. */
	if (answers(p->client, p->server, p->client->settings.binary_protocol, &replied)
		|| (!probe_protocol(p->client, p->server) && replied)) {
		atomic_store(&health->faults, 0);
		atomic_store(&health->resting_until, 0);
		/* Its connections from before the rest are dead: every handle reconnects. */
		atomic_fetch_add(&p->client->connections_epoch, 1);
	}
	return NULL;
}

/* One round: every resting server at once, so that a hung one holds up no other. */
static void probe_resting(struct mcd_client *client)
{
	struct probe probes[MCD_MAX_SERVERS];

	for (unsigned int i = 0; i < client->settings.server_count; i++) {
		probes[i] = (struct probe) { .client = client, .server = i };
		probes[i].started = atomic_load(&client->health[i].resting_until)
			&& !pthread_create(&probes[i].thread, NULL, probe_one, &probes[i]);
	}
	for (unsigned int i = 0; i < client->settings.server_count; i++) {
		if (probes[i].started) {
			pthread_join(probes[i].thread, NULL);
		}
	}
}

static void *prober_run(void *arg)
{
	struct mcd_client *client = arg;
	struct mcd_prober *p = &client->prober;

	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		struct timespec next = mcd_monotonic_after_ms(MCD_PROBE_INTERVAL_MS);

		pthread_cond_timedwait(&p->wake, &p->lock, &next);
		if (p->stopping) {
			break;
		}
		pthread_mutex_unlock(&p->lock);
		probe_resting(client);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void wake_prober(struct mcd_client *client)
{
	if (client->prober.running) {
		pthread_mutex_lock(&client->prober.lock);
		pthread_cond_signal(&client->prober.wake);
		pthread_mutex_unlock(&client->prober.lock);
	}
}

void mcd_prober_start(struct mcd_client *client)
{
	struct mcd_prober *p = &client->prober;

	pthread_mutex_init(&p->lock, NULL);
	mcd_monotonic_cond_init(&p->wake);
	/* Without it, rests still end after retry_timeout, as calls find out. */
	p->running = !pthread_create(&p->thread, NULL, prober_run, client);
}

void mcd_prober_stop(struct mcd_client *client)
{
	struct mcd_prober *p = &client->prober;

	if (p->running) {
		pthread_mutex_lock(&p->lock);
		p->stopping = true;
		pthread_cond_signal(&p->wake);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
		p->running = false;
	}
}

void mcd_client_adopt_health(struct mcd_client *client, struct mcd_client *from)
{
	/* A server heard in another protocol, or with other credentials, is another story. */
	if (!from || from->settings.binary_protocol != client->settings.binary_protocol
		|| strcmp(from->settings.username, client->settings.username)) {
		return;
	}
	for (unsigned int i = 0; i < client->settings.server_count; i++) {
		for (unsigned int j = 0; from && j < from->settings.server_count; j++) {
			char mine[MCD_ADDRESS_LEN], theirs[MCD_ADDRESS_LEN];

			if (strcmp(mcd_server_address(&client->settings.servers[i], mine),
				mcd_server_address(&from->settings.servers[j], theirs))) {
				continue;
			}
			atomic_store(&client->health[i].faults, atomic_load(&from->health[j].faults));
			atomic_store(&client->health[i].resting_until, atomic_load(&from->health[j].resting_until));
			atomic_store(&client->health[i].probe_due, atomic_load(&from->health[j].probe_due));
			atomic_store(&client->health[i].other_protocol, atomic_load(&from->health[j].other_protocol));
			break;
		}
	}
}

bool mcd_server_resting(struct mcd_client *client, uint32_t server)
{
	long until;

	/* A server that never rested costs no clock read. */
	return server < MCD_MAX_SERVERS && (until = atomic_load(&client->health[server].resting_until))
		&& until > mcd_monotonic_s();
}

void mcd_server_health(struct mcd_client *client, unsigned int i, struct mcd_server_health *health)
{
	health->faults = i < MCD_MAX_SERVERS ? atomic_load(&client->health[i].faults) : 0;
	health->resting = mcd_server_resting(client, i);
	health->other_protocol = i < MCD_MAX_SERVERS && atomic_load(&client->health[i].other_protocol);
}

bool mcd_tracks_health(const struct mcd_client *client)
{
	return !client->settings.remove_failed_servers && !client->settings.replicas;
}

/* --- server reports, for the console and the manager --- */

struct report_call {
	memcached_st *memc;
	struct mcd_server_report *reports;
	unsigned int count;
};

/* One "STAT key value" line of one server's answer to "stats". */
static memcached_return_t take_stat(const memcached_instance_st *server, const char *key, size_t key_len,
	const char *value, size_t value_len, void *context)
{
	struct report_call *call = context;

	for (unsigned int i = 0; i < call->count; i++) {
		struct mcd_server_report *r = &call->reports[i];

		if (memcached_server_instance_by_position(call->memc, i) != server) {
			continue;
		}
#define IS(name) (key_len == sizeof(name) - 1 && !memcmp(key, name, key_len))
		r->answered = true;
		if (IS("version")) {
			snprintf(r->version, sizeof(r->version), "%.*s", (int) value_len, value);
		} else if (IS("curr_items")) {
			r->items = mcd_uint64_of(value, value_len);
		} else if (IS("curr_connections")) {
			r->connections = mcd_uint64_of(value, value_len);
		} else if (IS("get_hits")) {
			r->hits = mcd_uint64_of(value, value_len);
		} else if (IS("get_misses")) {
			r->misses = mcd_uint64_of(value, value_len);
		} else if (IS("proxy_conn_requests")) {
			/* Only memcached's built-in proxy counts the requests it passes on. */
			r->kind = MCD_KIND_MEMCACHED_PROXY;
		}
#undef IS
	}
	return MEMCACHED_SUCCESS;
}

unsigned int mcd_server_reports(struct mcd_client *client, struct mcd_server_report *reports,
	unsigned int max)
{
	const struct mcd_settings *s = &client->settings;
	const unsigned int count = s->server_count < max ? s->server_count : max;
	mcd_rc rc = MEMCACHED_SUCCESS;
	struct report_call call = { .reports = reports, .count = count };

	for (unsigned int i = 0; i < count; i++) {
		memset(&reports[i], 0, sizeof(reports[i]));
		mcd_server_address(&s->servers[i], reports[i].address);
		reports[i].kind = MCD_KIND_MEMCACHED;
		reports[i].resting = mcd_server_resting(client, i);
		reports[i].other_protocol = atomic_load(&client->health[i].other_protocol);
	}
	if ((call.memc = mcd_take_connection(client, &client->main, &rc))) {
		/* Each server's own answer is read line by line; the overall result says nothing more. */
		memcached_stat_execute(call.memc, NULL, take_stat, &call);
		mcd_give_back(&client->main, call.memc);
	}
	for (unsigned int i = 0; i < count; i++) {
		struct mcd_server_report *r = &reports[i];

		if (r->answered) {
			r->other_protocol = false;
			continue;
		}
		/* No stats: a proxy such as twemproxy serves the commands but not "stats"; a server of
		 * the other protocol answers only that; else it is down or hung. */
		if (answers(client, i, s->binary_protocol, NULL)) {
			r->answered = true;
			r->kind = MCD_KIND_NO_STATS;
		} else if (answers(client, i, !s->binary_protocol, NULL)) {
			r->other_protocol = true;
		}
	}
	return s->server_count;
}

const char *mcd_server_state(const struct mcd_server_report *report)
{
	if (report->other_protocol) {
		return "wrong protocol";
	}
	if (report->resting) {
		return "resting";
	}
	return report->answered ? "up" : "no answer";
}

const char *mcd_server_kind(const struct mcd_server_report *report)
{
	if (!report->answered) {
		return "";
	}
	switch (report->kind) {
	case MCD_KIND_MEMCACHED:
		return "memcached";
	case MCD_KIND_MEMCACHED_PROXY:
		return "memcached proxy";
	case MCD_KIND_NO_STATS:
		return "no stats (a proxy)";
	}
	return "";
}
