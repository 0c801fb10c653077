/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * coordination.h: what the dialplan's groups (groups.c) and locks (locks.c)
 * share with coordination.c: the node's state, and each channel's
 * memberships and locks, which end with the channel.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#ifndef MCD_GLUE_COORDINATION_H
#define MCD_GLUE_COORDINATION_H

#include "asterisk/linkedlists.h"

#include "glue/internal.h"

struct membership {
	AST_LIST_ENTRY(membership) entry;
	char category[MCD_NAME_MAX + 1];
	char group[MCD_NAME_MAX + 1];
};

struct held {
	AST_LIST_ENTRY(held) entry;
	char name[MCD_NAME_MAX + 1];
	char token[MCD_TOKEN_MAX];
};

struct channel_state {
	AST_LIST_ENTRY(channel_state) entry;
	AST_LIST_HEAD_NOLOCK(, membership) groups;
	AST_LIST_HEAD_NOLOCK(, held) locks;
};

/*! The channel's state (chan locked), made when create and missing; NULL if none. */
struct channel_state *mcd_channel_state(struct ast_channel *chan, int create);

/*! The state's membership in category, or NULL. */
struct membership *mcd_membership_in(struct channel_state *state, const char *category);

/*! A call that needs a channel, made without one (the CLI, say): logged, 0. */
int mcd_needs_channel(const char *cmd);

/* The dialplan functions of each file. */
extern struct ast_custom_function mcd_group_function, mcd_group_count_function;
extern struct ast_custom_function mcd_lock_function, mcd_trylock_function, mcd_unlock_function;

#endif
