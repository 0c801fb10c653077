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

/*! Parse a decimal integer in [min, max], surrounding blanks allowed. 0 on success, -1 otherwise. */
int mcd_parse_long(const char *text, long min, long max, long *out);

/*! Parse an optionally signed decimal integer that fits int64_t. 0 on success, -1 otherwise. */
int mcd_parse_int64(const char *text, int64_t *out);

/*! Parse an unsigned decimal integer that fits uint64_t (no sign). 0 on success, -1 otherwise. */
int mcd_parse_uint64(const char *text, uint64_t *out);

/*! True when every byte may stand in a memcached key: no control characters, no space, no DEL. */
bool mcd_key_bytes_valid(const char *bytes, size_t len);

#endif
