/*
 * libFuzzer target: the strict number parsers, server strings, key building
 * and the registry's word lists. The first byte picks the parser; the rest is
 * its text. A parse that succeeds must mean what the text says.
 */

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "util.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

/* What mcd_each_word and mcd_each_listed handed over, joined again. */
struct visited {
	char words[1024];
	size_t used;
	unsigned int count;
};

static void take_word(const char *word, void *arg)
{
	struct visited *v = arg;

	CHECK(word[0] && mcd_is_token(word, strlen(word)) && strlen(word) <= MCD_KEY_MAX);
	v->used += (size_t) snprintf(v->words + v->used, sizeof(v->words) - v->used, "%s%s", v->count++ ? " " : "",
		word);
}

static void take_entry(const char *category, const char *group, void *arg)
{
	struct visited *v = arg;

	CHECK(!strchr(category, ':') && !strchr(category, ' ') && !strchr(group, ' '));
	v->count++;
}

/* The list's words, split by hand: each run of bytes other than ' ', up to MCD_KEY_MAX long,
 * with no control bytes. */
static void reference_words(const char *list, const char *word, struct visited *v, bool *listed,
	unsigned int *entries)
{
	char copy[512];

	*listed = false;
	*entries = 0;
	snprintf(copy, sizeof(copy), "%s", list);
	for (char *save = NULL, *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		*listed = *listed || (word[0] && !strcmp(w, word));
		if (strlen(w) <= MCD_KEY_MAX && mcd_is_token(w, strlen(w))) {
			take_word(w, v);
			*entries += strchr(w, ':') != NULL;
		}
	}
}

/* The text without surrounding blanks and a leading '+', as printf would write the number. */
static int same_number(const char *text, const char *printed)
{
	size_t len;

	while (*text == ' ' || *text == '\t') {
		text++;
	}
	if (*text == '+') {
		text++;
	}
	len = strlen(text);
	while (len && (text[len - 1] == ' ' || text[len - 1] == '\t')) {
		len--;
	}
	/* Leading zeros are allowed in the input: compare numerically past them. */
	while (len > 1 && text[0] == '0') {
		text++;
		len--;
	}
	if (text[0] == '-') {
		const char *digits = text + 1;
		size_t dlen = len - 1;
		while (dlen > 1 && digits[0] == '0') {
			digits++;
			dlen--;
		}
		if (dlen == 1 && digits[0] == '0') {
			return !strcmp(printed, "0");
		}
		return printed[0] == '-' && strlen(printed + 1) == dlen && !memcmp(printed + 1, digits, dlen);
	}
	return strlen(printed) == len && !memcmp(printed, text, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[512], printed[32], err[256], key[MCD_KEY_MAX + 1];
	struct mcd_server server;
	int64_t i64;
	uint64_t u64;
	long l;
	size_t len;

	if (size < 1 || size > sizeof(text)) {
		return 0;
	}
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';

	switch (data[0] % 6) {
	case 0:
		if (mcd_parse_int64(text, &i64) == 0) {
			snprintf(printed, sizeof(printed), "%" PRId64, i64);
			CHECK(same_number(text, printed));
		}
		break;
	case 1:
		if (mcd_parse_uint64(text, &u64) == 0) {
			snprintf(printed, sizeof(printed), "%" PRIu64, u64);
			CHECK(same_number(text, printed));
		}
		break;
	case 2:
		if (mcd_parse_long(text, -100, 100, &l) == 0) {
			CHECK(l >= -100 && l <= 100);
		}
		break;
	case 3:
		if (mcd_parse_server(text, &server, err, sizeof(err)) == 0) {
			/* A socket's path, or a host and a port; a weight in range either way. */
			if (server.unix_socket) {
				CHECK(server.host[0] == '/' && server.port == 0);
				CHECK(strlen(server.host) < MCD_SOCKET_PATH_MAX);
				CHECK(mcd_is_token(server.host, strlen(server.host)) && !strchr(server.host, ','));
			} else {
				CHECK(server.host[0] && server.port >= 1 && server.port <= 65535);
				CHECK(!strpbrk(server.host, " \t\r\n[]/,"));
			}
			CHECK(server.weight >= 1 && server.weight <= MCD_WEIGHT_MAX);
		}
		break;
	case 4: {
		/* Up to the first '|' is the prefix, the rest the key. */
		char *bar = strchr(text, '|');
		const char *prefix = bar ? text : "";
		const char *k = bar ? bar + 1 : text;
		size_t prefix_len = bar ? (size_t) (bar - text) : 0;
		if (prefix_len > MCD_KEY_MAX) {
			break;
		}
		if (mcd_build_key(prefix, prefix_len, k, key, &len) == MCD_KEY_IS_OK) {
			CHECK(len == prefix_len + strlen(k) && len <= MCD_KEY_MAX);
			CHECK(strlen(key) == len);
			CHECK(mcd_is_token(key + prefix_len, strlen(k)));
		}
		break;
	}
	case 5: {
		/* Up to the first '|' is a word, the rest a list. */
		char *bar = strchr(text, '|');
		const char *word = bar ? text : "";
		const char *list = bar ? bar + 1 : text;
		struct visited seen = { .used = 0 }, expected = { .used = 0 }, entries = { .used = 0 };
		unsigned int expected_entries;
		bool listed;

		if (bar) {
			*bar = '\0';
		}
		reference_words(list, word, &expected, &listed, &expected_entries);
		mcd_each_word(list, take_word, &seen);
		CHECK(seen.count == expected.count && !strcmp(seen.words, expected.words));
		/* A word with a space is in no list: mcd_listed looks for the whole text. */
		CHECK(strchr(word, ' ') || mcd_listed(list, word) == listed);
		mcd_each_listed(list, take_entry, &entries);
		CHECK(entries.count == expected_entries);
		break;
	}
	}
	return 0;
}
