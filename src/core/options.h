/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * options: every memcached.conf option, declared once in one table (name,
 * kind, default, range, unit, one line of help), and the settings it fills.
 * The table drives parsing, the defaults, "memcached show settings" and the
 * manager's status; a unit test checks memcached.conf.sample and the README
 * against it. Knows nothing of Asterisk: the glue reads the file and feeds
 * each (name, value) pair in, so the parser is unit-tested and fuzzed alone.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_OPTIONS_H
#define MCD_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define MCD_MAX_SERVERS 32
#define MCD_HOST_LEN 256
#define MCD_PREFIX_MAX 128
#define MCD_CREDENTIAL_MAX 128
/* Relative ttls up to this many seconds (10 years) are accepted. */
#define MCD_TTL_MAX 315360000L
#define MCD_VALUE_LENGTH_MAX (1024L * 1024L)
/* Room for a node id, a group's category or name, or a lock's name. */
#define MCD_NAME_MAX 80

/* A switch left for mcd_settings_finish to decide. */
#define MCD_AUTO (-1)

enum mcd_distribution {
	MCD_DISTRIBUTION_MODULA,
	MCD_DISTRIBUTION_CONSISTENT,
};

/* sockaddr_un's room for a path, its final NUL included. */
#define MCD_SOCKET_PATH_MAX 108
#define MCD_WEIGHT_MAX 1000

struct mcd_server {
	char host[MCD_HOST_LEN];     /* a host name or address, or a unix socket's path */
	unsigned int port;           /* 0 for a unix socket */
	bool unix_socket;
	unsigned int weight;         /* share of the keys under consistent distribution; 1 by default */
};

struct mcd_settings {
	struct mcd_server servers[MCD_MAX_SERVERS];
	unsigned int server_count;
	char prefix[MCD_PREFIX_MAX + 1];
	long ttl;                    /* seconds; 0 = never expires */
	int binary_protocol;         /* 1 binary, 0 text; MCD_AUTO until mcd_settings_finish */
	int hash;                    /* index of mcd_hash_name() */
	int distribution;            /* an enum mcd_distribution */
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
	char node_id[MCD_NAME_MAX + 1];  /* this Asterisk's name among those sharing memcached; "" = Asterisk's */
	long group_lease_s;          /* a node's heartbeat lives this, renewed every lease/4 */
	long lock_ttl_s;             /* a lock taken without a ttl of its own expires after this */
	long lock_wait_ms;           /* how long MCDLOCK waits for a lock held by another */
	int rate_on_failure;         /* MCDRATE when memcached cannot answer: MCD_RATE_ADMIT or _REFUSE */
};

enum { MCD_RATE_ADMIT, MCD_RATE_REFUSE };

enum mcd_option_kind {
	MCD_OPTION_NUMBER,           /* a whole number from min to max (a long) */
	MCD_OPTION_BOOL,             /* yes or no (a bool) */
	MCD_OPTION_SWITCH,           /* auto, yes or no (an int: MCD_AUTO, 1 or 0) */
	MCD_OPTION_CHOICE,           /* one of choices, stored as its index (an int) */
	MCD_OPTION_TOKEN,            /* one word: no spaces or control characters (a char array) */
	MCD_OPTION_SECRET,           /* any text, never shown nor echoed (a char array) */
	MCD_OPTION_SERVER,           /* a server address; repeated for a cluster */
};

struct mcd_option {
	const char *name;
	const char *alias;           /* another name accepted for it, or NULL */
	enum mcd_option_kind kind;
	const char *default_value;   /* as written in memcached.conf; "" for none */
	long min, max;               /* numbers: the accepted range */
	const char *unit;            /* shown after the value ("ms", "s", "bytes"), or "" */
	const char *const *choices;  /* choices: their names, NULL-terminated */
	size_t offset;               /* where the value lives in struct mcd_settings */
	size_t size;                 /* tokens and secrets: the buffer's size */
	const char *help;            /* one line: what it does */
};

enum mcd_config_status {
	MCD_CONFIG_OK,
	MCD_CONFIG_UNKNOWN_OPTION,   /* name not known: the caller warns and goes on */
	MCD_CONFIG_BAD_VALUE,        /* value refused: err says why */
};

/*! The option at index i of the table, or NULL past its end. */
const struct mcd_option *mcd_option_at(size_t i);

/*! Fill settings with every option's default, and no servers (finish adds the default one). */
void mcd_settings_defaults(struct mcd_settings *settings);

/*! Apply one option; on anything but MCD_CONFIG_OK, err holds a sentence saying why and
 * settings are unchanged. Names are matched without regard to case. */
enum mcd_config_status mcd_settings_apply(struct mcd_settings *settings, const char *name,
	const char *value, char *err, size_t errlen);

/*! Check the whole: adds the default server when none was given, and decides what was left to
 * auto (binary_proto: binary where SASL or replicas need it, else text). 0 when usable, else
 * -1 and err. */
int mcd_settings_finish(struct mcd_settings *settings, char *err, size_t errlen);

/*!
 * The nth value of option in settings, as memcached.conf would hold it (a secret only says
 * whether it is set), into buf. Every option has one value (n = 0) but servers, which have
 * one per server. False when there is no nth value.
 */
bool mcd_option_value(const struct mcd_option *option, const struct mcd_settings *settings,
	unsigned int n, char *buf, size_t len);

/*! Parse "host", "host:port", "[v6addr]", "[v6addr]:port" or "/path/of/a/unix.socket", each
 * optionally followed by ",weight=N". 0 on success, else -1 and err. */
int mcd_parse_server(const char *text, struct mcd_server *server, char *err, size_t errlen);

/* Room for "[host]:port". */
#define MCD_ADDRESS_LEN (MCD_HOST_LEN + 8)

/*! Write server's address as host:port, [host]:port for an IPv6 address, or its socket's path,
 * into buf; returns buf. */
const char *mcd_server_address(const struct mcd_server *server, char buf[MCD_ADDRESS_LEN]);

/*! The name of hash function index i (as written in memcached.conf), or NULL past the end. */
const char *mcd_hash_name(int i);

#endif
