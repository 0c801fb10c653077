/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * locks: a mutex across the cluster. Taken with add (of all that race, one
 * stores), with a token that names the holder; released only by the token
 * that took it, with memcached's compare-and-swap, so a lock that expired and
 * was taken by another is never released by its old owner. An add whose
 * answer was lost is read back (a lost connection) or left to the tick to
 * release if it turns out ours (a timeout): no lock is held by nobody.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coord_private.h"
#include "util.h"

static mcd_rc lock_key(const struct mcd_client *client, const char *name, char out[MCD_KEY_MAX + 1],
	size_t *len)
{
	char key[MCD_NAME_MAX + 16];

	if (!name[0]) {
		return MCD_ARGUMENT_NEEDED;
	}
	if (!mcd_coord_name_valid(name, true)) {
		return strlen(name) > MCD_NAME_MAX ? MCD_KEY_TOO_LONG : MEMCACHED_BAD_KEY_PROVIDED;
	}
	snprintf(key, sizeof(key), "lock:%s", name);
	return mcd_client_own_key(client, key, out, len);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR) {
	}
}

/* An add whose answer was lost with its connection may or may not have stored: read the lock
 * on a fresh connection. Ours when it holds our token; taken again when it is missing. */
static mcd_rc settle_lost_add(struct mcd_call *call, const char *token, time_t expiry)
{
	char found[MCD_TOKEN_MAX];
	size_t len;
	uint64_t cas;
	mcd_rc rc = mcd_gets(call->memc, call->key, call->key_len, call->key, call->key_len, found,
		sizeof(found), &len, &cas);

	if (rc == MEMCACHED_NOTFOUND) {
		return memcached_add(call->memc, call->key, call->key_len, token, strlen(token), expiry, 0);
	}
	if (rc == MEMCACHED_SUCCESS) {
		return len == strlen(token) && !memcmp(found, token, len) ? MEMCACHED_SUCCESS : MEMCACHED_DATA_EXISTS;
	}
	return rc;
}

/* Add a lock to list (coord->locks or coord->orphans). */
static void remember(struct held_lock **list, struct mcd_coord *coord, const char *name, const char *token,
	const char *holder, long ttl)
{
	struct held_lock *held = calloc(1, sizeof(*held));

	if (held) {
		snprintf(held->name, sizeof(held->name), "%s", name);
		snprintf(held->token, sizeof(held->token), "%s", token);
		snprintf(held->holder, sizeof(held->holder), "%s", holder);
		held->since = mcd_monotonic_s();
		held->ttl = ttl;
		pthread_mutex_lock(&coord->lock);
		held->next = *list;
		*list = held;
		pthread_mutex_unlock(&coord->lock);
	}
}

static mcd_rc take_lock(struct mcd_client *client, struct mcd_coord *coord, const char *name, long ttl,
	long wait_ms, const char *holder, char *token)
{
	struct mcd_call call;
	const uint64_t deadline = mcd_now_us() + (uint64_t) wait_ms * 1000U;
	const time_t expiry = (time_t) mcd_wire_expiry(ttl, (int64_t) time(NULL));
	long pause_ms = 2, remaining_ms;
	mcd_rc rc = lock_key(client, name, call.key, &call.key_len);

	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	if (!mcd_coord_supported(client)) {
		return MEMCACHED_NOT_SUPPORTED;
	}
	pthread_mutex_lock(&coord->lock);
	/* The incarnation too: two Asterisks may share a node id (and number channels alike). */
	snprintf(token, MCD_TOKEN_MAX, "%s/%s %lu %s", coord->node, coord->inc, ++coord->next_token, holder);
	pthread_mutex_unlock(&coord->lock);
	for (;;) {
		if ((rc = mcd_call_begin(client, &client->main, &call)) != MEMCACHED_SUCCESS) {
			return rc;
		}
		/* add stores only where nothing is: of all that race, one gets the lock. */
		rc = memcached_add(call.memc, call.key, call.key_len, token, strlen(token), expiry, 0);
		if (mcd_connection_lost(client, call.memc, call.server, rc)) {
			rc = settle_lost_add(&call, token, expiry);
		}
		rc = mcd_call_end(client, &call, rc == MEMCACHED_NOTSTORED ? MEMCACHED_DATA_EXISTS : rc);
		if (mcd_rc_outcome(rc) == MCD_OUTCOME_FAULT) {
			/* Stored or not, nobody knows: the tick releases it if it is ours. */
			remember(&coord->orphans, coord, name, token, holder, ttl);
		}
		if (rc != MEMCACHED_DATA_EXISTS) {
			break;
		}
		if (mcd_now_us() >= deadline) {
			return MCD_LOCK_BUSY;
		}
		/* Wait a little, then a little more, never past the deadline. */
		remaining_ms = (long) ((deadline - mcd_now_us()) / 1000) + 1;
		sleep_ms(pause_ms < remaining_ms ? pause_ms : remaining_ms);
		pause_ms = pause_ms * 2 > 50 ? 50 : pause_ms * 2;
	}
	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	remember(&coord->locks, coord, name, token, holder, ttl);
	return MEMCACHED_SUCCESS;
}

mcd_rc mcd_lock(struct mcd_client *client, struct mcd_coord *coord, const char *name, long ttl,
	long wait_ms, const char *holder, char *token)
{
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_LOCK, started,
		take_lock(client, coord, name, ttl, wait_ms, holder, token));
}

/* An expiry memcached reads as a date, in January 1970: already passed. */
#define EXPIRED_AT_ONCE ((time_t) (MCD_RELATIVE_EXPIRY_MAX + 1))

static mcd_rc release_lock(struct mcd_client *client, const char *name, const char *token)
{
	struct mcd_call call;
	char value[MCD_TOKEN_MAX];
	size_t len;
	uint64_t cas;
	mcd_rc rc = lock_key(client, name, call.key, &call.key_len);

	if (rc != MEMCACHED_SUCCESS || (rc = mcd_call_begin(client, &client->main, &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	/* gets: the value and the version (cas) of the item as it is now. */
	rc = mcd_gets(call.memc, call.key, call.key_len, call.key, call.key_len, value, sizeof(value), &len, &cas);
	if (mcd_connection_lost(client, call.memc, call.server, rc)) {
		rc = mcd_gets(call.memc, call.key, call.key_len, call.key, call.key_len, value, sizeof(value), &len, &cas);
	}
	if (rc == MEMCACHED_SUCCESS && len == strlen(token) && !strcmp(value, token)) {
		/* Only the version we read may go: if the lock expired and another took it, its
		 * version differs and the swap is refused. */
		rc = memcached_cas(call.memc, call.key, call.key_len, "", 0, EXPIRED_AT_ONCE, 0, cas);
		if (rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTFOUND) {
			rc = MCD_NOT_LOCKED;
		}
	} else if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND) {
		rc = MCD_NOT_LOCKED;
	}
	return mcd_call_end(client, &call, rc);
}

mcd_rc mcd_lock_check(struct mcd_client *client, const char *name, const char *token)
{
	struct mcd_call call;
	char value[MCD_TOKEN_MAX];
	size_t len;
	uint64_t cas;
	mcd_rc rc = mcd_coord_supported(client) ? lock_key(client, name, call.key, &call.key_len)
		: MEMCACHED_NOT_SUPPORTED;

	if (rc != MEMCACHED_SUCCESS || (rc = mcd_call_begin(client, &client->main, &call)) != MEMCACHED_SUCCESS) {
		return rc;
	}
	rc = mcd_gets(call.memc, call.key, call.key_len, call.key, call.key_len, value, sizeof(value), &len, &cas);
	if (mcd_connection_lost(client, call.memc, call.server, rc)) {
		rc = mcd_gets(call.memc, call.key, call.key_len, call.key, call.key_len, value, sizeof(value), &len, &cas);
	}
	if (rc == MEMCACHED_NOTFOUND || (rc == MEMCACHED_SUCCESS && (len != strlen(token) || strcmp(value, token)))) {
		rc = MCD_NOT_LOCKED;
	}
	return mcd_call_end(client, &call, rc);
}

void mcd_locks_tick(struct mcd_client *client, struct mcd_coord *coord)
{
	struct held_lock *orphans;
	const long now = mcd_monotonic_s();

	pthread_mutex_lock(&coord->lock);
	orphans = coord->orphans;
	coord->orphans = NULL;
	pthread_mutex_unlock(&coord->lock);
	while (orphans) {
		struct held_lock *l = orphans;
		mcd_rc rc = release_lock(client, l->name, l->token);

		orphans = l->next;
		/* Released, or never ours: done. Unanswered: again next tick, until its ttl ran out. */
		if (mcd_rc_outcome(rc) == MCD_OUTCOME_FAULT && now - l->since <= l->ttl) {
			pthread_mutex_lock(&coord->lock);
			l->next = coord->orphans;
			coord->orphans = l;
			pthread_mutex_unlock(&coord->lock);
		} else {
			free(l);
		}
	}
}

mcd_rc mcd_unlock(struct mcd_client *client, struct mcd_coord *coord, const char *name,
	const char *token)
{
	uint64_t started = mcd_now_us();
	mcd_rc rc = release_lock(client, name, token);

	/* Held or not, this node stops reporting it. */
	pthread_mutex_lock(&coord->lock);
	for (struct held_lock **l = &coord->locks; *l; l = &(*l)->next) {
		if (!strcmp((*l)->token, token)) {
			struct held_lock *gone = *l;

			*l = gone->next;
			free(gone);
			break;
		}
	}
	pthread_mutex_unlock(&coord->lock);
	return mcd_stats_record(client->stats, MCD_OP_LOCK, started, rc);
}

unsigned int mcd_coord_locks(struct mcd_coord *coord,
	void (*each)(const struct mcd_lock_report *report, void *arg), void *arg)
{
	struct mcd_lock_report *reports = NULL;
	unsigned int count = 0, room = 0;
	const long now = mcd_monotonic_s();

	/* Copied under the lock, reported without it: each may take its time (a slow console). */
	pthread_mutex_lock(&coord->lock);
	for (struct held_lock *l = coord->locks; l; l = l->next) {
		room++;
	}
	if (room && (reports = calloc(room, sizeof(*reports)))) {
		for (struct held_lock *l = coord->locks; l; l = l->next, count++) {
			reports[count] = (struct mcd_lock_report) { .held_s = now - l->since, .ttl = l->ttl };
			snprintf(reports[count].name, sizeof(reports[count].name), "%s", l->name);
			snprintf(reports[count].holder, sizeof(reports[count].holder), "%s", l->holder);
		}
	}
	pthread_mutex_unlock(&coord->lock);
	for (unsigned int i = 0; i < count; i++) {
		each(&reports[i], arg);
	}
	free(reports);
	return count;
}
