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
 * agree on it) and count it when it is admitted (or always, with attempts). MCD_SUCCESS when
 * admitted, MCD_RATE_LIMITED when refused, else the failure (nothing known of the limit).
 */
mcd_rc mcd_rate_check(struct mcd_client *client, const struct mcd_rate *rate, int64_t now_ms,
	struct mcd_rate_answer *answer);

/*! The same without counting anything: whether a call would be admitted now, and the count. */
mcd_rc mcd_rate_peek(struct mcd_client *client, const struct mcd_rate *rate, int64_t now_ms,
	struct mcd_rate_answer *answer);

#endif
