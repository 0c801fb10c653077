/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * internal: what the glue's units share. Each Asterisk feature area has its
 * own file, with a *_init / *_cleanup pair that res_memcached.c calls:
 *   live.c      the live client, swapped whole; the resolver thread that builds it
 *   conf.c      memcached.conf -> settings, through the core's option table
 *   report.c    MCDRESULT, and the log limiter
 *   dialplan.c  MCD, MCDCOUNTER and the mcd* applications
 *   cli.c       the "memcached ..." console commands
 *   manager.c   the Memcached* manager (AMI) actions
 *   coordination.c  the channel datastore that ends memberships and locks, the thread
 *               that ends them and the tick thread (coordination.h: shared with:)
 *   groups.c    MCDGROUP, MCDGROUP_COUNT
 *   locks.c     MCDLOCK, MCDTRYLOCK, MCDUNLOCK
 *   rates.c     MCDRATE: calls per period, limited across the cluster
 *   metrics.c   the snapshot res_memcached_prometheus renders (see metrics.h)
 * Every name here starts with mcd_: a module's global symbols can meet
 * another module's in Asterisk's process.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_GLUE_INTERNAL_H
#define MCD_GLUE_INTERNAL_H

#include "core/client.h"
#include "core/coord.h"
#include "core/rates.h"

struct ast_channel;

#define MCD_CONFIG_FILE "memcached.conf"

/* --- live.c: the live client and its resolver --- */

/*! The client in use, swapped whole on reload: an ao2 object (release it with ao2_cleanup),
 * so a call in flight keeps the client it started with. */
struct mcd_live {
	struct mcd_client *client;
};

/*! The live client with a reference held, or NULL when there is none (while unloading). */
struct mcd_live *mcd_live_get(void);

/*! Read memcached.conf and hand its settings to the resolver, which builds the client and
 * makes it the live one (waiting a moment for the first lookup). 0, also when the file has not
 * changed (nothing is done); -1 when it cannot be used: then the old client stays. */
int mcd_live_load(int reloading);

/*! Why calls cannot be served (no usable file, names that do not resolve), or "". */
void mcd_live_problem(char *buf, size_t len);

/*! Say why calls cannot be served (logged when it changes), or "" once they can. */
void mcd_live_set_problem(const char *problem);

/*! Start the resolver thread (0), or -1. */
int mcd_live_init(void);

/*! Stop the resolver thread; the live client stays. */
void mcd_live_stop(void);

/*! Stop the resolver and drop the live client. */
void mcd_live_cleanup(void);

/*! The operation counts since load or "memcached reset stats": every client counts here. */
struct mcd_stats *mcd_module_stats(void);

/* --- conf.c --- */

enum mcd_conf_status {
	MCD_CONF_READ,               /* settings hold the file's */
	MCD_CONF_UNCHANGED,          /* the file is as it was at the last read: nothing to do */
	MCD_CONF_BAD,                /* a bad value or a broken file: nothing should change */
};

/*! Read memcached.conf into settings, logging each problem with its line. */
enum mcd_conf_status mcd_conf_read(struct mcd_settings *settings, int reloading);

/*! Log, at verbose level 2, the settings a new client runs with. */
void mcd_conf_log(const struct mcd_settings *settings);

/* --- report.c --- */

/*! The end of every dialplan call: log rc if it deserves it (faults, resting servers and a
 * full pool at most once per window, with a count of the others), then set MCDRESULT. */
void mcd_report(struct ast_channel *chan, const char *what, const char *key, mcd_rc rc);

/*! Log rc for what on key, as mcd_report does, without touching a channel. */
void mcd_report_log(const char *what, const char *key, mcd_rc rc);

/*! MCDRESULT for a call refused for its arguments, whose caller has logged the syntax. 0. */
int mcd_refuse(struct ast_channel *chan);

/*! Log what the core found for the administrator (a server of the other protocol, say). */
void mcd_report_notice(const char *message);

/*! Set a channel variable (a global one when chan is NULL), unless it already holds value. */
void mcd_set_if_changed(struct ast_channel *chan, const char *variable, const char *value);

/* --- the feature areas: init registers what each offers (0 or -1); cleanup unregisters
 * it, returning non-zero when Asterisk refused (the module then stays loaded) --- */

int mcd_dialplan_init(void);
int mcd_dialplan_cleanup(void);
int mcd_cli_init(void);
int mcd_cli_cleanup(void);
int mcd_manager_init(void);
int mcd_manager_cleanup(void);
int mcd_coordination_init(void);
int mcd_coordination_cleanup(void);
int mcd_rates_init(void);
int mcd_rates_cleanup(void);


/*! The rates this Asterisk decided on lately (MCDRATE), or NULL before init. */
struct mcd_rate_book *mcd_rates_book(void);

/*! A rate in short, as the console and the manager show it: "20/2s", "3/600s,a". */
void mcd_rate_describe(const struct mcd_rate_seen *seen, char *buf, size_t len);

/*! This Asterisk's groups and locks (for the console and the manager); NULL before init. */
struct mcd_coord *mcd_coordination(void);

/*! Reset group's counter to what the Asterisk servers count (mcd_group_reset), logged with who
 * asked ("the console", "the manager"). */
mcd_rc mcd_coordination_reset(const char *category, const char *group, const char *who, long *before,
	long *after);

/*! Take node_id and group_lease from newly loaded settings. */
void mcd_coordination_configure(const struct mcd_settings *settings);

#endif
