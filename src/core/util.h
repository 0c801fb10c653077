/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * util: the small strict parsers shared by the configuration, the client and
 * the glue, and the word lists of the coordination's registry. A value is
 * accepted whole or refused, never half-read.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_UTIL_H
#define MCD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* memcached's own limit on a key, prefix included. */
#define MCD_KEY_MAX 250

/* The largest step memcached's incr/decr take at once (a 32-bit delta on the wire). */
#define MCD_INCREMENT_MAX 4294967295LL

enum mcd_key_status {
	MCD_KEY_IS_OK,
	MCD_KEY_IS_EMPTY,
	MCD_KEY_IS_TOO_LONG,         /* prefix + key over MCD_KEY_MAX bytes */
	MCD_KEY_HAS_BAD_BYTES,       /* a space, control character or DEL */
};

/*! Parse a decimal integer in [min, max], surrounding blanks allowed. 0 on success, -1 otherwise. */
int mcd_parse_long(const char *text, long min, long max, long *out);

/*! Parse an optionally signed decimal integer that fits int64_t. 0 on success, -1 otherwise. */
int mcd_parse_int64(const char *text, int64_t *out);

/*! Parse an unsigned decimal integer that fits uint64_t (no sign). 0 on success, -1 otherwise. */
int mcd_parse_uint64(const char *text, uint64_t *out);

/*! The whole number in the first len bytes of text (not NUL-terminated, as memcached hands
 * values over), or 0 when they hold none. */
uint64_t mcd_uint64_of(const char *text, size_t len);

/*! Parse a counter step: a whole number from -MCD_INCREMENT_MAX to MCD_INCREMENT_MAX. 0 or -1. */
int mcd_parse_increment(const char *text, int64_t *out);

/*! True when no byte is a space, a control character or DEL: what a memcached key may hold
 * (the text protocol ends a command there), and a one-word memcached.conf value too. */
bool mcd_is_token(const char *bytes, size_t len);

/*! Join prefix and key into out (MCD_KEY_MAX + 1 bytes) when the result is a key memcached takes. */
enum mcd_key_status mcd_build_key(const char *prefix, size_t prefix_len, const char *key, char *out,
	size_t *out_len);

/*! True when the space-separated list holds word (a whole word; never the empty one). */
bool mcd_listed(const char *list, const char *word);

/*! Call visit for each word of the space-separated list, as a string of its own; words longer
 * than a key are passed over. */
void mcd_each_word(const char *list, void (*visit)(const char *word, void *arg), void *arg);

/*! Call visit for each "category:group" word of a list (split at its first ':'); words without
 * a ':' are passed over. */
void mcd_each_listed(const char *groups, void (*visit)(const char *category, const char *group, void *arg),
	void *arg);

/* The room mcd_escape needs to show n bytes whole: 4 a byte at most ("\x1b"), and the NUL. */
#define MCD_ESCAPED_SIZE(n) (4 * (size_t) (n) + 1)

/*! The len bytes at bytes as text that a log line or a terminal shows without acting on it, into
 * out (size bytes, NUL-terminated when size > 0): printable ASCII as is, a backslash as "\\", CR,
 * LF and tab as "\r", "\n", "\t", every other byte as "\xNN". Text that does not fit is cut at a
 * whole escape and ends with "..." (when size > 3). Returns out. */
char *mcd_escape(const char *bytes, size_t len, char *out, size_t size);

/*! The monotonic time ms milliseconds from now (for waits a clock stepped back cannot stall). */
struct timespec mcd_monotonic_after_ms(long ms);

/*! Whether the monotonic time at has come. */
bool mcd_monotonic_passed(const struct timespec *at);

#endif
