/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * manager: the Memcached* AMI actions, for monitoring and web applications:
 * one operation each, and the status (servers, operations, settings).
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include "asterisk.h"

#include <ctype.h>

#include "asterisk/astobj2.h"
#include "asterisk/manager.h"
#include "asterisk/strings.h"
#include "asterisk/utils.h"

#include "glue/internal.h"

/* The manager's answer when the module has no client (while it unloads). */
static int no_client(struct mansession *s, const struct message *m)
{
	astman_send_error(s, m, "res_memcached has no configuration loaded");
	return 0;
}

/* Open the response to an operation, by the core's one classification: Success when memcached
 * answered (found or not, stored or not), else Error with a Message naming the outcome (refused,
 * error, fault, resting, overload), as DBGet answers Error when it fails. Result: names rc either
 * way; the caller adds its headers and ends the message. */
static void ami_start(struct mansession *s, const struct message *m, mcd_rc rc)
{
	const char *id = astman_get_header(m, "ActionID");
	enum mcd_outcome outcome = mcd_rc_outcome(rc);

	astman_append(s, "Response: %s\r\n", outcome == MCD_OUTCOME_ANSWER ? "Success" : "Error");
	if (!ast_strlen_zero(id)) {
		astman_append(s, "ActionID: %s\r\n", id);
	}
	if (outcome != MCD_OUTCOME_ANSWER) {
		astman_append(s, "Message: memcached operation failed (%s)\r\n", mcd_outcome_name(outcome));
	}
	astman_append(s, "Result: %s\r\n", mcd_rc_name(rc));
}

static int ami_get(struct mansession *s, const struct message *m)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	const char *key = astman_get_header(m, "Key");
	char *value;
	size_t value_len;
	mcd_rc rc;

	if (ast_strlen_zero(key)) {
		astman_send_error(s, m, "Key: is required");
		return 0;
	}
	if (!(live = mcd_live_get())) {
		return no_client(s, m);
	}
	rc = mcd_get(live->client, key, &value, &value_len);
	if (rc == MCD_SUCCESS && strpbrk(value, "\r\n")) {
		/* A line break would end the AMI message early. */
		mcd_value_free(value);
		astman_send_error(s, m, "The value holds a line break; read it with MCD() instead");
		return 0;
	}
	ami_start(s, m, rc);
	astman_append(s, "Key: %s\r\nValue: %s\r\n\r\n", key, rc == MCD_SUCCESS ? value : "");
	if (rc == MCD_SUCCESS) {
		mcd_value_free(value);
	}
	return 0;
}

static int ami_set(struct mansession *s, const struct message *m)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	const char *key = astman_get_header(m, "Key");
	const char *value = astman_get_header(m, "Value");
	const char *ttl_text = astman_get_header(m, "TTL");
	long ttl;

	if (ast_strlen_zero(key)) {
		astman_send_error(s, m, "Key: is required");
		return 0;
	}
	if (!(live = mcd_live_get())) {
		return no_client(s, m);
	}
	ttl = mcd_client_settings(live->client)->ttl;
	if (!ast_strlen_zero(ttl_text) && mcd_parse_long(ttl_text, 0, MCD_TTL_MAX, &ttl)) {
		astman_send_error(s, m, "TTL: must be a whole number of seconds");
		return 0;
	}
	ami_start(s, m, mcd_store(live->client, MCD_STORE_SET, key, value, strlen(value), ttl));
	astman_append(s, "\r\n");
	return 0;
}

static int ami_delete(struct mansession *s, const struct message *m)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	const char *key = astman_get_header(m, "Key");

	if (ast_strlen_zero(key)) {
		astman_send_error(s, m, "Key: is required");
		return 0;
	}
	if (!(live = mcd_live_get())) {
		return no_client(s, m);
	}
	ami_start(s, m, mcd_delete(live->client, key));
	astman_append(s, "\r\n");
	return 0;
}

static int ami_increment(struct mansession *s, const struct message *m)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	const char *key = astman_get_header(m, "Key");
	const char *increment = astman_get_header(m, "Increment");
	int64_t delta = 1;
	uint64_t value = 0;
	mcd_rc rc;

	if (ast_strlen_zero(key)) {
		astman_send_error(s, m, "Key: is required");
		return 0;
	}
	if (!ast_strlen_zero(increment) && mcd_parse_increment(increment, &delta)) {
		char error[96];

		snprintf(error, sizeof(error), "Increment: must be a whole number from -%lld to %lld",
			MCD_INCREMENT_MAX, MCD_INCREMENT_MAX);
		astman_send_error(s, m, error);
		return 0;
	}
	if (!(live = mcd_live_get())) {
		return no_client(s, m);
	}
	rc = mcd_counter_add(live->client, key, delta, 0, &value);
	ami_start(s, m, rc);
	if (rc == MCD_SUCCESS) {
		astman_append(s, "Value: %llu\r\n", (unsigned long long) value);
	}
	astman_append(s, "\r\n");
	return 0;
}

/* One event of the MemcachedStatus list, with the action's ActionID if it had one. */
static void status_event(struct mansession *s, const char *id, const char *event)
{
	astman_append(s, "Event: %s\r\n", event);
	if (!ast_strlen_zero(id)) {
		astman_append(s, "ActionID: %s\r\n", id);
	}
}

static int ami_status(struct mansession *s, const struct message *m)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	struct mcd_server_report reports[MCD_MAX_SERVERS];
	struct mcd_pool_usage usage[MCD_POOL_KINDS];
	const char *id = astman_get_header(m, "ActionID");
	const struct mcd_option *opt;
	unsigned int count;
	int events = 0;

	if (!(live = mcd_live_get())) {
		return no_client(s, m);
	}
	count = mcd_server_reports(live->client, reports, ARRAY_LEN(reports));
	astman_send_listack(s, m, "Memcached status will follow", "start");
	for (unsigned int i = 0; i < count; i++, events++) {
		const struct mcd_server_report *r = &reports[i];

		status_event(s, id, "MemcachedServer");
		astman_append(s, "Server: %s\r\nState: %s\r\nKind: %s\r\nVersion: %s\r\nItems: %llu\r\n"
			"Connections: %llu\r\nHits: %llu\r\nMisses: %llu\r\n\r\n", r->address,
			mcd_server_state(r), mcd_server_kind(r), r->version, r->items, r->connections, r->hits,
			r->misses);
	}
	mcd_client_pool_usage(live->client, usage);
	for (int kind = 0; kind < MCD_POOL_KINDS; kind++) {
		if (usage[kind].exists) {
			status_event(s, id, "MemcachedPool");
			astman_append(s, "Pool: %s\r\nInUse: %u\r\nPeak: %u\r\nSize: %u\r\n\r\n",
				mcd_pool_name(kind), usage[kind].in_use, usage[kind].peak, usage[kind].size);
			events++;
		}
	}
	for (int op = 0; op < MCD_OP_COUNT; op++, events++) {
		const struct mcd_op_stats *st = &mcd_module_stats()->ops[op];
		unsigned long calls = st->calls;
		uint64_t outcomes[MCD_OUTCOME_COUNT];

		mcd_stats_outcomes(st, outcomes);
		status_event(s, id, "MemcachedOperation");
		astman_append(s, "Operation: %s\r\nCalls: %lu\r\nSucceeded: %lu\r\nMeanMicroseconds: %lu\r\n"
			"WorstMicroseconds: %lu\r\n", mcd_op_name(op), calls,
			(unsigned long) st->by_result[mcd_result_slot(MCD_SUCCESS)],
			calls ? (unsigned long) st->total_us / calls : 0, (unsigned long) st->worst_us);
		/* How the calls ended, by kind: Answer, Refused, Error, Fault, Resting, Overload. */
		for (int outcome = 0; outcome < MCD_OUTCOME_COUNT; outcome++) {
			const char *name = mcd_outcome_name(outcome);

			astman_append(s, "%c%s: %" PRIu64 "\r\n", toupper(name[0]), name + 1, outcomes[outcome]);
		}
		astman_append(s, "\r\n");
	}
	for (size_t i = 0; (opt = mcd_option_at(i)); i++) {
		char value[MCD_ADDRESS_LEN + 32];

		for (unsigned int n = 0; mcd_option_value(opt, mcd_client_settings(live->client), n, value,
			sizeof(value)); n++, events++) {
			status_event(s, id, "MemcachedSetting");
			astman_append(s, "Option: %s\r\nValue: %s\r\nUnit: %s\r\n\r\n", opt->name, value,
				opt->unit);
		}
	}
	astman_send_list_complete_start(s, m, "MemcachedStatusComplete", events);
	astman_send_list_complete_end(s);
	return 0;
}

/* What one listing action hands its callbacks. */
struct listing {
	struct mansession *s;
	const char *id;
};

static void group_event(const struct mcd_group_report *r, void *arg)
{
	const struct listing *l = arg;

	status_event(l->s, l->id, "MemcachedGroup");
	astman_append(l->s, "Category: %s\r\nGroup: %s\r\nHere: %ld\r\nCluster: %ld\r\nPublished: %ld\r\n\r\n",
		r->category, r->group, r->here, r->cluster, r->published);
}

static int ami_groups(struct mansession *s, const struct message *m)
{
	RAII_VAR(struct mcd_live *, live, NULL, ao2_cleanup);
	struct listing l = { .s = s, .id = astman_get_header(m, "ActionID") };
	struct mcd_coord *coord = mcd_coordination();
	char node[MCD_NAME_MAX + 1];
	unsigned int count;

	if (!(live = mcd_live_get()) || !coord) {
		return no_client(s, m);
	}
	astman_send_listack(s, m, "Memcached groups will follow", "start");
	count = mcd_coord_groups(live->client, coord, group_event, &l, 10000);
	mcd_coord_node(coord, node, sizeof(node));
	astman_send_list_complete_start(s, m, "MemcachedGroupsComplete", (int) count);
	astman_append(s, "Node: %s\r\n", node);
	astman_send_list_complete_end(s);
	return 0;
}

static int ami_reset_group(struct mansession *s, const struct message *m)
{
	const char *group = astman_get_header(m, "Group"), *category = astman_get_header(m, "Category");
	char message[96];
	long before, after;
	mcd_rc rc;

	if (ast_strlen_zero(group)) {
		astman_send_error(s, m, "Group: is needed");
		return 0;
	}
	rc = mcd_coordination_reset(category, group, "the manager", &before, &after);
	if (rc != MCD_SUCCESS) {
		ast_copy_string(message, mcd_rc_name(rc), sizeof(message));
		astman_send_error(s, m, message);
		return 0;
	}
	snprintf(message, sizeof(message), "%ld member(s) counted before, %ld now", before, after);
	astman_send_ack(s, m, message);
	return 0;
}

static void lock_event(const struct mcd_lock_report *r, void *arg)
{
	const struct listing *l = arg;

	status_event(l->s, l->id, "MemcachedLock");
	astman_append(l->s, "Lock: %s\r\nHolder: %s\r\nHeldSeconds: %ld\r\nTTL: %ld\r\n\r\n", r->name,
		r->holder, r->held_s, r->ttl);
}

static int ami_locks(struct mansession *s, const struct message *m)
{
	struct listing l = { .s = s, .id = astman_get_header(m, "ActionID") };
	struct mcd_coord *coord = mcd_coordination();
	unsigned int count;

	if (!coord) {
		return no_client(s, m);
	}
	astman_send_listack(s, m, "Memcached locks will follow", "start");
	count = mcd_coord_locks(coord, lock_event, &l);
	astman_send_list_complete_start(s, m, "MemcachedLocksComplete", (int) count);
	astman_send_list_complete_end(s);
	return 0;
}

static int ami_rates(struct mansession *s, const struct message *m)
{
	const char *id = astman_get_header(m, "ActionID");
	struct mcd_rate_seen *seen = ast_malloc(MCD_RATE_BOOK_SIZE * sizeof(*seen));
	size_t count;

	if (!seen) {
		astman_send_error(s, m, "Out of memory");
		return 0;
	}
	count = mcd_rate_book_list(mcd_rates_book(), seen, MCD_RATE_BOOK_SIZE);
	astman_send_listack(s, m, "Memcached rates will follow", "start");
	for (size_t i = 0; i < count; i++) {
		char limit[40];

		mcd_rate_describe(&seen[i], limit, sizeof(limit));
		status_event(s, id, "MemcachedRate");
		astman_append(s, "Name: %s\r\nLimit: %s\r\nCount: %llu\r\nAdmitted: %llu\r\nRefused: %llu\r\n\r\n",
			seen[i].name, limit, (unsigned long long) seen[i].count, (unsigned long long) seen[i].admitted,
			(unsigned long long) seen[i].refused);
	}
	astman_send_list_complete_start(s, m, "MemcachedRatesComplete", (int) count);
	astman_send_list_complete_end(s);
	ast_free(seen);
	return 0;
}

static const struct {
	const char *name;
	int authority;
	int (*handler)(struct mansession *s, const struct message *m);
} manager_actions[] = {
	{ "MemcachedGet", EVENT_FLAG_REPORTING, ami_get },
	{ "MemcachedSet", EVENT_FLAG_SYSTEM, ami_set },
	{ "MemcachedDelete", EVENT_FLAG_SYSTEM, ami_delete },
	{ "MemcachedIncrement", EVENT_FLAG_SYSTEM, ami_increment },
	{ "MemcachedStatus", EVENT_FLAG_REPORTING, ami_status },
	{ "MemcachedGroups", EVENT_FLAG_REPORTING, ami_groups },
	{ "MemcachedGroupReset", EVENT_FLAG_SYSTEM, ami_reset_group },
	{ "MemcachedLocks", EVENT_FLAG_REPORTING, ami_locks },
	{ "MemcachedRates", EVENT_FLAG_REPORTING, ami_rates },
};

int mcd_manager_init(void)
{
	for (size_t i = 0; i < ARRAY_LEN(manager_actions); i++) {
		if (ast_manager_register_xml(manager_actions[i].name, manager_actions[i].authority,
			manager_actions[i].handler)) {
			return -1;
		}
	}
	return 0;
}

int mcd_manager_cleanup(void)
{
	int res = 0;

	for (size_t i = 0; i < ARRAY_LEN(manager_actions); i++) {
		res |= ast_manager_unregister(manager_actions[i].name);
	}
	return res;
}
