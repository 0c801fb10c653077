/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * The module itself: load, unload and reload, and the live client that a
 * reload replaces as a whole. What the module offers is in src/glue/ (one
 * file per Asterisk feature area, see internal.h); everything that talks to
 * memcached is in src/core/, which knows nothing of Asterisk.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

/*** MODULEINFO
	<depend>memcached</depend>
	<support_level>extended</support_level>
 ***/

#include "asterisk.h"

#include "asterisk/astobj2.h"
#include "asterisk/logger.h"
#include "asterisk/module.h"

#include "glue/internal.h"

static AO2_GLOBAL_OBJ_STATIC(live_client);

static struct mcd_stats stats;

struct mcd_stats *mcd_module_stats(void)
{
	return &stats;
}

struct mcd_live *mcd_live_get(void)
{
	return ao2_global_obj_ref(live_client);
}

static void live_destroy(void *obj)
{
	struct mcd_live *live = obj;

	mcd_client_destroy(live->client);
}

int mcd_live_load(void)
{
	struct mcd_settings settings;
	struct mcd_live *live;
	char err[256];

	if (mcd_conf_read(&settings)) {
		return -1;
	}
	live = ao2_alloc_options(sizeof(*live), live_destroy, AO2_ALLOC_OPT_LOCK_NOLOCK);
	if (!live) {
		return -1;
	}
	live->client = mcd_client_create(&settings, &stats, mcd_report_notice, err, sizeof(err));
	if (!live->client) {
		ast_log(LOG_ERROR, "%s: %s\n", MCD_CONFIG_FILE, err);
		ao2_ref(live, -1);
		return -1;
	}
	mcd_conf_log(mcd_client_settings(live->client));
	mcd_coordination_configure(mcd_client_settings(live->client));
	ao2_global_obj_replace_unref(live_client, live);
	ao2_ref(live, -1);
	return 0;
}

static int unload_module(void)
{
	int res = 0;

	/* In this order, each of them: the coordination's last leaves need the live client. */
	res |= mcd_manager_cleanup();
	res |= mcd_cli_cleanup();
	res |= mcd_coordination_cleanup();
	res |= mcd_dialplan_cleanup();
	ao2_global_obj_release(live_client);
	return res;
}

static int load_module(void)
{
	if (mcd_live_load()) {
		ast_log(LOG_ERROR, "res_memcached not loaded: fix %s and load it again\n", MCD_CONFIG_FILE);
		return AST_MODULE_LOAD_DECLINE;
	}
	if (mcd_dialplan_init() || mcd_coordination_init() || mcd_cli_init() || mcd_manager_init()) {
		unload_module();
		return AST_MODULE_LOAD_DECLINE;
	}
	return AST_MODULE_LOAD_SUCCESS;
}

static int reload_module(void)
{
	if (mcd_live_load()) {
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
