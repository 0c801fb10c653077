/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * rates: MCDRATE's counting. A sliding period P is cut into buckets of
 * P / MCD_RATE_BUCKETS (20) by the wall clock; a decision at t reads the current
 * bucket and the MCD_RATE_BUCKETS before it, which cover at least [t - P, t],
 * with one multi-get, and admits only when their sum stays within the limit:
 * an incr of the current bucket, stepped back when it lands over (another
 * Asterisk got there first). So every span of P that ends at an admission
 * holds at most the limit, and no span does. All of a name's buckets live on
 * one server (libmemcached's master key) and expire once no window needs
 * them, so an Asterisk that dies leaves nothing behind after P.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_private.h"
#include "rates.h"
#include "util.h"

#define SLOTS (MCD_RATE_BUCKETS + 1)

/* The keys of the buckets a decision reads, oldest first (one for a fixed window): the span's,
 * and after a count, the next bucket too (where an Asterisk a little ahead counts). */
struct window {
	char master[MCD_KEY_MAX + 1];
	size_t master_len;
	char keys[SLOTS + 1][MCD_KEY_MAX + 1];
	const char *key_ptrs[SLOTS + 1];
	size_t lens[SLOTS + 1];
	uint64_t values[SLOTS + 1];
	unsigned int count;          /* keys read: SLOTS (or 1), SLOTS + 1 after a count */
	unsigned int current;        /* the index of the bucket this decision counts in */
	int64_t first;               /* the index of the oldest bucket, or of the window */
	int64_t width_ms;            /* of a bucket, or of the window */
	int64_t end_ms;              /* a fixed window's end */
	long ttl_s;                  /* what a new bucket lives: while any window needs it */
};

int mcd_rate_parse_period(const char *text, long *seconds)
{
	static const struct {
		char unit;
		long seconds;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
	char number[24];
	size_t len = text ? strlen(text) : 0;
	long scale = 1, value;

	/* Digits and a unit, nothing around them. */
	if (!len || len >= sizeof(number) || strspn(text, "0123456789") < len - 1) {
		return -1;
	}
	memcpy(number, text, len + 1);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (number[len - 1] == units[i].unit) {
			number[--len] = '\0';
			scale = units[i].seconds;
			break;
		}
	}
	if (!len || mcd_parse_long(number, 1, MCD_RATE_PERIOD_MAX / scale, &value)) {
		return -1;
	}
	*seconds = value * scale;
	return 0;
}

static mcd_rc check_rate(const struct mcd_rate *rate)
{
	size_t len = rate->name ? strlen(rate->name) : 0;

	if (!len || !rate->limit || rate->period_s < 1 || rate->period_s > MCD_RATE_PERIOD_MAX) {
		return MCD_ARGUMENT_NEEDED;
	}
	if (len > MCD_NAME_MAX) {
		return MCD_KEY_TOO_LONG;
	}
	/* No ':': it separates the name from the period and the bucket in keys. */
	return mcd_is_token(rate->name, len) && !strchr(rate->name, ':') ? MEMCACHED_SUCCESS
		: MEMCACHED_BAD_KEY_PROVIDED;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b < 0);
}

/* The key that places all of a rate's buckets on one server: rate:NAME. */
static mcd_rc master_of(struct mcd_client *client, const struct mcd_rate *rate, struct window *w)
{
	char name[MCD_KEY_MAX + 1];
	mcd_rc rc = check_rate(rate);

	if (rc == MEMCACHED_SUCCESS) {
		snprintf(name, sizeof(name), "rate:%s", rate->name);
		rc = mcd_client_own_key(client, name, w->master, &w->master_len);
	}
	return rc;
}

/* The window of rate at now_ms and its keys, rate:NAME:PERIOD:MODE:INDEX (one more, after the
 * current bucket, with next). */
static mcd_rc window_of(struct mcd_client *client, const struct mcd_rate *rate, int64_t now_ms, bool next,
	struct window *w)
{
	const char *mode = rate->fixed ? (rate->attempts ? "fa" : "f") : (rate->attempts ? "a" : "s");
	const int64_t period_ms = (int64_t) rate->period_s * 1000;
	char name[MCD_KEY_MAX + 1];
	mcd_rc rc = MEMCACHED_SUCCESS;

	if (rate->fixed) {
		const int64_t offset_ms = (int64_t) rate->utc_offset_s * 1000;

		w->count = 1;
		w->width_ms = period_ms;
		w->first = floor_div(now_ms + offset_ms, period_ms);
		w->end_ms = (w->first + 1) * period_ms - offset_ms;
		/* An hour more for windows of hours and days: a change of the UTC offset (summer
		 * time) must not end the key before the window. */
		w->ttl_s = (long) ((w->end_ms - now_ms + 999) / 1000) + 3 + (rate->period_s >= 3600 ? 3600 : 0);
	} else {
		w->count = SLOTS + (next ? 1 : 0);
		w->width_ms = period_ms / MCD_RATE_BUCKETS;
		w->first = floor_div(now_ms, w->width_ms) - MCD_RATE_BUCKETS;
		/* memcached's clock ticks once a second: an item can go up to 2 s before its ttl. */
		w->ttl_s = (long) ((SLOTS * w->width_ms + 999) / 1000) + 3;
	}
	w->current = rate->fixed ? 0 : SLOTS - 1;
	for (unsigned int i = 0; i < w->count && rc == MEMCACHED_SUCCESS; i++) {
		snprintf(name, sizeof(name), "rate:%s:%ld:%s:%lld", rate->name, rate->period_s, mode,
			(long long) (w->first + i));
		rc = mcd_client_own_key(client, name, w->keys[i], &w->lens[i]);
		w->key_ptrs[i] = w->keys[i];
	}
	return rc;
}

static mcd_rc take_bucket(const memcached_result_st *result, void *arg)
{
	struct window *w = arg;
	const char *key = memcached_result_key_value(result);
	size_t len = memcached_result_key_length(result);

	for (unsigned int i = 0; i < w->count; i++) {
		if (len == w->lens[i] && !memcmp(key, w->keys[i], len)) {
			w->values[i] = mcd_uint64_of(memcached_result_value(result), memcached_result_length(result));
		}
	}
	return MEMCACHED_SUCCESS;
}

static mcd_rc read_window(struct mcd_client *client, struct mcd_call *call, struct window *w)
{
	mcd_rc rc;

	memset(w->values, 0, sizeof(w->values));
	rc = mcd_mget_each(call->memc, w->master, w->master_len, w->key_ptrs, w->lens, w->count, take_bucket, w);
	if (mcd_connection_lost(client, call->memc, call->server, rc)) {
		/* A read changes nothing: once more, on a fresh connection. */
		memset(w->values, 0, sizeof(w->values));
		rc = mcd_mget_each(call->memc, w->master, w->master_len, w->key_ptrs, w->lens, w->count, take_bucket, w);
	}
	return rc;
}

static uint64_t sum_of(const struct window *w)
{
	uint64_t sum = 0;

	for (unsigned int i = 0; i < w->count; i++) {
		sum += w->values[i];
	}
	return sum;
}

/* Until a place frees: the oldest buckets leave the span one by one (a fixed window ends). */
static int64_t retry_after(const struct window *w, uint64_t limit, int64_t now_ms)
{
	uint64_t left = sum_of(w);

	if (w->count == 1) {
		return w->end_ms - now_ms;
	}
	for (unsigned int i = 0; i < w->count; i++) {
		left -= w->values[i];
		if (left < limit) {
			/* Bucket first + i is in the span until the current one is first + i + SLOTS. */
			return (w->first + i + SLOTS) * w->width_ms - now_ms;
		}
	}
	return (w->first + 2 * SLOTS - 1) * w->width_ms - now_ms;
}

/* The wall clock in milliseconds since the epoch. */
static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Count one in the current bucket, then read the span again with the next bucket: a decision
 * that read the buckets just before ours, or that counts in the next one, is seen (of two
 * racing, at least one sees the other). Over the limit, stepped back (unless attempts count). */
static mcd_rc count_and_check(struct mcd_client *client, struct mcd_call *call, const struct mcd_rate *rate,
	int64_t now_ms, struct window *w, uint64_t *sum, bool *admitted)
{
	const time_t expiry = (time_t) mcd_wire_expiry(w->ttl_s, now_ms / 1000);
	uint64_t stepped;
	mcd_rc rc = mcd_counter_step(call->memc, call->key, call->key_len, w->keys[w->current],
		w->lens[w->current], 1, expiry, &stepped);

	if (rc == MEMCACHED_SUCCESS && !rate->fixed) {
		if ((rc = window_of(client, rate, now_ms, true, w)) == MEMCACHED_SUCCESS) {
			rc = read_window(client, call, w);
		}
	} else if (rc == MEMCACHED_SUCCESS) {
		w->values[w->current] = stepped;
	}
	if (rc != MEMCACHED_SUCCESS) {
		return rc;
	}
	*sum = sum_of(w);
	*admitted = *sum <= rate->limit;
	if (!*admitted && !rate->attempts && mcd_counter_step(call->memc, call->key, call->key_len,
		w->keys[w->current], w->lens[w->current], -1, expiry, &stepped) == MEMCACHED_SUCCESS) {
		/* Only admissions count (had the step back failed, the extra would only refuse more). */
		(*sum)--;
		w->values[w->current]--;
	}
	return MEMCACHED_SUCCESS;
}

static mcd_rc decide(struct mcd_client *client, const struct mcd_rate *rate, int64_t now_ms, bool count_it,
	struct mcd_rate_answer *answer)
{
	struct window *w = calloc(1, sizeof(*w));
	struct mcd_call call;
	uint64_t sum;
	mcd_rc rc;

	*answer = (struct mcd_rate_answer) { .admitted = false };
	if (!w) {
		return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	}
	if ((rc = master_of(client, rate, w)) != MEMCACHED_SUCCESS) {
		free(w);
		return rc;
	}
	memcpy(call.key, w->master, w->master_len + 1);
	call.key_len = w->master_len;
	/* The counters' pool: steps go in the text protocol there (see mcd_counter_pool). */
	if ((rc = mcd_call_begin(client, mcd_counter_pool(client), &call)) != MEMCACHED_SUCCESS) {
		free(w);
		return rc;
	}
	/* The time once a connection is had: a wait for one must not date the decision back. */
	now_ms = now_ms < 0 ? wall_ms() : now_ms;
	if ((rc = window_of(client, rate, now_ms, false, w)) == MEMCACHED_SUCCESS) {
		rc = read_window(client, &call, w);
	}
	sum = sum_of(w);
	if (rc == MEMCACHED_SUCCESS && count_it && (rate->attempts || sum < rate->limit)) {
		rc = count_and_check(client, &call, rate, now_ms, w, &sum, &answer->admitted);
	} else if (rc == MEMCACHED_SUCCESS) {
		/* Not counted: a peek, or a refusal that needs no write. */
		answer->admitted = count_it ? false : sum < rate->limit;
	}
	mcd_call_end(client, &call, rc);
	if (rc == MEMCACHED_SUCCESS) {
		answer->count = sum;
		answer->retry_ms = answer->admitted ? 0 : retry_after(w, rate->limit, now_ms);
		if (answer->retry_ms < 0) {
			answer->retry_ms = 0;
		}
		rc = answer->admitted || !count_it ? MEMCACHED_SUCCESS : MCD_RATE_LIMITED;
	}
	free(w);
	return rc;
}

mcd_rc mcd_rate_check(struct mcd_client *client, const struct mcd_rate *rate, int64_t now_ms,
	struct mcd_rate_answer *answer)
{
	uint64_t started = mcd_now_us();

	return mcd_stats_record(client->stats, MCD_OP_RATE, started, decide(client, rate, now_ms, true, answer));
}

mcd_rc mcd_rate_peek(struct mcd_client *client, const struct mcd_rate *rate, int64_t now_ms,
	struct mcd_rate_answer *answer)
{
	/* Not counted in the stats: their rate operations are decisions, admitted or refused. */
	return decide(client, rate, now_ms, false, answer);
}

/* --- the rates decided on lately --- */

struct mcd_rate_book {
	pthread_mutex_t lock;
	struct mcd_rate_seen seen[MCD_RATE_BOOK_SIZE];   /* unused: last_ms 0 */
};

struct mcd_rate_book *mcd_rate_book_create(void)
{
	struct mcd_rate_book *book = calloc(1, sizeof(*book));

	if (book) {
		pthread_mutex_init(&book->lock, NULL);
	}
	return book;
}

void mcd_rate_book_destroy(struct mcd_rate_book *book)
{
	if (book) {
		pthread_mutex_destroy(&book->lock);
		free(book);
	}
}

static bool same_rate(const struct mcd_rate_seen *s, const struct mcd_rate *rate)
{
	return s->last_ms && s->limit == rate->limit && s->period_s == rate->period_s && s->attempts == rate->attempts
		&& s->fixed == rate->fixed && !strcmp(s->name, rate->name);
}

void mcd_rate_book_note(struct mcd_rate_book *book, const struct mcd_rate *rate,
	const struct mcd_rate_answer *answer, int64_t now_ms)
{
	struct mcd_rate_seen *s = NULL, *oldest = NULL;

	if (!book) {
		return;
	}
	pthread_mutex_lock(&book->lock);
	for (size_t i = 0; i < MCD_RATE_BOOK_SIZE && !s; i++) {
		if (same_rate(&book->seen[i], rate)) {
			s = &book->seen[i];
		} else if (!oldest || book->seen[i].last_ms < oldest->last_ms) {
			oldest = &book->seen[i];
		}
	}
	if (!s) {
		s = oldest;
		*s = (struct mcd_rate_seen) { .period_s = rate->period_s, .attempts = rate->attempts, .fixed = rate->fixed };
		snprintf(s->name, sizeof(s->name), "%s", rate->name);
	}
	s->limit = rate->limit;
	s->count = answer->count;
	s->admitted += answer->admitted;
	s->refused += !answer->admitted;
	s->last_ms = now_ms > 0 ? now_ms : 1;
	pthread_mutex_unlock(&book->lock);
}

static int later_first(const void *a, const void *b)
{
	const int64_t x = ((const struct mcd_rate_seen *) a)->last_ms, y = ((const struct mcd_rate_seen *) b)->last_ms;

	return (x < y) - (x > y);
}

size_t mcd_rate_book_list(struct mcd_rate_book *book, struct mcd_rate_seen *out, size_t max)
{
	struct mcd_rate_seen *all = malloc(sizeof(book->seen));
	size_t count = 0;

	if (!book || !all) {
		free(all);
		return 0;
	}
	pthread_mutex_lock(&book->lock);
	for (size_t i = 0; i < MCD_RATE_BOOK_SIZE; i++) {
		if (book->seen[i].last_ms) {
			all[count++] = book->seen[i];
		}
	}
	pthread_mutex_unlock(&book->lock);
	qsort(all, count, sizeof(*all), later_first);
	count = count < max ? count : max;
	memcpy(out, all, count * sizeof(*out));
	free(all);
	return count;
}
