/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * rates: limits on how many calls are admitted per period, shared by every
 * Asterisk that uses the same memcached (MCDRATE). By default a sliding
 * limit, at most `limit` admissions in any span of `period`, counting only
 * what was admitted; with attempts counted, every try takes a place; with
 * fixed windows, a quota per calendar window. Knows nothing of Asterisk.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_RATES_H
#define MCD_RATES_H

#include <stdbool.h>
#include <stdint.h>

#include "client.h"

/* A sliding period is counted in this many buckets (plus the current one): at least
 * MCD_RATE_BUCKETS / (MCD_RATE_BUCKETS + 1) of the limit (95%) is usable under steady overload. */
#define MCD_RATE_BUCKETS 20

/* The longest period: 30 days. */
#define MCD_RATE_PERIOD_MAX (30L * 24 * 3600)

struct mcd_rate {
	const char *name;            /* a token without ':', up to MCD_NAME_MAX */
	uint64_t limit;              /* 1 or more */
	long period_s;               /* 1 to MCD_RATE_PERIOD_MAX */
	bool attempts;               /* every attempt counts, refused ones too (option a) */
	bool fixed;                  /* calendar windows instead of a sliding span (option f) */
	long utc_offset_s;           /* for fixed windows: they start on this local clock */
};

struct mcd_rate_answer {
	bool admitted;               /* (for a peek: would be) */
	uint64_t count;              /* what counts against the limit now, this call included */
	int64_t retry_ms;            /* when refused: until a place frees (at the soonest); else 0 */
};

/*! Parse a period: whole seconds, or with a unit s, m, h or d ("30", "1m", "1h", "1d"), from
 * 1 s to MCD_RATE_PERIOD_MAX. 0, or -1 when text is not one. */
int mcd_rate_parse_period(const char *text, long *seconds);

/*!
 * Decide one call at now_ms (wall clock, milliseconds since the epoch: every Asterisk must
 * agree on it; below 0, the clock is read once a connection is had) and count it when it is
 * admitted (or always, with attempts). MCD_SUCCESS when admitted, MCD_RATE_LIMITED when
 * refused, a refusal of rate's fields (MCD_ARGUMENT_NEEDED, MCD_KEY_TOO_LONG,
 * MEMCACHED_BAD_KEY_PROVIDED), else the failure (nothing known of the limit).
 */
mcd_rc mcd_rate_check(struct mcd_client *client, const struct mcd_rate *rate, int64_t now_ms,
	struct mcd_rate_answer *answer);

/*! The same without counting anything: whether a call would be admitted now, and the count. */
mcd_rc mcd_rate_peek(struct mcd_client *client, const struct mcd_rate *rate, int64_t now_ms,
	struct mcd_rate_answer *answer);

/* The rates this Asterisk decided on lately (for the console and the manager): at most
 * MCD_RATE_BOOK_SIZE, the one checked longest ago making room for a new one. */
#define MCD_RATE_BOOK_SIZE 256

struct mcd_rate_seen {
	char name[MCD_NAME_MAX + 1];
	uint64_t limit;
	long period_s;
	bool attempts;
	bool fixed;
	uint64_t count;              /* what counted against the limit at the last decision */
	uint64_t admitted;           /* decisions here since it was first noted */
	uint64_t refused;
	int64_t last_ms;             /* the last decision's time */
};

struct mcd_rate_book;

/*! An empty book, or NULL. */
struct mcd_rate_book *mcd_rate_book_create(void);

void mcd_rate_book_destroy(struct mcd_rate_book *book);

/*! Note a decision (answer from mcd_rate_check) at now_ms. */
void mcd_rate_book_note(struct mcd_rate_book *book, const struct mcd_rate *rate,
	const struct mcd_rate_answer *answer, int64_t now_ms);

/*! Copy up to max of the book's rates into out, the last decided first; how many. */
size_t mcd_rate_book_list(struct mcd_rate_book *book, struct mcd_rate_seen *out, size_t max);

#endif
