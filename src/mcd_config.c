/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * mcd_config: memcached.conf options -> validated settings.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mcd_config.h"
#include "mcd_util.h"

/* Same order as libmemcached's memcached_hash_t, checked in mcd_client.c. */
static const char *const hash_names[] = {
	"default", "md5", "crc", "fnv1_64", "fnv1a_64", "fnv1_32", "fnv1a_32",
	"hsieh", "murmur", "jenkins",
};

const char *mcd_hash_name(int i)
{
	if (i < 0 || (size_t) i >= sizeof(hash_names) / sizeof(hash_names[0])) {
		return NULL;
	}
	return hash_names[i];
}

void mcd_settings_defaults(struct mcd_settings *settings)
{
	memset(settings, 0, sizeof(*settings));
	settings->ttl = 0;
	settings->binary_protocol = true;
	settings->hash = 0;
	settings->distribution = MCD_DISTRIBUTION_MODULA;
	settings->max_value_length = 4096;
	settings->connect_timeout_ms = 300;
	settings->timeout_ms = 300;
	settings->retry_timeout_s = 2;
	settings->server_failure_limit = 2;
	settings->remove_failed_servers = false;
	settings->pool_size = 64;
	settings->pool_wait_s = 1;
}

int mcd_parse_server(const char *text, struct mcd_server *server, char *err, size_t errlen)
{
	const char *host = text;
	const char *port_text = NULL;
	size_t host_len;

	if (*text == '[') {
		/* [IPv6]:port -- the brackets keep the address's colons apart from the port's. */
		const char *close = strchr(text, ']');
		if (!close) {
			snprintf(err, errlen, "'%s' opens '[' without ']'", text);
			return -1;
		}
		host = text + 1;
		host_len = (size_t) (close - host);
		if (close[1] == ':') {
			port_text = close + 2;
		} else if (close[1] != '\0') {
			snprintf(err, errlen, "'%s' has text after ']' that is not ':port'", text);
			return -1;
		}
	} else {
		const char *colon = strchr(text, ':');
		if (colon && strchr(colon + 1, ':')) {
			snprintf(err, errlen, "'%s': write an IPv6 address as [address]:port", text);
			return -1;
		}
		host_len = colon ? (size_t) (colon - text) : strlen(text);
		port_text = colon ? colon + 1 : NULL;
	}

	if (host_len == 0) {
		snprintf(err, errlen, "'%s' names no host", text);
		return -1;
	}
	if (host_len >= sizeof(server->host)) {
		snprintf(err, errlen, "host name in '%.40s...' is longer than %zu bytes", text,
			sizeof(server->host) - 1);
		return -1;
	}
	for (size_t i = 0; i < host_len; i++) {
		unsigned char c = (unsigned char) host[i];
		/* Letters, digits and the punctuation of host names and IP addresses. */
		if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9')
			&& c != '.' && c != '-' && c != '_' && c != ':' && c != '%') {
			snprintf(err, errlen, "host in '%s' has a character not allowed in a host name", text);
			return -1;
		}
	}
	memcpy(server->host, host, host_len);
	server->host[host_len] = '\0';

	server->port = 11211;
	if (port_text) {
		long port;
		if (mcd_parse_long(port_text, 1, 65535, &port)) {
			snprintf(err, errlen, "port in '%s' is not a number from 1 to 65535", text);
			return -1;
		}
		server->port = (unsigned int) port;
	}
	return 0;
}

const char *mcd_server_address(const struct mcd_server *server, char buf[MCD_ADDRESS_LEN])
{
	const bool v6 = strchr(server->host, ':') != NULL;

	snprintf(buf, MCD_ADDRESS_LEN, "%s%s%s:%u", v6 ? "[" : "", server->host, v6 ? "]" : "",
		server->port);
	return buf;
}

static int parse_bool(const char *value, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(value, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(value, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/* A string option that must fit its buffer and hold no whitespace or control bytes. */
static enum mcd_config_status copy_token(const char *name, const char *value, char *dest,
	size_t destlen, char *err, size_t errlen)
{
	size_t len = strlen(value);

	if (len >= destlen) {
		snprintf(err, errlen, "%s is longer than %zu bytes", name, destlen - 1);
		return MCD_CONFIG_BAD_VALUE;
	}
	if (!mcd_key_bytes_valid(value, len)) {
		snprintf(err, errlen, "%s may not contain spaces or control characters", name);
		return MCD_CONFIG_BAD_VALUE;
	}
	memcpy(dest, value, len + 1);
	return MCD_CONFIG_OK;
}

/* Numeric options: name, where the value goes, and its accepted range. */
struct number_option {
	const char *name;
	size_t offset;
	long min;
	long max;
};

#define NUMBER_OPTION(name, field, min, max) { name, offsetof(struct mcd_settings, field), min, max }

static const struct number_option number_options[] = {
	NUMBER_OPTION("ttl", ttl, 0, MCD_TTL_MAX),
	NUMBER_OPTION("max_value_length", max_value_length, 1, MCD_VALUE_LENGTH_MAX),
	NUMBER_OPTION("connect_timeout", connect_timeout_ms, 1, 60000),
	NUMBER_OPTION("timeout", timeout_ms, 1, 60000),
	NUMBER_OPTION("retry_timeout", retry_timeout_s, 0, 3600),
	NUMBER_OPTION("server_failure_limit", server_failure_limit, 1, 1000),
	NUMBER_OPTION("pool_size", pool_size, 1, 4096),
	NUMBER_OPTION("pool_wait", pool_wait_s, 0, 10),
	NUMBER_OPTION("replicas", replicas, 0, MCD_MAX_SERVERS - 1),
};

enum mcd_config_status mcd_settings_apply(struct mcd_settings *settings, const char *name,
	const char *value, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof(number_options) / sizeof(number_options[0]); i++) {
		const struct number_option *opt = &number_options[i];
		if (strcasecmp(name, opt->name)) {
			continue;
		}
		if (mcd_parse_long(value, opt->min, opt->max, (long *) ((char *) settings + opt->offset))) {
			snprintf(err, errlen, "%s must be a whole number from %ld to %ld, not '%s'",
				opt->name, opt->min, opt->max, value);
			return MCD_CONFIG_BAD_VALUE;
		}
		return MCD_CONFIG_OK;
	}

	if (!strcasecmp(name, "server")) {
		if (settings->server_count == MCD_MAX_SERVERS) {
			snprintf(err, errlen, "more than %d servers", MCD_MAX_SERVERS);
			return MCD_CONFIG_BAD_VALUE;
		}
		if (mcd_parse_server(value, &settings->servers[settings->server_count], err, errlen)) {
			return MCD_CONFIG_BAD_VALUE;
		}
		settings->server_count++;
		return MCD_CONFIG_OK;
	}
	if (!strcasecmp(name, "prefixkey") || !strcasecmp(name, "keyprefix")) {
		return copy_token(name, value, settings->prefix, sizeof(settings->prefix), err, errlen);
	}
	if (!strcasecmp(name, "binary_proto") || !strcasecmp(name, "remove_failed_servers")) {
		bool *target = !strcasecmp(name, "binary_proto")
			? &settings->binary_protocol : &settings->remove_failed_servers;
		if (parse_bool(value, target)) {
			snprintf(err, errlen, "%s must be yes or no, not '%s'", name, value);
			return MCD_CONFIG_BAD_VALUE;
		}
		return MCD_CONFIG_OK;
	}
	if (!strcasecmp(name, "hash")) {
		for (int i = 0; mcd_hash_name(i); i++) {
			if (!strcasecmp(value, mcd_hash_name(i))) {
				settings->hash = i;
				return MCD_CONFIG_OK;
			}
		}
		snprintf(err, errlen, "hash '%s' is not one of default, md5, crc, fnv1_64, fnv1a_64, "
			"fnv1_32, fnv1a_32, hsieh, murmur, jenkins", value);
		return MCD_CONFIG_BAD_VALUE;
	}
	if (!strcasecmp(name, "distribution")) {
		if (!strcasecmp(value, "modula")) {
			settings->distribution = MCD_DISTRIBUTION_MODULA;
		} else if (!strcasecmp(value, "consistent")) {
			settings->distribution = MCD_DISTRIBUTION_CONSISTENT;
		} else {
			snprintf(err, errlen, "distribution must be modula or consistent, not '%s'", value);
			return MCD_CONFIG_BAD_VALUE;
		}
		return MCD_CONFIG_OK;
	}
	if (!strcasecmp(name, "username")) {
		return copy_token(name, value, settings->username, sizeof(settings->username), err, errlen);
	}
	if (!strcasecmp(name, "password")) {
		/* Never echo a password back, even a refused one. */
		if (strlen(value) >= sizeof(settings->password)) {
			snprintf(err, errlen, "password is longer than %zu bytes", sizeof(settings->password) - 1);
			return MCD_CONFIG_BAD_VALUE;
		}
		strcpy(settings->password, value);
		return MCD_CONFIG_OK;
	}

	snprintf(err, errlen, "unknown option '%s'", name);
	return MCD_CONFIG_UNKNOWN_OPTION;
}

int mcd_settings_finish(struct mcd_settings *settings, char *err, size_t errlen)
{
	if (settings->server_count == 0) {
		strcpy(settings->servers[0].host, "localhost");
		settings->servers[0].port = 11211;
		settings->server_count = 1;
	}
	if (strlen(settings->prefix) >= MCD_KEY_MAX) {
		snprintf(err, errlen, "prefixkey leaves no room for a key");
		return -1;
	}
	if (!settings->username[0] != !settings->password[0]) {
		snprintf(err, errlen, "username and password go together: set both or neither");
		return -1;
	}
	if (settings->replicas >= (long) settings->server_count) {
		snprintf(err, errlen, "replicas=%ld needs at least %ld servers", settings->replicas,
			settings->replicas + 1);
		return -1;
	}
	if (settings->replicas && !settings->binary_protocol) {
		snprintf(err, errlen, "replicas need binary_proto=yes");
		return -1;
	}
	if (settings->username[0] && !settings->binary_protocol) {
		snprintf(err, errlen, "username/password (SASL) need binary_proto=yes");
		return -1;
	}
	return 0;
}
