/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * util: strict number parsing, counter steps and key byte checks.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* strtoll/strtoull accept things we refuse: empty text, trailing junk, and
 * (for strtoull) a minus sign that wraps around. */
static const char *skip_blanks(const char *text)
{
	while (*text == ' ' || *text == '\t') {
		text++;
	}
	return text;
}

static int only_blanks_left(const char *end)
{
	return *skip_blanks(end) == '\0';
}

int mcd_parse_int64(const char *text, int64_t *out)
{
	char *end;
	long long value;

	text = skip_blanks(text);
	if (!(isdigit((unsigned char) *text) || ((*text == '-' || *text == '+')
		&& isdigit((unsigned char) text[1])))) {
		return -1;
	}
	errno = 0;
	value = strtoll(text, &end, 10);
	if (errno || !only_blanks_left(end)) {
		return -1;
	}
	*out = value;
	return 0;
}

int mcd_parse_uint64(const char *text, uint64_t *out)
{
	char *end;
	unsigned long long value;

	text = skip_blanks(text);
	if (!isdigit((unsigned char) *text)) {
		return -1;
	}
	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno || !only_blanks_left(end)) {
		return -1;
	}
	*out = value;
	return 0;
}

int mcd_parse_long(const char *text, long min, long max, long *out)
{
	int64_t value;

	if (mcd_parse_int64(text, &value) || value < min || value > max) {
		return -1;
	}
	*out = (long) value;
	return 0;
}

uint64_t mcd_uint64_of(const char *text, size_t len)
{
	char digits[24];
	uint64_t value = 0;

	if (len >= sizeof(digits)) {
		return 0;
	}
	memcpy(digits, text, len);
	digits[len] = '\0';
	return mcd_parse_uint64(digits, &value) ? 0 : value;
}

int mcd_parse_increment(const char *text, int64_t *out)
{
	int64_t value;

	if (mcd_parse_int64(text, &value) || value > MCD_INCREMENT_MAX || value < -MCD_INCREMENT_MAX) {
		return -1;
	}
	*out = value;
	return 0;
}

enum mcd_key_status mcd_build_key(const char *prefix, size_t prefix_len, const char *key, char *out,
	size_t *out_len)
{
	size_t key_len = key ? strlen(key) : 0;

	if (key_len == 0) {
		return MCD_KEY_IS_EMPTY;
	}
	if (prefix_len + key_len > MCD_KEY_MAX) {
		return MCD_KEY_IS_TOO_LONG;
	}
	/* A space or CR/LF in a text-protocol key would end the command early. */
	if (!mcd_is_token(key, key_len)) {
		return MCD_KEY_HAS_BAD_BYTES;
	}
	memcpy(out, prefix, prefix_len);
	memcpy(out + prefix_len, key, key_len + 1);
	*out_len = prefix_len + key_len;
	return MCD_KEY_IS_OK;
}

bool mcd_is_token(const char *bytes, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char) bytes[i];
		if (c <= ' ' || c == 0x7f) {
			return false;
		}
	}
	return true;
}

/* --- space-separated lists (the coordination's registry) --- */

bool mcd_listed(const char *list, const char *word)
{
	size_t len = strlen(word);

	if (!len) {
		return false;
	}
	for (const char *p = list; (p = strstr(p, word)); p += len) {
		if ((p == list || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0')) {
			return true;
		}
	}
	return false;
}

void mcd_each_word(const char *list, void (*visit)(const char *word, void *arg), void *arg)
{
	for (const char *p = list; *p; ) {
		char word[MCD_KEY_MAX + 1];
		size_t len;

		p += strspn(p, " ");
		len = strcspn(p, " ");
		/* A word with control bytes (any client can write the lists) never reaches a
		 * manager event, the console or the log. */
		if (len && len < sizeof(word) && mcd_is_token(p, len)) {
			memcpy(word, p, len);
			word[len] = '\0';
			visit(word, arg);
		}
		p += len;
	}
}

struct listed_visit {
	void (*visit)(const char *category, const char *group, void *arg);
	void *arg;
};

static void visit_entry(const char *word, void *arg)
{
	const struct listed_visit *v = arg;
	char entry[MCD_KEY_MAX + 1], *colon;

	snprintf(entry, sizeof(entry), "%s", word);
	if ((colon = strchr(entry, ':'))) {
		*colon = '\0';
		v->visit(entry, colon + 1, v->arg);
	}
}

void mcd_each_listed(const char *groups, void (*visit)(const char *category, const char *group, void *arg),
	void *arg)
{
	struct listed_visit v = { .visit = visit, .arg = arg };

	mcd_each_word(groups, visit_entry, &v);
}

/* One byte as mcd_escape shows it, into piece (4 bytes, no NUL); its length. */
static size_t escape_byte(unsigned char c, char *piece)
{
	static const char hex[] = "0123456789abcdef";

	if (c >= 0x20 && c < 0x7f && c != '\\') {
		piece[0] = (char) c;
		return 1;
	}
	piece[0] = '\\';
	switch (c) {
	case '\\':
		piece[1] = '\\';
		return 2;
	case '\r':
		piece[1] = 'r';
		return 2;
	case '\n':
		piece[1] = 'n';
		return 2;
	case '\t':
		piece[1] = 't';
		return 2;
	}
	piece[1] = 'x';
	piece[2] = hex[c >> 4];
	piece[3] = hex[c & 0xf];
	return 4;
}

char *mcd_escape(const char *bytes, size_t len, char *out, size_t size)
{
	size_t needed = 0, used = 0, room;
	char piece[4];

	if (!size) {
		return out;
	}
	for (size_t i = 0; i < len; i++) {
		needed += escape_byte((unsigned char) bytes[i], piece);
	}
	/* Cut short, the text keeps room for "...". */
	room = needed < size || size <= 3 ? size - 1 : size - 4;
	for (size_t i = 0; i < len; i++) {
		size_t n = escape_byte((unsigned char) bytes[i], piece);

		if (used + n > room) {
			break;
		}
		memcpy(out + used, piece, n);
		used += n;
	}
	if (needed >= size && size > 3) {
		memcpy(out + used, "...", 3);
		used += 3;
	}
	out[used] = '\0';
	return out;
}

struct timespec mcd_monotonic_after_ms(long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

bool mcd_monotonic_passed(const struct timespec *at)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > at->tv_sec || (now.tv_sec == at->tv_sec && now.tv_nsec >= at->tv_nsec);
}
