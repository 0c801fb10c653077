/*
 * Unit tests of the Asterisk-free core (src/core): util, options, results,
 * stats, and the client against the real memcached named by MCD_TEST_SERVER
 * (host:port). Run from the repository's root: the option table is checked
 * against memcached.conf.sample, README.md and the sources there.
 */

#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "client_private.h"
#include "options.h"
#include "rates.h"
#include "util.h"

static char err[256];

/* --- mcd_util --- */

static void parse_long_accepts_only_whole_numbers_in_range(void **state)
{
	long v = -1;

	assert_int_equal(mcd_parse_long("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(mcd_parse_long(" 7 ", 0, 100, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(mcd_parse_long("-3", -5, 5, &v), 0);
	assert_int_equal(v, -3);
	v = 99;
	assert_int_equal(mcd_parse_long("101", 0, 100, &v), -1);
	assert_int_equal(mcd_parse_long("-1", 0, 100, &v), -1);
	assert_int_equal(mcd_parse_long("", 0, 100, &v), -1);
	assert_int_equal(mcd_parse_long("12abc", 0, 100, &v), -1);
	assert_int_equal(mcd_parse_long("1.5", 0, 100, &v), -1);
	assert_int_equal(mcd_parse_long("0x10", 0, 100, &v), -1);
	assert_int_equal(mcd_parse_long("+", 0, 100, &v), -1);
	assert_int_equal(v, 99);
}

static void parse_int64_refuses_overflow(void **state)
{
	int64_t v;

	assert_int_equal(mcd_parse_int64("9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(mcd_parse_int64("-9223372036854775808", &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(mcd_parse_int64("9223372036854775808", &v), -1);
	assert_int_equal(mcd_parse_int64("--1", &v), -1);
}

static void parse_uint64_refuses_signs(void **state)
{
	uint64_t v;

	assert_int_equal(mcd_parse_uint64("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(mcd_parse_uint64("18446744073709551616", &v), -1);
	assert_int_equal(mcd_parse_uint64("-1", &v), -1);
	assert_int_equal(mcd_parse_uint64("+1", &v), -1);
}

static void increments_are_whole_numbers_within_32_bits(void **state)
{
	int64_t v = 7;

	assert_int_equal(mcd_parse_increment("4294967295", &v), 0);
	assert_true(v == MCD_INCREMENT_MAX);
	assert_int_equal(mcd_parse_increment("-4294967295", &v), 0);
	assert_true(v == -MCD_INCREMENT_MAX);
	v = 7;
	assert_int_equal(mcd_parse_increment("4294967296", &v), -1);
	assert_int_equal(mcd_parse_increment("-4294967296", &v), -1);
	assert_int_equal(mcd_parse_increment("1.5", &v), -1);
	assert_int_equal(mcd_parse_increment("x", &v), -1);
	assert_true(v == 7);
}

static void key_bytes_refuse_space_control_and_del(void **state)
{
	assert_true(mcd_is_token("abc:1/2", 7));
	assert_true(mcd_is_token("h\xc3\xa9", 3));
	assert_false(mcd_is_token("a b", 3));
	assert_false(mcd_is_token("a\r\nb", 4));
	assert_false(mcd_is_token("a\tb", 3));
	assert_false(mcd_is_token("a\x7f", 2));
	assert_false(mcd_is_token("a\0b", 3));
}

/* --- mcd_config --- */

static void defaults_are_the_documented_ones(void **state)
{
	struct mcd_settings s;

	mcd_settings_defaults(&s);
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
	assert_int_equal(s.server_count, 1);
	assert_string_equal(s.servers[0].host, "localhost");
	assert_int_equal(s.servers[0].port, 11211);
	assert_string_equal(s.prefix, "");
	assert_int_equal(s.ttl, 0);
	/* binary_proto=auto: text, as no SASL and no replicas need binary. */
	assert_int_equal(s.binary_protocol, 0);
	assert_int_equal(s.max_value_length, 4096);
	assert_int_equal(s.connect_timeout_ms, 300);
	assert_int_equal(s.timeout_ms, 300);
	assert_int_equal(s.pool_size, 64);
	assert_int_equal(s.pool_wait_s, 1);
}

static void servers_parse_in_every_form(void **state)
{
	struct mcd_server srv;

	assert_int_equal(mcd_parse_server("10.0.0.1", &srv, err, sizeof(err)), 0);
	assert_string_equal(srv.host, "10.0.0.1");
	assert_int_equal(srv.port, 11211);
	assert_int_equal(mcd_parse_server("cache.example.com:11311", &srv, err, sizeof(err)), 0);
	assert_string_equal(srv.host, "cache.example.com");
	assert_int_equal(srv.port, 11311);
	assert_int_equal(mcd_parse_server("[::1]:11212", &srv, err, sizeof(err)), 0);
	assert_string_equal(srv.host, "::1");
	assert_int_equal(srv.port, 11212);
	assert_int_equal(mcd_parse_server("[fe80::1]", &srv, err, sizeof(err)), 0);
	assert_string_equal(srv.host, "fe80::1");
	{
		char address[MCD_ADDRESS_LEN];
		assert_string_equal(mcd_server_address(&srv, address), "[fe80::1]:11211");
		mcd_parse_server("10.0.0.1:99", &srv, err, sizeof(err));
		assert_string_equal(mcd_server_address(&srv, address), "10.0.0.1:99");
	}

	assert_int_equal(mcd_parse_server("::1", &srv, err, sizeof(err)), -1);
	assert_string_equal(err, "'::1': write an IPv6 address as [address]:port");
	assert_int_equal(mcd_parse_server("host:0", &srv, err, sizeof(err)), -1);
	assert_int_equal(mcd_parse_server("host:65536", &srv, err, sizeof(err)), -1);
	assert_int_equal(mcd_parse_server("host:", &srv, err, sizeof(err)), -1);
	assert_int_equal(mcd_parse_server(":11211", &srv, err, sizeof(err)), -1);
	assert_int_equal(mcd_parse_server("[::1", &srv, err, sizeof(err)), -1);
	assert_int_equal(mcd_parse_server("[::1]x", &srv, err, sizeof(err)), -1);
	assert_int_equal(mcd_parse_server("bad host", &srv, err, sizeof(err)), -1);
	assert_int_equal(mcd_parse_server("", &srv, err, sizeof(err)), -1);
}

static void unix_sockets_and_weights_parse(void **state)
{
	struct mcd_server srv;
	char address[MCD_ADDRESS_LEN];
	char longpath[MCD_SOCKET_PATH_MAX + 8];

	assert_int_equal(mcd_parse_server("/run/memcached/memcached.sock", &srv, err, sizeof(err)), 0);
	assert_true(srv.unix_socket);
	assert_string_equal(srv.host, "/run/memcached/memcached.sock");
	assert_int_equal(srv.port, 0);
	assert_int_equal(srv.weight, 1);
	assert_string_equal(mcd_server_address(&srv, address), "/run/memcached/memcached.sock");
	assert_int_equal(mcd_parse_server("10.0.0.1:11311,weight=3", &srv, err, sizeof(err)), 0);
	assert_false(srv.unix_socket);
	assert_int_equal(srv.port, 11311);
	assert_int_equal(srv.weight, 3);
	assert_int_equal(mcd_parse_server("[::1]:5,weight=1000", &srv, err, sizeof(err)), 0);
	assert_int_equal(srv.weight, 1000);
	assert_int_equal(mcd_parse_server("/tmp/m.sock,weight=2", &srv, err, sizeof(err)), 0);
	assert_true(srv.unix_socket);
	assert_int_equal(srv.weight, 2);
	assert_int_equal(mcd_parse_server("10.0.0.1,weight=0", &srv, err, sizeof(err)), -1);
	assert_int_equal(mcd_parse_server("10.0.0.1,weight=1001", &srv, err, sizeof(err)), -1);
	assert_int_equal(mcd_parse_server("10.0.0.1,wait=2", &srv, err, sizeof(err)), -1);
	assert_string_equal(err, "'10.0.0.1,wait=2': after the address only ,weight=N may follow, N from 1 to 1000");
	assert_int_equal(mcd_parse_server("/tmp/with space.sock", &srv, err, sizeof(err)), -1);
	memset(longpath, 'p', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(mcd_parse_server(longpath, &srv, err, sizeof(err)), -1);
}

static void binary_proto_auto_follows_sasl_and_replicas(void **state)
{
	struct mcd_settings s;
	const struct mcd_option *opt = NULL;
	char value[16];

	for (size_t i = 0; mcd_option_at(i); i++) {
		if (!strcmp(mcd_option_at(i)->name, "binary_proto")) {
			opt = mcd_option_at(i);
		}
	}
	assert_non_null(opt);
	mcd_settings_defaults(&s);
	assert_true(mcd_option_value(opt, &s, 0, value, sizeof(value)));
	assert_string_equal(value, "auto");
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
	assert_int_equal(s.binary_protocol, 0);
	assert_true(mcd_option_value(opt, &s, 0, value, sizeof(value)));
	assert_string_equal(value, "no");
	/* SASL needs binary: auto takes it. */
	mcd_settings_defaults(&s);
	mcd_settings_apply(&s, "username", "pbx", err, sizeof(err));
	mcd_settings_apply(&s, "password", "pw", err, sizeof(err));
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
	assert_int_equal(s.binary_protocol, 1);
	/* So do replicas. */
	mcd_settings_defaults(&s);
	mcd_settings_apply(&s, "server", "10.0.0.1", err, sizeof(err));
	mcd_settings_apply(&s, "server", "10.0.0.2", err, sizeof(err));
	mcd_settings_apply(&s, "replicas", "1", err, sizeof(err));
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
	assert_int_equal(s.binary_protocol, 1);
	/* An explicit choice stays, and is refused where it cannot work. */
	mcd_settings_defaults(&s);
	assert_int_equal(mcd_settings_apply(&s, "binary_proto", "yes", err, sizeof(err)), MCD_CONFIG_OK);
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
	assert_int_equal(s.binary_protocol, 1);
	assert_int_equal(mcd_settings_apply(&s, "binary_proto", "sometimes", err, sizeof(err)),
		MCD_CONFIG_BAD_VALUE);
	assert_string_equal(err, "binary_proto must be auto, yes or no, not 'sometimes'");
}

static void weights_need_consistent_distribution(void **state)
{
	struct mcd_settings s;

	mcd_settings_defaults(&s);
	mcd_settings_apply(&s, "server", "10.0.0.1,weight=2", err, sizeof(err));
	mcd_settings_apply(&s, "server", "10.0.0.2", err, sizeof(err));
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), -1);
	assert_string_equal(err, "server weights need distribution=consistent");
	mcd_settings_apply(&s, "distribution", "consistent", err, sizeof(err));
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
}

static void every_option_is_applied(void **state)
{
	struct mcd_settings s;
	static const char *const options[][2] = {
		{ "server", "10.0.0.1:1" }, { "server", "10.0.0.2" }, { "prefixkey", "pbx1:" },
		{ "ttl", "3600" }, { "binary_proto", "no" }, { "hash", "murmur" },
		{ "distribution", "consistent" }, { "max_value_length", "100" },
		{ "connect_timeout", "50" }, { "timeout", "60" }, { "retry_timeout", "5" },
		{ "server_failure_limit", "3" }, { "remove_failed_servers", "yes" },
		{ "pool_size", "8" }, { "pool_wait", "0" },
	};

	mcd_settings_defaults(&s);
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		assert_int_equal(mcd_settings_apply(&s, options[i][0], options[i][1], err, sizeof(err)),
			MCD_CONFIG_OK);
	}
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
	assert_int_equal(s.server_count, 2);
	assert_string_equal(s.servers[1].host, "10.0.0.2");
	assert_string_equal(s.prefix, "pbx1:");
	assert_int_equal(s.ttl, 3600);
	assert_false(s.binary_protocol);
	assert_string_equal(mcd_hash_name(s.hash), "murmur");
	assert_int_equal(s.distribution, MCD_DISTRIBUTION_CONSISTENT);
	assert_int_equal(s.max_value_length, 100);
	assert_int_equal(s.connect_timeout_ms, 50);
	assert_int_equal(s.timeout_ms, 60);
	assert_int_equal(s.retry_timeout_s, 5);
	assert_int_equal(s.server_failure_limit, 3);
	assert_true(s.remove_failed_servers);
	assert_int_equal(s.pool_size, 8);
	assert_int_equal(s.pool_wait_s, 0);
}

static void keyprefix_is_an_alias_and_names_ignore_case(void **state)
{
	struct mcd_settings s;

	mcd_settings_defaults(&s);
	assert_int_equal(mcd_settings_apply(&s, "KeyPrefix", "app_", err, sizeof(err)), MCD_CONFIG_OK);
	assert_string_equal(s.prefix, "app_");
	assert_int_equal(mcd_settings_apply(&s, "Binary_Proto", "OFF", err, sizeof(err)), MCD_CONFIG_OK);
	assert_false(s.binary_protocol);
}

static void bad_values_are_refused_with_a_reason(void **state)
{
	struct mcd_settings s;

	mcd_settings_defaults(&s);
	assert_int_equal(mcd_settings_apply(&s, "ttl", "-1", err, sizeof(err)), MCD_CONFIG_BAD_VALUE);
	assert_string_equal(err, "ttl must be a whole number from 0 to 315360000, not '-1'");
	assert_int_equal(mcd_settings_apply(&s, "timeout", "0", err, sizeof(err)), MCD_CONFIG_BAD_VALUE);
	assert_int_equal(mcd_settings_apply(&s, "max_value_length", "1048577", err, sizeof(err)),
		MCD_CONFIG_BAD_VALUE);
	assert_int_equal(mcd_settings_apply(&s, "hash", "sha1", err, sizeof(err)), MCD_CONFIG_BAD_VALUE);
	assert_int_equal(mcd_settings_apply(&s, "distribution", "random", err, sizeof(err)),
		MCD_CONFIG_BAD_VALUE);
	assert_int_equal(mcd_settings_apply(&s, "prefixkey", "a\r\nb", err, sizeof(err)),
		MCD_CONFIG_BAD_VALUE);
	assert_int_equal(mcd_settings_apply(&s, "remove_failed_servers", "sometimes", err, sizeof(err)),
		MCD_CONFIG_BAD_VALUE);
	assert_int_equal(mcd_settings_apply(&s, "frobnicate", "1", err, sizeof(err)),
		MCD_CONFIG_UNKNOWN_OPTION);
	assert_string_equal(err, "unknown option 'frobnicate'");
	/* Nothing refused was half-applied. */
	assert_int_equal(s.ttl, 0);
	assert_int_equal(s.timeout_ms, 300);
	assert_string_equal(s.prefix, "");
}

static void a_refused_password_is_never_echoed(void **state)
{
	struct mcd_settings s;
	char longpw[MCD_CREDENTIAL_MAX + 10];

	memset(longpw, 'p', sizeof(longpw) - 1);
	longpw[sizeof(longpw) - 1] = '\0';
	mcd_settings_defaults(&s);
	assert_int_equal(mcd_settings_apply(&s, "password", longpw, err, sizeof(err)),
		MCD_CONFIG_BAD_VALUE);
	assert_null(strstr(err, "ppp"));
}

static void too_many_servers_are_refused(void **state)
{
	struct mcd_settings s;

	mcd_settings_defaults(&s);
	for (int i = 0; i < MCD_MAX_SERVERS; i++) {
		assert_int_equal(mcd_settings_apply(&s, "server", "10.0.0.1", err, sizeof(err)), MCD_CONFIG_OK);
	}
	assert_int_equal(mcd_settings_apply(&s, "server", "10.0.0.1", err, sizeof(err)),
		MCD_CONFIG_BAD_VALUE);
}

static void credentials_go_together_and_need_binary(void **state)
{
	struct mcd_settings s;

	mcd_settings_defaults(&s);
	mcd_settings_apply(&s, "username", "pbx", err, sizeof(err));
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), -1);
	mcd_settings_apply(&s, "password", "secret", err, sizeof(err));
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
	mcd_settings_apply(&s, "binary_proto", "no", err, sizeof(err));
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), -1);
	assert_string_equal(err, "username/password (SASL) need binary_proto=yes");
}

/* --- the option table against the sample, the README and the sources --- */

/* The whole of a file of the repository, NUL-terminated; the test fails if it cannot be read. */
static char *read_whole(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text;
	long len;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	rewind(f);
	text = malloc((size_t) len + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t) len, f), (size_t) len);
	text[len] = '\0';
	fclose(f);
	return text;
}

/* The line of text that starts with start, or NULL. */
static const char *line_starting(const char *text, const char *start)
{
	size_t len = strlen(start);

	for (const char *line = text; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (!strncmp(line, start, len)) {
			return line;
		}
	}
	return NULL;
}

static void every_default_is_valid_and_applied(void **state)
{
	const struct mcd_option *opt;
	struct mcd_settings defaults, s;

	mcd_settings_defaults(&defaults);
	for (size_t i = 0; (opt = mcd_option_at(i)); i++) {
		char value[300];

		mcd_settings_defaults(&s);
		assert_int_equal(mcd_settings_apply(&s, opt->name, opt->default_value, err, sizeof(err)),
			MCD_CONFIG_OK);
		if (opt->kind != MCD_OPTION_SERVER) {
			/* Applying the default changes nothing: the defaults are the table's. */
			assert_memory_equal(&s, &defaults, sizeof(s));
			assert_true(mcd_option_value(opt, &defaults, 0, value, sizeof(value)));
			if (opt->kind != MCD_OPTION_SECRET) {
				assert_string_equal(value, opt->default_value);
			}
		}
		assert_non_null(opt->help);
		assert_true(strlen(opt->help) > 10);
		assert_null(strchr(opt->help, '\n'));
	}
}

static void sample_config_shows_each_default_of_the_table(void **state)
{
	char *sample = read_whole("memcached.conf.sample");
	const struct mcd_option *opt;
	char problem[400] = "";

	for (size_t i = 0; (opt = mcd_option_at(i)); i++) {
		char line[300];

		/* Each option appears commented out at its default: ";name=default" alone on a line. */
		snprintf(line, sizeof(line), ";%s=%s\n", opt->name, opt->default_value);
		if (!line_starting(sample, line)) {
			snprintf(problem, sizeof(problem), "memcached.conf.sample has no line '%.*s'",
				(int) strlen(line) - 1, line);
		}
	}
	/* And every ";name=" line there names an option of the table. */
	for (const char *l = sample; l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		char name[64];
		struct mcd_settings s;

		if (sscanf(l, ";%63[a-z_]=", name) == 1 && strchr(l, '=') == l + 1 + strlen(name)) {
			mcd_settings_defaults(&s);
			if (mcd_settings_apply(&s, name, "", err, sizeof(err)) == MCD_CONFIG_UNKNOWN_OPTION) {
				snprintf(problem, sizeof(problem),
					"memcached.conf.sample shows an option the module does not know: %s", name);
			}
		}
	}
	free(sample);
	if (problem[0]) {
		fail_msg("%s", problem);
	}
}

static void readme_table_shows_each_default_of_the_table(void **state)
{
	char *readme = read_whole("README.md");
	const struct mcd_option *opt;
	char problem[400] = "";

	for (size_t i = 0; (opt = mcd_option_at(i)); i++) {
		char start[80], cell[300];
		const char *row, *second;

		/* "| `name` ... | `default` |", or "| none |" for an option without one. */
		snprintf(start, sizeof(start), "| `%s`", opt->name);
		row = line_starting(readme, start);
		second = row ? strchr(row + 1, '|') : NULL;
		if (!second) {
			snprintf(problem, sizeof(problem), "README.md's option table has no row for %s", opt->name);
			continue;
		}
		if (opt->default_value[0]) {
			snprintf(cell, sizeof(cell), "| `%s` |", opt->default_value);
		} else {
			snprintf(cell, sizeof(cell), "| none |");
		}
		if (strncmp(second, cell, strlen(cell))) {
			snprintf(problem, sizeof(problem), "README.md gives %s the default '%.*s', the module '%s'",
				opt->name, (int) strcspn(second + 1, "|"), second + 1, cell);
		}
	}
	free(readme);
	if (problem[0]) {
		fail_msg("%s", problem);
	}
}

/* How many files under dir (and its folders) hold needle. */
static int files_holding(const char *dir, const char *needle, char *where, size_t wherelen)
{
	DIR *d = opendir(dir);
	struct dirent *entry;
	int found = 0;

	assert_non_null(d);
	while ((entry = readdir(d))) {
		char path[512];
		size_t len = strlen(entry->d_name);

		if (entry->d_name[0] == '.') {
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
		if (entry->d_type == DT_DIR) {
			found += files_holding(path, needle, where, wherelen);
		} else if (len > 2 && (!strcmp(entry->d_name + len - 2, ".c")
			|| !strcmp(entry->d_name + len - 2, ".h"))) {
			char *text = read_whole(path);

			if (strstr(text, needle)) {
				found++;
				snprintf(where, wherelen, "%s", path);
			}
			free(text);
		}
	}
	closedir(d);
	return found;
}

static void each_option_is_named_in_one_source_file(void **state)
{
	const struct mcd_option *opt;

	/* The module that reads memcached.conf: res_memcached_prometheus has a label "server",
	 * which names no option. */
	for (size_t i = 0; (opt = mcd_option_at(i)); i++) {
		char quoted[80], where[512] = "";
		int files;

		snprintf(quoted, sizeof(quoted), "\"%s\"", opt->name);
		files = files_holding("src/core", quoted, where, sizeof(where))
			+ files_holding("src/glue", quoted, where, sizeof(where));
		{
			char *main_file = read_whole("src/res_memcached.c");

			files += strstr(main_file, quoted) != NULL;
			free(main_file);
		}
		if (files != 1 || strcmp(where, "src/core/options.c")) {
			fail_msg("%s is named in %d source files (last: %s), not only in src/core/options.c",
				quoted, files, where);
		}
	}
}

/* --- results: names and outcomes, no server needed --- */

static void outcomes_classify_every_kind_of_result(void **state)
{
	assert_int_equal(mcd_rc_outcome(MCD_SUCCESS), MCD_OUTCOME_ANSWER);
	assert_int_equal(mcd_rc_outcome(MCD_NOTFOUND), MCD_OUTCOME_ANSWER);
	assert_int_equal(mcd_rc_outcome(MCD_SENT), MCD_OUTCOME_ANSWER);
	assert_int_equal(mcd_rc_outcome(MCD_ARGUMENT_NEEDED), MCD_OUTCOME_REFUSED);
	assert_int_equal(mcd_rc_outcome(MCD_BAD_INCREMENT), MCD_OUTCOME_REFUSED);
	assert_int_equal(mcd_rc_outcome(MCD_VALUE_TOO_LONG), MCD_OUTCOME_REFUSED);
	/* The server is resting or the pool is full: neither is a new fault of the server. */
	assert_int_equal(mcd_rc_outcome(MCD_SERVER_TEMPORARILY_DISABLED), MCD_OUTCOME_RESTING);
	assert_int_equal(mcd_rc_outcome(MCD_POOL_EXHAUSTED), MCD_OUTCOME_OVERLOAD);
	assert_int_equal(mcd_rc_outcome(MCD_NO_SERVERS), MCD_OUTCOME_ERROR);
	for (int rc = 0; rc < 49; rc++) {
		const char *name = mcd_rc_name(rc);
		enum mcd_outcome outcome = mcd_rc_outcome(rc);

		if (strstr(name, "TIMEOUT") || strstr(name, "CONNECTION_FAILURE")
			|| strstr(name, "WRITE_FAILURE") || !strcmp(name, "MEMCACHED_READ_FAILURE")) {
			assert_int_equal(outcome, MCD_OUTCOME_FAULT);
		}
		assert_string_not_equal(mcd_outcome_name(outcome), "?");
	}
}

static void stats_count_results_and_outcomes(void **state)
{
	struct mcd_stats stats;
	uint64_t outcomes[MCD_OUTCOME_COUNT];

	mcd_stats_reset(&stats);
	mcd_stats_record(&stats, MCD_OP_GET, mcd_now_us(), MCD_SUCCESS);
	mcd_stats_record(&stats, MCD_OP_GET, mcd_now_us(), MCD_NOTFOUND);
	mcd_stats_record(&stats, MCD_OP_GET, mcd_now_us(), MCD_POOL_EXHAUSTED);
	assert_int_equal(mcd_stats_record(&stats, MCD_OP_GET, mcd_now_us(), MCD_SERVER_TEMPORARILY_DISABLED),
		MCD_SERVER_TEMPORARILY_DISABLED);
	assert_int_equal(stats.ops[MCD_OP_GET].calls, 4);
	assert_int_equal(stats.ops[MCD_OP_GET].by_result[mcd_result_slot(MCD_POOL_EXHAUSTED)], 1);
	assert_int_equal(mcd_result_of_slot(mcd_result_slot(MCD_POOL_EXHAUSTED)), MCD_POOL_EXHAUSTED);
	mcd_stats_outcomes(&stats.ops[MCD_OP_GET], outcomes);
	assert_int_equal(outcomes[MCD_OUTCOME_ANSWER], 2);
	assert_int_equal(outcomes[MCD_OUTCOME_OVERLOAD], 1);
	assert_int_equal(outcomes[MCD_OUTCOME_RESTING], 1);
	assert_int_equal(outcomes[MCD_OUTCOME_FAULT], 0);
	assert_int_equal(stats.ops[MCD_OP_SET].calls, 0);
}

/* --- mcd_client: names and expiry, no server needed --- */

static void result_names_are_libmemcached_names_or_our_own(void **state)
{
	assert_string_equal(mcd_rc_name(MCD_SUCCESS), "MEMCACHED_SUCCESS");
	assert_string_equal(mcd_rc_name(MCD_NOTFOUND), "MEMCACHED_NOTFOUND");
	assert_string_equal(mcd_rc_name(MCD_NO_SERVERS), "MEMCACHED_NO_SERVERS");
	assert_string_equal(mcd_rc_name(MCD_ARGUMENT_NEEDED), "MEMCACHED_ARGUMENT_NEEDED");
	assert_string_equal(mcd_rc_name(MCD_KEY_TOO_LONG), "MEMCACHED_KEY_TOO_LONG");
	assert_string_equal(mcd_rc_name(MCD_VALUE_TOO_LONG), "MEMCACHED_VALUE_TOO_LONG");
	assert_string_equal(mcd_rc_name(MCD_BAD_INCREMENT), "MEMCACHED_BAD_INCREMENT");
	assert_string_equal(mcd_rc_name(MCD_BINARY_PROTO_NEEDED), "MEMCACHED_BINARY_PROTO_NEEDED");
	assert_string_equal(mcd_rc_name(-7), "MEMCACHED_UNKNOWN_RESULT");
	/* Every libmemcached result in range has a real name. */
	for (int rc = 0; rc < 49; rc++) {
		assert_string_not_equal(mcd_rc_name(rc), "MEMCACHED_UNKNOWN_RESULT");
	}
}

static void expiry_over_30_days_becomes_a_date(void **state)
{
	assert_int_equal(mcd_wire_expiry(0, 1700000000), 0);
	assert_int_equal(mcd_wire_expiry(2592000, 1700000000), 2592000);
	assert_int_equal(mcd_wire_expiry(2592001, 1700000000), 1700000000 + 2592001);
}

/* --- mcd_client against the real memcached --- */

static struct mcd_client *client_for(const char *prefix, bool binary)
{
	struct mcd_settings s;
	const char *server = getenv("MCD_TEST_SERVER");
	struct mcd_client *client;

	assert_non_null(server);
	mcd_settings_defaults(&s);
	assert_int_equal(mcd_settings_apply(&s, "server", server, err, sizeof(err)), MCD_CONFIG_OK);
	assert_int_equal(mcd_settings_apply(&s, "prefixkey", prefix, err, sizeof(err)), MCD_CONFIG_OK);
	assert_int_equal(mcd_settings_apply(&s, "binary_proto", binary ? "yes" : "no", err, sizeof(err)),
		MCD_CONFIG_OK);
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
	client = mcd_client_create(&s, NULL, NULL, err, sizeof(err));
	assert_non_null(client);
	return client;
}

static void unique_key(char *buf, size_t len, const char *what)
{
	static int n;
	snprintf(buf, len, "%s_%ld_%d", what, (long) time(NULL), n++);
}

static void store_modes_behave_like_memcached(bool binary)
{
	struct mcd_client *c = client_for("u_", binary);
	char key[64], *value;
	size_t len;

	unique_key(key, sizeof(key), "modes");
	/* The same outcome has the same name in both protocols. */
	assert_string_equal(mcd_rc_name(mcd_store(c, MCD_STORE_REPLACE, key, "x", 1, 0)), "MEMCACHED_NOTFOUND");
	assert_string_equal(mcd_rc_name(mcd_store(c, MCD_STORE_APPEND, key, "x", 1, 0)), "MEMCACHED_NOTFOUND");
	assert_string_equal(mcd_rc_name(mcd_store(c, MCD_STORE_PREPEND, key, "x", 1, 0)), "MEMCACHED_NOTFOUND");
	assert_int_equal(mcd_store(c, MCD_STORE_ADD, key, "mid", 3, 0), MCD_SUCCESS);
	assert_string_equal(mcd_rc_name(mcd_store(c, MCD_STORE_ADD, key, "again", 5, 0)),
		"MEMCACHED_DATA_EXISTS");
	assert_int_equal(mcd_store(c, MCD_STORE_APPEND, key, ">", 1, 0), MCD_SUCCESS);
	assert_int_equal(mcd_store(c, MCD_STORE_PREPEND, key, "<", 1, 0), MCD_SUCCESS);
	assert_int_equal(mcd_get(c, key, &value, &len), MCD_SUCCESS);
	assert_string_equal(value, "<mid>");
	assert_int_equal(len, 5);
	mcd_value_free(value);
	assert_int_equal(mcd_store(c, MCD_STORE_SET, key, "", 0, 0), MCD_SUCCESS);
	assert_int_equal(mcd_get(c, key, &value, &len), MCD_SUCCESS);
	assert_string_equal(value, "");
	mcd_value_free(value);
	assert_int_equal(mcd_delete(c, key), MCD_SUCCESS);
	assert_int_equal(mcd_get(c, key, &value, &len), MCD_NOTFOUND);
	assert_null(value);
	assert_int_equal(mcd_delete(c, key), MCD_NOTFOUND);
	mcd_client_destroy(c);
}

static void store_modes_binary(void **state)
{
	store_modes_behave_like_memcached(true);
}

static void store_modes_text(void **state)
{
	store_modes_behave_like_memcached(false);
}

static void keys_are_checked_before_anything_is_sent(void **state)
{
	struct mcd_client *c = client_for("pre_", false);
	char longest[MCD_KEY_MAX + 2], *value;
	size_t len;

	memset(longest, 'k', sizeof(longest));
	longest[MCD_KEY_MAX - 4] = '\0';   /* 246 + "pre_" = 250 */
	assert_int_equal(mcd_store(c, MCD_STORE_SET, longest, "v", 1, 0), MCD_SUCCESS);
	longest[MCD_KEY_MAX - 4] = 'k';
	longest[MCD_KEY_MAX - 3] = '\0';   /* 251 */
	assert_int_equal(mcd_store(c, MCD_STORE_SET, longest, "v", 1, 0), MCD_KEY_TOO_LONG);
	assert_int_equal(mcd_get(c, "", &value, &len), MCD_ARGUMENT_NEEDED);
	assert_int_equal(mcd_get(c, NULL, &value, &len), MCD_ARGUMENT_NEEDED);
	assert_string_equal(mcd_rc_name(mcd_get(c, "a b", &value, &len)), "MEMCACHED_BAD_KEY_PROVIDED");
	assert_string_equal(mcd_rc_name(mcd_get(c, "a\r\nflush_all", &value, &len)),
		"MEMCACHED_BAD_KEY_PROVIDED");
	assert_string_equal(mcd_rc_name(mcd_delete(c, "x\r\nflush_all")), "MEMCACHED_BAD_KEY_PROVIDED");
	mcd_client_destroy(c);
}

static void values_over_the_limit_are_refused_whole(void **state)
{
	struct mcd_client *c = client_for("u_", true);
	char key[64], big[4097], *value;
	size_t len;

	unique_key(key, sizeof(key), "big");
	memset(big, 'v', sizeof(big));
	assert_int_equal(mcd_store(c, MCD_STORE_SET, key, big, 4097, 0), MCD_VALUE_TOO_LONG);
	assert_int_equal(mcd_get(c, key, &value, &len), MCD_NOTFOUND);
	assert_int_equal(mcd_store(c, MCD_STORE_SET, key, big, 4096, 0), MCD_SUCCESS);
	assert_int_equal(mcd_get(c, key, &value, &len), MCD_SUCCESS);
	assert_int_equal(len, 4096);
	mcd_value_free(value);
	mcd_client_destroy(c);
}

static void counters_step_create_and_stop_at_zero(bool binary)
{
	struct mcd_client *c = client_for("u_", binary);
	char key[64];
	uint64_t v = 99;

	unique_key(key, sizeof(key), "ctr");
	assert_int_equal(mcd_counter_add(c, key, 0, 0, &v), MCD_NOTFOUND);
	assert_int_equal(v, 0);
	assert_int_equal(mcd_counter_add(c, key, 5, 0, &v), MCD_SUCCESS);
	assert_int_equal(v, 5);
	assert_int_equal(mcd_counter_add(c, key, -2, 0, &v), MCD_SUCCESS);
	assert_int_equal(v, 3);
	assert_int_equal(mcd_counter_add(c, key, -10, 0, &v), MCD_SUCCESS);
	assert_int_equal(v, 0);
	assert_int_equal(mcd_counter_set(c, key, 1000, 0), MCD_SUCCESS);
	assert_int_equal(mcd_counter_add(c, key, 0, 0, &v), MCD_SUCCESS);
	assert_int_equal(v, 1000);
	assert_int_equal(mcd_counter_add(c, key, 4294967296LL, 0, &v), MCD_BAD_INCREMENT);
	assert_int_equal(mcd_counter_add(c, key, INT64_MIN, 0, &v), MCD_BAD_INCREMENT);
	assert_int_equal(mcd_counter_add(c, key, 0, 0, &v), MCD_SUCCESS);
	assert_int_equal(v, 1000);
	mcd_client_destroy(c);
}

static void counters_binary(void **state)
{
	counters_step_create_and_stop_at_zero(true);
}

static void counters_text(void **state)
{
	counters_step_create_and_stop_at_zero(false);
}

static void mget_reads_many_keys_each_with_its_result(bool binary)
{
	struct mcd_client *c = client_for("u_", binary);
	char a[64], b[64], missing[64];
	struct mcd_mget_item items[5];

	unique_key(a, sizeof(a), "mget_a");
	unique_key(b, sizeof(b), "mget_b");
	unique_key(missing, sizeof(missing), "mget_missing");
	assert_int_equal(mcd_store(c, MCD_STORE_SET, a, "alpha", 5, 0), MCD_SUCCESS);
	assert_int_equal(mcd_store(c, MCD_STORE_SET, b, "", 0, 0), MCD_SUCCESS);
	items[0].key = a;
	items[1].key = missing;
	items[2].key = b;
	items[3].key = "bad key";
	items[4].key = a;
	assert_string_equal(mcd_rc_name(mcd_mget(c, items, 5)), "MEMCACHED_BAD_KEY_PROVIDED");
	assert_int_equal(items[0].rc, MCD_SUCCESS);
	assert_string_equal(items[0].value, "alpha");
	assert_int_equal(items[0].value_len, 5);
	assert_int_equal(items[1].rc, MCD_NOTFOUND);
	assert_null(items[1].value);
	assert_int_equal(items[2].rc, MCD_SUCCESS);
	assert_string_equal(items[2].value, "");
	assert_string_equal(mcd_rc_name(items[3].rc), "MEMCACHED_BAD_KEY_PROVIDED");
	assert_string_equal(items[4].value, "alpha");
	for (int i = 0; i < 5; i++) {
		mcd_value_free(items[i].value);
	}
	assert_int_equal(mcd_mget(c, items, 2), MCD_NOTFOUND);
	mcd_value_free(items[0].value);
	assert_int_equal(mcd_mget(c, items, 1), MCD_SUCCESS);
	mcd_value_free(items[0].value);
	assert_int_equal(mcd_mget(c, items, 0), MCD_ARGUMENT_NEEDED);
	assert_int_equal(mcd_mget(c, items, MCD_MGET_MAX + 1), MCD_ARGUMENT_NEEDED);
	mcd_client_destroy(c);
}

static void mget_binary(void **state)
{
	mget_reads_many_keys_each_with_its_result(true);
}

static void mget_text(void **state)
{
	mget_reads_many_keys_each_with_its_result(false);
}

/* A noreply write lands a moment later: poll (at most about 5 s) for the value. */
static bool lands(struct mcd_client *c, const char *key, const char *expected)
{
	for (int i = 0; i < 500; i++) {
		char *value;
		size_t len;
		mcd_rc rc = mcd_get(c, key, &value, &len);
		bool same = expected ? rc == MCD_SUCCESS && !strcmp(value, expected) : rc == MCD_NOTFOUND;

		mcd_value_free(value);
		if (same) {
			return true;
		}
		usleep(10000);
	}
	return false;
}

static void noreply_writes_are_sent_and_land(bool binary)
{
	struct mcd_client *c = client_for("u_", binary);
	char key[64], counter[64];

	assert_true(mcd_client_has_noreply(c));
	unique_key(key, sizeof(key), "noreply");
	unique_key(counter, sizeof(counter), "noreply_ctr");
	assert_int_equal(mcd_store_noreply(c, MCD_STORE_SET, key, "v1", 2, 0), MCD_SENT);
	assert_int_equal(mcd_store_noreply(c, MCD_STORE_APPEND, key, "+", 1, 0), MCD_SENT);
	assert_true(lands(c, key, "v1+"));
	assert_int_equal(mcd_delete_noreply(c, key), MCD_SENT);
	assert_true(lands(c, key, NULL));
	assert_int_equal(mcd_counter_add_noreply(c, counter, 7, 0), MCD_SENT);
	assert_int_equal(mcd_counter_add_noreply(c, counter, -2, 0), MCD_SENT);
	assert_true(lands(c, counter, "5"));
	assert_string_equal(mcd_rc_name(mcd_store_noreply(c, MCD_STORE_SET, "a b", "v", 1, 0)),
		"MEMCACHED_BAD_KEY_PROVIDED");
	assert_int_equal(mcd_counter_add_noreply(c, counter, 4294967296LL, 0), MCD_BAD_INCREMENT);
	mcd_client_destroy(c);
}

static void noreply_binary(void **state)
{
	noreply_writes_are_sent_and_land(true);
}

static void noreply_text(void **state)
{
	noreply_writes_are_sent_and_land(false);
}

static void a_unix_socket_server_is_used_like_a_tcp_one(void **state)
{
	const char *path = getenv("MCD_TEST_SOCKET");
	struct mcd_settings s;
	struct mcd_client *c;
	char key[64], *value;
	size_t len;
	uint64_t n;

	assert_non_null(path);
	mcd_settings_defaults(&s);
	assert_int_equal(mcd_settings_apply(&s, "server", path, err, sizeof(err)), MCD_CONFIG_OK);
	assert_int_equal(mcd_settings_finish(&s, err, sizeof(err)), 0);
	assert_non_null(c = mcd_client_create(&s, NULL, NULL, err, sizeof(err)));
	unique_key(key, sizeof(key), "sock");
	assert_int_equal(mcd_store(c, MCD_STORE_SET, key, "over a socket", 13, 0), MCD_SUCCESS);
	assert_int_equal(mcd_get(c, key, &value, &len), MCD_SUCCESS);
	assert_string_equal(value, "over a socket");
	mcd_value_free(value);
	assert_int_equal(mcd_counter_add(c, "sock_n", 2, 0, &n), MCD_SUCCESS);
	mcd_client_destroy(c);
}

static void keys_of_the_module_are_refused_to_callers(void **state)
{
	struct mcd_client *c = client_for("u_", false);
	struct mcd_mget_item items[2] = { { .key = "free" }, { .key = MCD_OWN_KEY_PREFIX "groups" } };
	char *value = NULL;
	size_t len = 0;
	uint64_t n;

	assert_int_equal(mcd_store(c, MCD_STORE_SET, MCD_OWN_KEY_PREFIX "nodes", "x", 1, 0), MCD_KEY_RESERVED);
	assert_int_equal(mcd_store_noreply(c, MCD_STORE_SET, MCD_OWN_KEY_PREFIX "nodes", "x", 1, 0),
		MCD_KEY_RESERVED);
	assert_int_equal(mcd_get(c, MCD_OWN_KEY_PREFIX "lock:x", &value, &len), MCD_KEY_RESERVED);
	assert_int_equal(mcd_counter_add(c, MCD_OWN_KEY_PREFIX "g:trk:g1", -9, 0, &n), MCD_KEY_RESERVED);
	assert_int_equal(mcd_counter_add_noreply(c, MCD_OWN_KEY_PREFIX "g:trk:g1", -9, 0), MCD_KEY_RESERVED);
	assert_int_equal(mcd_counter_set(c, MCD_OWN_KEY_PREFIX "g:trk:g1", 0, 0), MCD_KEY_RESERVED);
	assert_int_equal(mcd_delete(c, MCD_OWN_KEY_PREFIX "lock:x"), MCD_KEY_RESERVED);
	assert_int_equal(mcd_touch(c, MCD_OWN_KEY_PREFIX "lock:x", 5), MCD_KEY_RESERVED);
	mcd_mget(c, items, 2);
	assert_int_equal(items[1].rc, MCD_KEY_RESERVED);
	mcd_value_free(items[0].value);
	/* A key that only contains the word is the caller's. */
	assert_int_equal(mcd_store(c, MCD_STORE_SET, "x_mcd:nodes", "x", 1, 0), MCD_SUCCESS);
	assert_string_equal(mcd_rc_name(MCD_KEY_RESERVED), "MEMCACHED_KEY_RESERVED");
	mcd_client_destroy(c);
}


/* --- rates (MCDRATE), on a simulated clock against a real memcached --- */

static void rate_periods_parse_with_units_and_in_range(void **state)
{
	static const struct {
		const char *text;
		long seconds;            /* -1: refused */
	} cases[] = {
		{ "30", 30 }, { "1s", 1 }, { "1m", 60 }, { "2h", 7200 }, { "1d", 86400 }, { "30d", 2592000 },
		{ "2592000", 2592000 }, { "31d", -1 }, { "2592001", -1 }, { "0", -1 }, { "", -1 }, { "m", -1 },
		{ "-5", -1 }, { "1.5", -1 }, { "1x", -1 }, { "1 m", -1 }, { "1mm", -1 }, { "99999999999999999999", -1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long seconds = 0;
		int rc = mcd_rate_parse_period(cases[i].text, &seconds);

		if (cases[i].seconds < 0) {
			assert_int_equal(rc, -1);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(seconds, cases[i].seconds);
		}
	}
}

static void unique_rate(char *buf, size_t len, const char *what)
{
	static int n;
	snprintf(buf, len, "%s_%d_%ld_%ld", what, n++, (long) getpid(), (long) time(NULL));
}

/* A time far from now on the simulated clock: each test its own stretch of buckets. */
static int64_t sim_start_ms(void)
{
	return (int64_t) time(NULL) * 1000 + 10000000;
}

/*
 * Nodes (clients of their own) try a rate of limit per period at about 50 times the limit,
 * at random moments of a simulated clock (seeded: a failing seed replays). Every span of the
 * period holds at most limit admissions, and at least 90% of the limit is used.
 */
static void rate_simulation(unsigned int seed, int nodes, uint64_t limit, long period_s, int periods)
{
	struct mcd_client *c[8];
	struct mcd_rate rate = { .limit = limit, .period_s = period_s };
	const int64_t start = sim_start_ms(), period_ms = period_s * 1000;
	const int64_t end = start + periods * period_ms;
	int64_t *admitted = calloc((size_t) (limit * (uint64_t) periods * 2 + 16), sizeof(int64_t));
	size_t count = 0;
	char name[64];

	unique_rate(name, sizeof(name), "sim");
	rate.name = name;
	srand(seed);
	for (int n = 0; n < nodes; n++) {
		c[n] = client_for("u_", false);
	}
	for (int64_t now = start; now < end; now += 1 + rand() % (int) (2 * period_ms / (50 * (int64_t) limit))) {
		struct mcd_rate_answer answer;
		mcd_rc rc = mcd_rate_check(c[rand() % nodes], &rate, now, &answer);

		assert_true(rc == MCD_SUCCESS || rc == MCD_RATE_LIMITED);
		assert_int_equal(answer.admitted, rc == MCD_SUCCESS);
		if (answer.admitted) {
			admitted[count++] = now;
		} else {
			assert_true(answer.retry_ms > 0 && answer.retry_ms <= period_ms + 2 * period_ms / MCD_RATE_BUCKETS);
		}
	}
	/* No span of the period holds more than limit: admission i and i + limit are a period apart. */
	for (size_t i = 0; i + limit < count; i++) {
		if (admitted[i + limit] - admitted[i] < period_ms) {
			print_error("seed %u: %llu admissions within %lld ms (from %lld)\n", seed,
				(unsigned long long) limit + 1, (long long) (admitted[i + limit] - admitted[i]),
				(long long) (admitted[i] - start));
			fail();
		}
	}
	/* At least 90% of the limit used under overload. */
	if (count * 10 < (size_t) (limit * (uint64_t) periods * 9)) {
		print_error("seed %u: %zu admitted of %llu\n", seed, count, (unsigned long long) (limit * periods));
		fail();
	}
	print_message("rate simulation seed %u: %d nodes, %llu per %ld s over %d periods: %zu admitted (%.1f%%)\n",
		seed, nodes, (unsigned long long) limit, period_s, periods, count,
		100.0 * (double) count / (double) (limit * (uint64_t) periods));
	for (int n = 0; n < nodes; n++) {
		mcd_client_destroy(c[n]);
	}
	free(admitted);
}

static void rate_admits_at_most_the_limit_in_any_span_and_uses_90_percent(void **state)
{
	const char *seed_text = getenv("MCD_RATE_SEED");
	unsigned int seed = seed_text ? (unsigned int) strtoul(seed_text, NULL, 10) : (unsigned int) time(NULL);

	rate_simulation(seed, 3, 20, 2, 12);
	rate_simulation(seed + 1, 5, 7, 1, 20);
	rate_simulation(seed + 2, 2, 100, 60, 4);
}

struct rate_racer {
	const struct mcd_rate *rate;
	int64_t now;
	atomic_int admitted;
};

static void *race_for_rate(void *arg)
{
	struct rate_racer *r = arg;
	struct mcd_client *c = client_for("u_", false);
	struct mcd_rate_answer answer;

	for (int i = 0; i < 40; i++) {
		/* At a bucket's edge: half the tries a millisecond before it, half at it. */
		mcd_rc rc = mcd_rate_check(c, r->rate, r->now + (i % 2), &answer);

		assert_true(rc == MCD_SUCCESS || rc == MCD_RATE_LIMITED);
		if (rc == MCD_SUCCESS) {
			atomic_fetch_add(&r->admitted, 1);
		}
	}
	mcd_client_destroy(c);
	return NULL;
}

/* 8 nodes, 320 tries within a millisecond, across a bucket's edge: at most the limit admitted
 * (two decisions in neighbouring buckets each see the other's count), and counted. */
static void racing_rate_checks_admit_exactly_the_limit(void **state)
{
	struct mcd_rate rate = { .limit = 50, .period_s = 10 };
	/* The millisecond before a bucket (of 500 ms) begins. */
	struct rate_racer racer = { .rate = &rate, .now = (sim_start_ms() + 30000000) / 500 * 500 - 1 };
	struct mcd_client *c = client_for("u_", false);
	struct mcd_rate_answer answer;
	pthread_t threads[8];
	char name[64];

	unique_rate(name, sizeof(name), "race");
	rate.name = name;
	for (int i = 0; i < 8; i++) {
		assert_int_equal(pthread_create(&threads[i], NULL, race_for_rate, &racer), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(threads[i], NULL);
	}
	/* Both sides of the edge may refuse a last place at once: never more than the limit. */
	assert_true(atomic_load(&racer.admitted) <= 50 && atomic_load(&racer.admitted) >= 48);
	assert_int_equal(mcd_rate_peek(c, &rate, racer.now + 1, &answer), MCD_SUCCESS);
	assert_int_equal(answer.count, (uint64_t) atomic_load(&racer.admitted));
	mcd_client_destroy(c);
}

static void rate_counts_attempts_only_with_option_a(void **state)
{
	struct mcd_client *c = client_for("u_", false);
	struct mcd_rate admitted_only = { .limit = 3, .period_s = 10 }, attempts = admitted_only;
	struct mcd_rate_answer answer;
	char one[64], two[64];
	const int64_t start = sim_start_ms() + 20000000;

	unique_rate(one, sizeof(one), "pin");
	unique_rate(two, sizeof(two), "pin_a");
	admitted_only.name = one;
	attempts.name = two;
	attempts.attempts = true;
	for (int s = 0; s < 3; s++) {
		assert_int_equal(mcd_rate_check(c, &admitted_only, start + s * 1000, &answer), MCD_SUCCESS);
		assert_int_equal(mcd_rate_check(c, &attempts, start + s * 1000, &answer), MCD_SUCCESS);
	}
	/* Tries every second: refused ones count only with a, so only a stays refused. */
	for (int s = 3; s < 30; s++) {
		mcd_rc plain = mcd_rate_check(c, &admitted_only, start + s * 1000, &answer);

		assert_int_equal(mcd_rate_check(c, &attempts, start + s * 1000, &answer), MCD_RATE_LIMITED);
		/* Admissions leave the span (and their half-second bucket) 10.5 s on: 0, 1, 2 admitted, then
		 * 11, 12, 13, then 22, 23, 24; never 4 within 10 s. */
		assert_int_equal(plain, s < 11 || (s >= 14 && s < 22) || s >= 25 ? MCD_RATE_LIMITED : MCD_SUCCESS);
	}
	/* A pause of a period and a bucket: a admits again. */
	assert_int_equal(mcd_rate_check(c, &attempts, start + 41000, &answer), MCD_SUCCESS);
	mcd_client_destroy(c);
}

static void rate_fixed_windows_are_a_quota_per_calendar_window(void **state)
{
	struct mcd_client *c = client_for("u_", false);
	struct mcd_rate quota = { .limit = 5, .period_s = 3600, .fixed = true, .utc_offset_s = 7200 };
	struct mcd_rate_answer answer;
	char name[64];
	/* 10:59:00 local (UTC+2): the window ends in 60 s. */
	const int64_t hour_start = ((sim_start_ms() / 3600000) + 1000) * 3600000 - 7200000;
	const int64_t now = hour_start + 59 * 60000;

	unique_rate(name, sizeof(name), "quota");
	quota.name = name;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(mcd_rate_check(c, &quota, now + i, &answer), MCD_SUCCESS);
		assert_int_equal(answer.count, (uint64_t) i + 1);
	}
	assert_int_equal(mcd_rate_check(c, &quota, now + 10, &answer), MCD_RATE_LIMITED);
	assert_int_equal(answer.count, 5);
	assert_int_equal(answer.retry_ms, 60000 - 10);
	/* A peek counts nothing. */
	assert_int_equal(mcd_rate_peek(c, &quota, now + 20, &answer), MCD_SUCCESS);
	assert_false(answer.admitted);
	assert_int_equal(answer.count, 5);
	/* The next local hour is a new window. */
	assert_int_equal(mcd_rate_check(c, &quota, hour_start + 3600000, &answer), MCD_SUCCESS);
	assert_int_equal(answer.count, 1);
	mcd_client_destroy(c);
}

static void rate_input_is_checked_before_anything_is_counted(void **state)
{
	struct mcd_client *c = client_for("u_", false);
	struct mcd_rate_answer answer;
	struct mcd_rate bad[] = {
		{ .name = "x", .limit = 0, .period_s = 10 }, { .name = "x", .limit = 1, .period_s = 0 },
		{ .name = "x", .limit = 1, .period_s = MCD_RATE_PERIOD_MAX + 1 }, { .name = "", .limit = 1, .period_s = 1 },
		{ .name = "a:b", .limit = 1, .period_s = 1 }, { .name = "a b", .limit = 1, .period_s = 1 },
	};
	const mcd_rc expected[] = { MCD_ARGUMENT_NEEDED, MCD_ARGUMENT_NEEDED, MCD_ARGUMENT_NEEDED,
		MCD_ARGUMENT_NEEDED, MEMCACHED_BAD_KEY_PROVIDED, MEMCACHED_BAD_KEY_PROVIDED };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(mcd_rate_check(c, &bad[i], sim_start_ms(), &answer), expected[i]);
		assert_false(answer.admitted);
	}
	mcd_client_destroy(c);
}

static void unresolvable_server_fails_at_creation(void **state)
{
	struct mcd_settings s;

	mcd_settings_defaults(&s);
	mcd_settings_apply(&s, "server", "no-such-host.invalid", err, sizeof(err));
	mcd_settings_finish(&s, err, sizeof(err));
	assert_null(mcd_client_create(&s, NULL, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot resolve server 'no-such-host.invalid'"));
}

/* --- stats: the histogram read while other threads count --- */

#define HISTOGRAM_WRITERS 2
#define HISTOGRAM_RECORDS 200000

struct histogram_race {
	struct mcd_stats stats;
	_Atomic int writing;        /* writers still counting */
};

static void *record_calls(void *arg)
{
	/* Calls that started 0 us, 300 us, 7 ms and 3 s ago: three buckets and past the last bound. */
	static const unsigned long ago_us[] = { 0, 300, 7000, 3000000 };
	struct histogram_race *race = arg;

	for (unsigned long i = 0; i < HISTOGRAM_RECORDS; i++) {
		mcd_stats_record(&race->stats, MCD_OP_GET, mcd_now_us() - ago_us[i % 4], MCD_SUCCESS);
	}
	race->writing--;
	return NULL;
}

static void stats_histogram_is_consistent_while_calls_are_counted(void **state)
{
	static struct histogram_race race;
	const uint64_t calls = (uint64_t) HISTOGRAM_WRITERS * HISTOGRAM_RECORDS;
	pthread_t writers[HISTOGRAM_WRITERS];
	uint64_t at_most[MCD_TIME_BUCKETS], total, outcomes[MCD_OUTCOME_COUNT];
	unsigned long reads = 0, inconsistent = 0;

	mcd_stats_reset(&race.stats);
	race.writing = HISTOGRAM_WRITERS;
	for (int i = 0; i < HISTOGRAM_WRITERS; i++) {
		assert_int_equal(pthread_create(&writers[i], NULL, record_calls, &race), 0);
	}
	/* Every read, whatever was counted meanwhile: buckets never decrease, +Inf holds them all. */
	while (race.writing) {
		total = mcd_stats_histogram(&race.stats.ops[MCD_OP_GET], at_most);
		for (int i = 1; i < MCD_TIME_BUCKETS; i++) {
			inconsistent += at_most[i] < at_most[i - 1];
		}
		inconsistent += total < at_most[MCD_TIME_BUCKETS - 1];
		reads++;
	}
	for (int i = 0; i < HISTOGRAM_WRITERS; i++) {
		pthread_join(writers[i], NULL);
	}
	printf("histogram: %lu reads under %llu calls counted, %lu inconsistent\n", reads,
		(unsigned long long) calls, inconsistent);
	assert_int_equal(inconsistent, 0);
	total = mcd_stats_histogram(&race.stats.ops[MCD_OP_GET], at_most);
	assert_int_equal(total, calls);
	assert_int_equal(race.stats.ops[MCD_OP_GET].calls, calls);
	/* The calls of 3 s are past the last bound (2.5 s): in +Inf only. */
	assert_int_equal(at_most[MCD_TIME_BUCKETS - 1], calls / 4 * 3);
	mcd_stats_outcomes(&race.stats.ops[MCD_OP_GET], outcomes);
	assert_int_equal(outcomes[MCD_OUTCOME_ANSWER], calls);
	/* Sums go past 2^32 microseconds (71 minutes), on every build. */
	assert_true(race.stats.ops[MCD_OP_GET].total_us >= calls / 4 * 3000000);
	assert_true(race.stats.ops[MCD_OP_GET].total_us > UINT32_MAX);
}

static void escape_shows_every_control_byte_and_cuts_at_a_whole_escape(void **state)
{
	char out[64], small[10], worst[MCD_ESCAPED_SIZE(3)];

	assert_string_equal(mcd_escape("plain text", 10, out, sizeof(out)), "plain text");
	assert_string_equal(mcd_escape("a\x1b[31mb\r\nc\t\\", 12, out, sizeof(out)), "a\\x1b[31mb\\r\\nc\\t\\\\");
	/* A NUL does not end the bytes; DEL and bytes above ASCII are shown by number. */
	assert_string_equal(mcd_escape("nul\0\x7f\xc3\xa9", 7, out, sizeof(out)), "nul\\x00\\x7f\\xc3\\xa9");
	assert_string_equal(mcd_escape("\x01\x02\x03", 3, worst, sizeof(worst)), "\\x01\\x02\\x03");
	assert_string_equal(mcd_escape("", 0, small, sizeof(small)), "");
	/* Exactly fits; one byte more is cut, and an escape is never cut in half. */
	assert_string_equal(mcd_escape("123456789", 9, small, sizeof(small)), "123456789");
	assert_string_equal(mcd_escape("1234567890", 10, small, sizeof(small)), "123456...");
	assert_string_equal(mcd_escape("12345\x1b" "789", 9, small, sizeof(small)), "12345...");
	assert_string_equal(mcd_escape("abcdef", 6, small, 3), "ab");
	assert_string_equal(mcd_escape("abcdef", 6, small, 1), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_long_accepts_only_whole_numbers_in_range),
		cmocka_unit_test(parse_int64_refuses_overflow),
		cmocka_unit_test(parse_uint64_refuses_signs),
		cmocka_unit_test(increments_are_whole_numbers_within_32_bits),
		cmocka_unit_test(key_bytes_refuse_space_control_and_del),
		cmocka_unit_test(defaults_are_the_documented_ones),
		cmocka_unit_test(servers_parse_in_every_form),
		cmocka_unit_test(unix_sockets_and_weights_parse),
		cmocka_unit_test(binary_proto_auto_follows_sasl_and_replicas),
		cmocka_unit_test(weights_need_consistent_distribution),
		cmocka_unit_test(every_option_is_applied),
		cmocka_unit_test(keyprefix_is_an_alias_and_names_ignore_case),
		cmocka_unit_test(bad_values_are_refused_with_a_reason),
		cmocka_unit_test(a_refused_password_is_never_echoed),
		cmocka_unit_test(too_many_servers_are_refused),
		cmocka_unit_test(credentials_go_together_and_need_binary),
		cmocka_unit_test(every_default_is_valid_and_applied),
		cmocka_unit_test(sample_config_shows_each_default_of_the_table),
		cmocka_unit_test(readme_table_shows_each_default_of_the_table),
		cmocka_unit_test(each_option_is_named_in_one_source_file),
		cmocka_unit_test(outcomes_classify_every_kind_of_result),
		cmocka_unit_test(stats_count_results_and_outcomes),
		cmocka_unit_test(result_names_are_libmemcached_names_or_our_own),
		cmocka_unit_test(expiry_over_30_days_becomes_a_date),
		cmocka_unit_test(store_modes_binary),
		cmocka_unit_test(store_modes_text),
		cmocka_unit_test(keys_are_checked_before_anything_is_sent),
		cmocka_unit_test(values_over_the_limit_are_refused_whole),
		cmocka_unit_test(counters_binary),
		cmocka_unit_test(counters_text),
		cmocka_unit_test(mget_binary),
		cmocka_unit_test(mget_text),
		cmocka_unit_test(noreply_binary),
		cmocka_unit_test(noreply_text),
		cmocka_unit_test(a_unix_socket_server_is_used_like_a_tcp_one),
		cmocka_unit_test(unresolvable_server_fails_at_creation),
		cmocka_unit_test(keys_of_the_module_are_refused_to_callers),
		cmocka_unit_test(rate_periods_parse_with_units_and_in_range),
		cmocka_unit_test(rate_admits_at_most_the_limit_in_any_span_and_uses_90_percent),
		cmocka_unit_test(rate_counts_attempts_only_with_option_a),
		cmocka_unit_test(racing_rate_checks_admit_exactly_the_limit),
		cmocka_unit_test(rate_fixed_windows_are_a_quota_per_calendar_window),
		cmocka_unit_test(rate_input_is_checked_before_anything_is_counted),
		cmocka_unit_test(stats_histogram_is_consistent_while_calls_are_counted),
		cmocka_unit_test(escape_shows_every_control_byte_and_cuts_at_a_whole_escape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
