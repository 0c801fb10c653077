/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * results: what an operation can end with, its name as the dialplan sees it
 * in MCDRESULT, and the one classification of results (answer, refused,
 * error, fault, resting, overload) that server health, the log limiter and
 * the statistics all use.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_RESULTS_H
#define MCD_RESULTS_H

/*
 * An operation's result: one of libmemcached's memcached_return_t values, or
 * one of the module's own below, which sit past libmemcached's range.
 */
typedef int mcd_rc;

/* The few libmemcached results the glue names, so it need not include libmemcached. */
enum {
	MCD_SUCCESS = 0,             /* MEMCACHED_SUCCESS */
	MCD_NOTFOUND = 16,           /* MEMCACHED_NOTFOUND */
	MCD_MEMORY_ALLOCATION_FAILURE = 17, /* MEMCACHED_MEMORY_ALLOCATION_FAILURE */
	MCD_NO_SERVERS = 20,         /* MEMCACHED_NO_SERVERS */
	MCD_SERVER_TEMPORARILY_DISABLED = 47, /* MEMCACHED_SERVER_TEMPORARILY_DISABLED */
};

enum {
	MCD_ARGUMENT_NEEDED = 1000,  /* an argument is missing or of the wrong kind */
	MCD_KEY_TOO_LONG,            /* prefix + key longer than 250 bytes */
	MCD_VALUE_TOO_LONG,          /* value longer than max_value_length */
	MCD_BAD_INCREMENT,           /* counter increment not a whole number in range */
	MCD_BINARY_PROTO_NEEDED,     /* kept from the original module; see README */
	MCD_POOL_EXHAUSTED,          /* every pooled connection stayed busy for pool_wait */
	MCD_SENT,                    /* written without waiting for an answer (noreply) */
	MCD_GROUP_FULL,              /* the group already has its limit of members */
	MCD_LOCK_BUSY,               /* another holder kept the lock (for the whole wait) */
	MCD_NOT_LOCKED,              /* an unlock of a lock not held: expired, or another's */
	MCD_KEY_RESERVED,            /* a key in the module's own namespace (see MCD_OWN_KEY_PREFIX) */
	MCD_RATE_LIMITED,            /* MCDRATE: the limit is reached; the call was not counted */
	MCD_OWN_RESULT_LAST = MCD_RATE_LIMITED,
};

/* What a result says about the call and the server. */
enum mcd_outcome {
	MCD_OUTCOME_ANSWER,          /* memcached answered as it does: stored, found, missing, exists */
	MCD_OUTCOME_REFUSED,         /* refused before anything was sent: bad key, argument, value */
	MCD_OUTCOME_ERROR,           /* the server answered with an error (client error, auth, ...) */
	MCD_OUTCOME_FAULT,           /* the server is unwell: timeout, refused or broken connection */
	MCD_OUTCOME_RESTING,         /* not tried: the server rests after repeated faults */
	MCD_OUTCOME_OVERLOAD,        /* not tried: every pooled connection was busy */
	MCD_OUTCOME_COUNT,
};

/*! The result's name as the dialplan sees it in MCDRESULT, e.g. "MEMCACHED_SUCCESS". Never NULL. */
const char *mcd_rc_name(mcd_rc rc);

/*! What rc says about the call and the server it was for. */
enum mcd_outcome mcd_rc_outcome(mcd_rc rc);

/*! The outcome's name in lower case ("answer", "fault", ...). */
const char *mcd_outcome_name(enum mcd_outcome outcome);

/* Result slots, for counting results in an array: libmemcached's, then the module's own. */
#define MCD_RESULT_SLOTS 64

/*! The slot of rc, and back: mcd_result_of_slot gives the rc (-1 for the catch-all slot). */
int mcd_result_slot(mcd_rc rc);
mcd_rc mcd_result_of_slot(int slot);

#endif
