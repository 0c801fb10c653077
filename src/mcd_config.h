/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * mcd_config: memcached.conf options -> one validated, immutable settings
 * struct. Knows nothing of Asterisk: the caller reads the file and feeds
 * each (name, value) pair in, so the parser is unit-tested and fuzzed alone.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_CONFIG_H
#define MCD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "mcd_util.h"

#define MCD_MAX_SERVERS 32
#define MCD_HOST_LEN 256
#define MCD_PREFIX_MAX 128
#define MCD_CREDENTIAL_MAX 128
/* Relative ttls up to this many seconds (10 years) are accepted. */
#define MCD_TTL_MAX 315360000L
#define MCD_VALUE_LENGTH_MAX (1024L * 1024L)

enum mcd_distribution {
	MCD_DISTRIBUTION_MODULA,
	MCD_DISTRIBUTION_CONSISTENT,
};

struct mcd_server {
	char host[MCD_HOST_LEN];
	unsigned int port;
};

struct mcd_settings {
	struct mcd_server servers[MCD_MAX_SERVERS];
	unsigned int server_count;
	char prefix[MCD_PREFIX_MAX + 1];
	long ttl;                    /* seconds; 0 = never expires */
	bool binary_protocol;
	int hash;                    /* index into mcd_hash_names() */
	enum mcd_distribution distribution;
	long max_value_length;       /* bytes a write may store */
	long connect_timeout_ms;     /* TCP connect */
	long timeout_ms;             /* wait for any one network read or write */
	long retry_timeout_s;        /* how long a failed server is left alone */
	long server_failure_limit;   /* failures before a server is marked failed */
	bool remove_failed_servers;  /* re-hash keys of a failed server onto the others */
	long replicas;               /* extra copies of each value on the next servers */
	long pool_size;              /* connections at most, one per concurrent call */
	long pool_wait_s;            /* wait for a free connection; 0 = none */
	char username[MCD_CREDENTIAL_MAX + 1];
	char password[MCD_CREDENTIAL_MAX + 1];
};

enum mcd_config_status {
	MCD_CONFIG_OK,
	MCD_CONFIG_UNKNOWN_OPTION,   /* name not known: the caller warns and goes on */
	MCD_CONFIG_BAD_VALUE,        /* value refused: err says why */
};

/*! Fill settings with the documented defaults and no servers. */
void mcd_settings_defaults(struct mcd_settings *settings);

/*! Apply one option; on anything but MCD_CONFIG_OK, err holds a sentence saying why. */
enum mcd_config_status mcd_settings_apply(struct mcd_settings *settings, const char *name,
	const char *value, char *err, size_t errlen);

/*! Check the whole: adds localhost:11211 when no server was given. 0 when usable, else -1 and err. */
int mcd_settings_finish(struct mcd_settings *settings, char *err, size_t errlen);

/*! Parse "host", "host:port", "[v6addr]" or "[v6addr]:port". 0 on success, else -1 and err. */
int mcd_parse_server(const char *text, struct mcd_server *server, char *err, size_t errlen);

/* Room for "[host]:port". */
#define MCD_ADDRESS_LEN (MCD_HOST_LEN + 8)

/*! Write server as host:port, or [host]:port for an IPv6 address, into buf; returns buf. */
const char *mcd_server_address(const struct mcd_server *server, char buf[MCD_ADDRESS_LEN]);

/*! The name of hash function index i (as written in memcached.conf), or NULL past the end. */
const char *mcd_hash_name(int i);

#endif
