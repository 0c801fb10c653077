/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * options: the option table, and memcached.conf values -> validated settings.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdbool.h>

#include "options.h"
#include "util.h"

/* Same order as libmemcached's memcached_hash_t, checked in client.c. */
static const char *const hash_names[] = {
	"default", "md5", "crc", "fnv1_64", "fnv1a_64", "fnv1_32", "fnv1a_32",
	"hsieh", "murmur", "jenkins", NULL,
};

/* Same order as enum mcd_distribution. */
static const char *const distribution_names[] = { "modula", "consistent", NULL };
static const char *const rate_failure_names[] = { "admit", "refuse", NULL };

#define FIELD(field) offsetof(struct mcd_settings, field), sizeof(((struct mcd_settings *) 0)->field)
#define NUMBER(name, field, def, min, max, unit, help) \
	{ name, NULL, MCD_OPTION_NUMBER, def, min, max, unit, NULL, FIELD(field), help }
#define BOOL(name, field, def, help) \
	{ name, NULL, MCD_OPTION_BOOL, def, 0, 1, "", NULL, FIELD(field), help }
#define CHOICE(name, field, def, choices, help) \
	{ name, NULL, MCD_OPTION_CHOICE, def, 0, 0, "", choices, FIELD(field), help }

/* Every option memcached.conf knows, in the order "memcached show settings" lists them. */
static const struct mcd_option options[] = {
	{ "server", NULL, MCD_OPTION_SERVER, "localhost:11211", 0, 0, "", NULL, FIELD(servers),
		"a memcached: host[:port], [IPv6]:port or /socket/path, then ,weight=N; repeat" },
	{ "prefixkey", "keyprefix", MCD_OPTION_TOKEN, "", 0, 0, "", NULL, FIELD(prefix),
		"text put in front of every key" },
	NUMBER("ttl", ttl, "0", 0, MCD_TTL_MAX, "s", "seconds before values expire; 0 = never"),
	{ "binary_proto", NULL, MCD_OPTION_SWITCH, "auto", 0, 0, "", NULL, FIELD(binary_protocol),
		"binary (yes) or text (no) protocol; auto: binary only for SASL or replicas" },
	CHOICE("hash", hash, "default", hash_names, "how a key's server is picked"),
	CHOICE("distribution", distribution, "modula", distribution_names,
		"modula, or consistent (ketama) hashing over the servers"),
	NUMBER("max_value_length", max_value_length, "4096", 1, MCD_VALUE_LENGTH_MAX, "bytes",
		"the longest value a write may store"),
	NUMBER("connect_timeout", connect_timeout_ms, "300", 1, 60000, "ms",
		"wait for a TCP connection"),
	NUMBER("timeout", timeout_ms, "300", 1, 60000, "ms", "wait for each read or write"),
	NUMBER("server_failure_limit", server_failure_limit, "2", 1, 1000, "",
		"faults in a row before a server rests"),
	NUMBER("retry_timeout", retry_timeout_s, "2", 0, 3600, "s", "how long a failed server rests"),
	BOOL("remove_failed_servers", remove_failed_servers, "no",
		"re-hash a failed server's keys onto the others"),
	NUMBER("replicas", replicas, "0", 0, MCD_MAX_SERVERS - 1, "",
		"extra copies of each value on the next servers"),
	NUMBER("pool_size", pool_size, "64", 1, 4096, "", "pooled handles at most, each one connection per server"),
	NUMBER("pool_wait", pool_wait_s, "1", 0, 10, "s", "wait for a free connection; 0 = none"),
	{ "username", NULL, MCD_OPTION_TOKEN, "", 0, 0, "", NULL, FIELD(username),
		"SASL user name (binary protocol)" },
	{ "password", NULL, MCD_OPTION_SECRET, "", 0, 0, "", NULL, FIELD(password),
		"SASL password (binary protocol)" },
	{ "node_id", NULL, MCD_OPTION_TOKEN, "", 0, 0, "", NULL, FIELD(node_id),
		"this Asterisk's name for groups; none: systemname, else the entity ID" },
	NUMBER("group_lease", group_lease_s, "30", 2, 3600, "s",
		"an Asterisk's heartbeat; its group members stop counting 1.25 of this after it dies"),
	NUMBER("lock_ttl", lock_ttl_s, "60", 1, 86400, "s", "a lock never released expires after this"),
	NUMBER("lock_wait", lock_wait_ms, "3000", 0, 60000, "ms", "how long MCDLOCK waits for a lock"),
	CHOICE("rate_on_failure", rate_on_failure, "admit", rate_failure_names,
		"MCDRATE's answer when memcached cannot give one"),
};

#define OPTION_COUNT (sizeof(options) / sizeof(options[0]))

const struct mcd_option *mcd_option_at(size_t i)
{
	return i < OPTION_COUNT ? &options[i] : NULL;
}

const char *mcd_hash_name(int i)
{
	if (i < 0 || (size_t) i >= sizeof(hash_names) / sizeof(hash_names[0]) - 1) {
		return NULL;
	}
	return hash_names[i];
}

static const struct mcd_option *find_option(const char *name)
{
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		if (!strcasecmp(name, options[i].name)
			|| (options[i].alias && !strcasecmp(name, options[i].alias))) {
			return &options[i];
		}
	}
	return NULL;
}

/* Parse the address part of a server= value: a host with an optional port, or a path. */
static int parse_address(const char *text, const char *address, size_t len, struct mcd_server *server,
	char *err, size_t errlen)
{
	const char *host = address;
	const char *port_text = NULL;
	size_t host_len;
	char port_buf[16];

	if (len && address[0] == '/') {
		/* A unix domain socket: the path as it is, within what sockaddr_un holds. */
		if (len >= MCD_SOCKET_PATH_MAX) {
			snprintf(err, errlen, "socket path in '%.40s...' is longer than %d bytes", text,
				MCD_SOCKET_PATH_MAX - 1);
			return -1;
		}
		if (!mcd_is_token(address, len)) {
			snprintf(err, errlen, "socket path in '%s' has a space or a control character", text);
			return -1;
		}
		memcpy(server->host, address, len);
		server->host[len] = '\0';
		server->port = 0;
		server->unix_socket = true;
		return 0;
	}
	if (len && *address == '[') {
		/* [IPv6]:port -- the brackets keep the address's colons apart from the port's. */
		const char *close = memchr(address, ']', len);
		if (!close) {
			snprintf(err, errlen, "'%s' opens '[' without ']'", text);
			return -1;
		}
		host = address + 1;
		host_len = (size_t) (close - host);
		if (close + 1 < address + len && close[1] == ':') {
			port_text = close + 2;
		} else if (close + 1 != address + len) {
			snprintf(err, errlen, "'%s' has text after ']' that is not ':port'", text);
			return -1;
		}
	} else {
		const char *colon = memchr(address, ':', len);
		if (colon && memchr(colon + 1, ':', (size_t) (address + len - colon - 1))) {
			snprintf(err, errlen, "'%s': write an IPv6 address as [address]:port", text);
			return -1;
		}
		host_len = colon ? (size_t) (colon - address) : len;
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
	server->unix_socket = false;

	server->port = 11211;
	if (port_text) {
		size_t port_len = (size_t) (address + len - port_text);
		long port;

		snprintf(port_buf, sizeof(port_buf), "%.*s", (int) port_len, port_text);
		if (port_len >= sizeof(port_buf) || mcd_parse_long(port_buf, 1, 65535, &port)) {
			snprintf(err, errlen, "port in '%s' is not a number from 1 to 65535", text);
			return -1;
		}
		server->port = (unsigned int) port;
	}
	return 0;
}

int mcd_parse_server(const char *text, struct mcd_server *server, char *err, size_t errlen)
{
	const char *comma = strchr(text, ',');
	size_t len = comma ? (size_t) (comma - text) : strlen(text);

	server->weight = 1;
	if (comma) {
		long weight;

		/* The one thing that may follow an address: ",weight=N". */
		if (strncasecmp(comma + 1, "weight=", 7)
			|| mcd_parse_long(comma + 8, 1, MCD_WEIGHT_MAX, &weight)) {
			snprintf(err, errlen, "'%s': after the address only ,weight=N may follow, N from 1 to %d",
				text, MCD_WEIGHT_MAX);
			return -1;
		}
		server->weight = (unsigned int) weight;
	}
	return parse_address(text, text, len, server, err, errlen);
}

const char *mcd_server_address(const struct mcd_server *server, char buf[MCD_ADDRESS_LEN])
{
	const bool v6 = !server->unix_socket && strchr(server->host, ':') != NULL;

	if (server->unix_socket) {
		snprintf(buf, MCD_ADDRESS_LEN, "%s", server->host);
	} else {
		snprintf(buf, MCD_ADDRESS_LEN, "%s%s%s:%u", v6 ? "[" : "", server->host, v6 ? "]" : "",
			server->port);
	}
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

/* "a, b, c": the names of a choice, for an error message. */
static void list_choices(const char *const *choices, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; choices[i] && used < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", choices[i]);
		used += n > 0 ? (size_t) n : 0;
	}
}

/* Parse value into the field option names, all or nothing. name is as the file wrote it. */
static enum mcd_config_status apply_option(struct mcd_settings *settings, const struct mcd_option *opt,
	const char *name, const char *value, char *err, size_t errlen)
{
	char *field = (char *) settings + opt->offset;
	size_t len = strlen(value);

	switch (opt->kind) {
	case MCD_OPTION_NUMBER:
		if (mcd_parse_long(value, opt->min, opt->max, (long *) field)) {
			snprintf(err, errlen, "%s must be a whole number from %ld to %ld, not '%s'",
				opt->name, opt->min, opt->max, value);
			return MCD_CONFIG_BAD_VALUE;
		}
		return MCD_CONFIG_OK;
	case MCD_OPTION_BOOL:
		if (parse_bool(value, (bool *) field)) {
			snprintf(err, errlen, "%s must be yes or no, not '%s'", opt->name, value);
			return MCD_CONFIG_BAD_VALUE;
		}
		return MCD_CONFIG_OK;
	case MCD_OPTION_SWITCH: {
		bool on;

		if (!strcasecmp(value, "auto")) {
			*(int *) field = MCD_AUTO;
		} else if (!parse_bool(value, &on)) {
			*(int *) field = on;
		} else {
			snprintf(err, errlen, "%s must be auto, yes or no, not '%s'", opt->name, value);
			return MCD_CONFIG_BAD_VALUE;
		}
		return MCD_CONFIG_OK;
	}
	case MCD_OPTION_CHOICE:
		for (int i = 0; opt->choices[i]; i++) {
			if (!strcasecmp(value, opt->choices[i])) {
				*(int *) field = i;
				return MCD_CONFIG_OK;
			}
		}
		{
			char names[256];

			list_choices(opt->choices, names, sizeof(names));
			snprintf(err, errlen, "%s '%s' is not one of %s", opt->name, value, names);
		}
		return MCD_CONFIG_BAD_VALUE;
	case MCD_OPTION_TOKEN:
		if (len >= opt->size) {
			snprintf(err, errlen, "%s is longer than %zu bytes", name, opt->size - 1);
			return MCD_CONFIG_BAD_VALUE;
		}
		if (!mcd_is_token(value, len)) {
			snprintf(err, errlen, "%s may not contain spaces or control characters", name);
			return MCD_CONFIG_BAD_VALUE;
		}
		memcpy(field, value, len + 1);
		return MCD_CONFIG_OK;
	case MCD_OPTION_SECRET:
		/* Never echo a secret back, even a refused one. */
		if (len >= opt->size) {
			snprintf(err, errlen, "%s is longer than %zu bytes", opt->name, opt->size - 1);
			return MCD_CONFIG_BAD_VALUE;
		}
		memcpy(field, value, len + 1);
		return MCD_CONFIG_OK;
	case MCD_OPTION_SERVER:
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
	snprintf(err, errlen, "%s: option of an unknown kind", opt->name);
	return MCD_CONFIG_BAD_VALUE;
}

void mcd_settings_defaults(struct mcd_settings *settings)
{
	char err[256];

	memset(settings, 0, sizeof(*settings));
	for (size_t i = 0; i < OPTION_COUNT; i++) {
		/* Servers are added by finish, only when the file names none. */
		if (options[i].kind != MCD_OPTION_SERVER && options[i].default_value[0]) {
			apply_option(settings, &options[i], options[i].name, options[i].default_value, err,
				sizeof(err));
		}
	}
}

enum mcd_config_status mcd_settings_apply(struct mcd_settings *settings, const char *name,
	const char *value, char *err, size_t errlen)
{
	const struct mcd_option *opt = find_option(name);

	if (!opt) {
		snprintf(err, errlen, "unknown option '%s'", name);
		return MCD_CONFIG_UNKNOWN_OPTION;
	}
	return apply_option(settings, opt, name, value, err, errlen);
}

bool mcd_option_value(const struct mcd_option *opt, const struct mcd_settings *settings,
	unsigned int n, char *buf, size_t len)
{
	const char *field = (const char *) settings + opt->offset;

	if (n > 0 && (opt->kind != MCD_OPTION_SERVER || n >= settings->server_count)) {
		return false;
	}
	switch (opt->kind) {
	case MCD_OPTION_NUMBER:
		snprintf(buf, len, "%ld", *(const long *) field);
		break;
	case MCD_OPTION_BOOL:
		snprintf(buf, len, "%s", *(const bool *) field ? "yes" : "no");
		break;
	case MCD_OPTION_SWITCH:
		snprintf(buf, len, "%s", *(const int *) field == MCD_AUTO ? "auto"
			: (*(const int *) field ? "yes" : "no"));
		break;
	case MCD_OPTION_CHOICE:
		snprintf(buf, len, "%s", opt->choices[*(const int *) field]);
		break;
	case MCD_OPTION_TOKEN:
		snprintf(buf, len, "%s", field);
		break;
	case MCD_OPTION_SECRET:
		snprintf(buf, len, "%s", field[0] ? "(set, not shown)" : "");
		break;
	case MCD_OPTION_SERVER:
		if (n >= settings->server_count) {
			return false;
		}
		{
			const struct mcd_server *server = &settings->servers[n];
			char address[MCD_ADDRESS_LEN];

			if (server->weight != 1) {
				snprintf(buf, len, "%s,weight=%u", mcd_server_address(server, address), server->weight);
			} else {
				snprintf(buf, len, "%s", mcd_server_address(server, address));
			}
		}
		break;
	}
	return true;
}

int mcd_settings_finish(struct mcd_settings *settings, char *err, size_t errlen)
{
	if (settings->server_count == 0) {
		const struct mcd_option *server = find_option("server");

		if (apply_option(settings, server, server->name, server->default_value, err, errlen)) {
			return -1;
		}
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
	if (settings->binary_protocol == MCD_AUTO) {
		settings->binary_protocol = settings->username[0] || settings->replicas;
	}
	for (unsigned int i = 0; i < settings->server_count; i++) {
		if (settings->servers[i].weight != 1 && settings->distribution != MCD_DISTRIBUTION_CONSISTENT) {
			snprintf(err, errlen, "server weights need distribution=consistent");
			return -1;
		}
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
