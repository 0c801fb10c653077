/*
 * libFuzzer target: memcached.conf options. The input is lines of name=value
 * fed to mcd_settings_apply, then mcd_settings_finish. Whatever the input,
 * nothing may crash, and settings that finish must be within their bounds.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_settings(const struct mcd_settings *s)
{
	CHECK(s->server_count >= 1 && s->server_count <= MCD_MAX_SERVERS);
	for (unsigned int i = 0; i < s->server_count; i++) {
		const struct mcd_server *server = &s->servers[i];

		CHECK(server->host[0] != '\0');
		CHECK(strlen(server->host) < MCD_HOST_LEN);
		if (server->unix_socket) {
			/* Any path but one with a blank, a control character or the weight's comma. */
			CHECK(server->host[0] == '/' && server->port == 0);
			CHECK(mcd_is_token(server->host, strlen(server->host)) && !strchr(server->host, ','));
		} else {
			CHECK(!strpbrk(server->host, " \t\r\n[],/"));
			CHECK(server->port >= 1 && server->port <= 65535);
		}
		/* Weights other than 1 only where they work: consistent distribution. */
		CHECK(server->weight >= 1 && server->weight <= MCD_WEIGHT_MAX);
		CHECK(server->weight == 1 || s->distribution == MCD_DISTRIBUTION_CONSISTENT);
	}
	/* auto is decided by finish: binary exactly where SASL or replicas need it, or as set. */
	CHECK(s->binary_protocol == 0 || s->binary_protocol == 1);
	CHECK(s->binary_protocol || (!s->username[0] && !s->replicas));
	CHECK(strlen(s->prefix) < MCD_KEY_MAX);
	CHECK(mcd_is_token(s->prefix, strlen(s->prefix)));
	CHECK(s->ttl >= 0 && s->ttl <= MCD_TTL_MAX);
	CHECK(s->max_value_length >= 1 && s->max_value_length <= MCD_VALUE_LENGTH_MAX);
	CHECK(s->timeout_ms >= 1 && s->connect_timeout_ms >= 1);
	CHECK(s->pool_size >= 1 && s->pool_wait_s >= 0 && s->pool_wait_s <= 10);
	CHECK(s->replicas >= 0 && s->replicas < (long) s->server_count);
	CHECK(mcd_hash_name(s->hash) != NULL);
	CHECK(!s->username[0] == !s->password[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mcd_settings settings;
	char err[256];
	char *text = malloc(size + 1);
	char *line, *rest;

	if (!text) {
		return 0;
	}
	memcpy(text, data, size);
	text[size] = '\0';
	mcd_settings_defaults(&settings);
	for (line = strtok_r(text, "\n", &rest); line; line = strtok_r(NULL, "\n", &rest)) {
		char *eq = strchr(line, '=');
		if (!eq) {
			continue;
		}
		*eq = '\0';
		mcd_settings_apply(&settings, line, eq + 1, err, sizeof(err));
		CHECK(strlen(err) < sizeof(err));
	}
	if (mcd_settings_finish(&settings, err, sizeof(err)) == 0) {
		check_settings(&settings);
	}
	free(text);
	return 0;
}
