/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * mcd_util: the small parsers shared by the configuration and the dialplan
 * side. Strict: a value is accepted whole or refused, never half-read.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_UTIL_H
#define MCD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* memcached's own limit on a key, prefix included. */
#define MCD_KEY_MAX 250

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

/*! True when every byte may stand in a memcached key: no control characters, no space, no DEL. */
bool mcd_key_bytes_valid(const char *bytes, size_t len);

/*! Join prefix and key into out (MCD_KEY_MAX + 1 bytes) when the result is a key memcached takes. */
enum mcd_key_status mcd_build_key(const char *prefix, size_t prefix_len, const char *key, char *out,
	size_t *out_len);

#endif
