/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * The module itself: load, unload and reload, and the live client that a
 * reload replaces as a whole. What the module offers is in src/glue/ (one
 * file per Asterisk feature area, see internal.h); everything that talks to
 * memcached is in src/core/, which knows nothing of Asterisk.
 *
 * The module always loads: with a memcached.conf it cannot use, or servers
 * whose names do not resolve yet, every call answers MEMCACHED_NO_SERVERS
 * and the log says why (the live client and its resolver: glue/live.c).
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

/*** MODULEINFO
	<depend>memcached</depend>
	<support_level>extended</support_level>
 ***/

#include "asterisk.h"

#include "asterisk/logger.h"
#include "asterisk/module.h"

#include "glue/internal.h"

static int unload_module(void)
{
	int res = 0;

	/* First the resolver, which may be building a client (and configuring coordination);
	 * then, in this order, each area: the coordination's last leaves need the live client. */
	mcd_live_stop();
	res |= mcd_manager_cleanup();
	res |= mcd_cli_cleanup();
	res |= mcd_coordination_cleanup();
	res |= mcd_rates_cleanup();
	res |= mcd_dialplan_cleanup();
	mcd_live_cleanup();
	return res;
}

static int load_module(void)
{
	if (mcd_live_init() || mcd_dialplan_init() || mcd_rates_init() || mcd_coordination_init()
		|| mcd_cli_init() || mcd_manager_init()) {
		unload_module();
		return AST_MODULE_LOAD_DECLINE;
	}
	/* Every function and application exists whatever the file says: a call that reaches
	 * one gets a result, never a hangup for a missing application. */
	if (mcd_live_load(0)) {
		mcd_live_set_problem(MCD_CONFIG_FILE " cannot be used (see the errors above): fix it and run "
			"'module reload res_memcached'; calls get MEMCACHED_NO_SERVERS meanwhile");
	}
	return AST_MODULE_LOAD_SUCCESS;
}

static int reload_module(void)
{
	if (mcd_live_load(1)) {
		ast_log(LOG_ERROR, "%s not reloaded: the previous configuration stays in use\n", MCD_CONFIG_FILE);
		return AST_MODULE_LOAD_DECLINE;
	}
	return AST_MODULE_LOAD_SUCCESS;
}

/* Global symbols: res_memcached_prometheus links against res_memcached_metrics, the one
 * function this module does not hide (see glue/metrics.h). */
AST_MODULE_INFO(ASTERISK_GPL_KEY, AST_MODFLAG_GLOBAL_SYMBOLS, "memcached access for the dialplan",
	.support_level = AST_MODULE_SUPPORT_EXTENDED,
	.load = load_module,
	.unload = unload_module,
	.reload = reload_module,
);
