/*
 * res_memcached -- memcached access for the Asterisk dialplan
 *
 * conf: reading memcached.conf with Asterisk's config parser and handing
 * each option to the core's option table, which knows every option.
 *
 * This program is free software, distributed under the terms of
 * the GNU General Public License Version 2. See the COPYING file.
 */

#include "asterisk.h"

#include "asterisk/config.h"
#include "asterisk/logger.h"
#include "asterisk/strings.h"

#include "glue/internal.h"

static enum mcd_conf_status parse_file(struct mcd_settings *settings, struct ast_flags flags)
{
	struct ast_config *cfg = ast_config_load2(MCD_CONFIG_FILE, AST_MODULE, flags);
	const char *category = NULL;
	char err[256];
	int bad = 0;

	mcd_settings_defaults(settings);
	if (cfg == CONFIG_STATUS_FILEUNCHANGED) {
		return MCD_CONF_UNCHANGED;
	}
	if (cfg == CONFIG_STATUS_FILEINVALID) {
		ast_log(LOG_ERROR, "%s cannot be parsed\n", MCD_CONFIG_FILE);
		return MCD_CONF_BAD;
	}
	if (!cfg) {
		ast_log(LOG_NOTICE, "%s not found: using the defaults (server localhost:11211)\n",
			MCD_CONFIG_FILE);
	}
	while (cfg && (category = ast_category_browse(cfg, category))) {
		if (strcasecmp(category, "general")) {
			ast_log(LOG_WARNING, "%s: section [%s] is unknown and ignored; options go in [general]\n",
				MCD_CONFIG_FILE, category);
			continue;
		}
		for (struct ast_variable *var = ast_variable_browse(cfg, category); var; var = var->next) {
			switch (mcd_settings_apply(settings, var->name, var->value, err, sizeof(err))) {
			case MCD_CONFIG_OK:
				break;
			case MCD_CONFIG_UNKNOWN_OPTION:
				ast_log(LOG_WARNING, "%s line %d: %s, ignored\n", MCD_CONFIG_FILE, var->lineno, err);
				break;
			case MCD_CONFIG_BAD_VALUE:
				ast_log(LOG_ERROR, "%s line %d: %s\n", MCD_CONFIG_FILE, var->lineno, err);
				bad = 1;
				break;
			}
		}
	}
	if (cfg) {
		ast_config_destroy(cfg);
	}
	if (!bad && mcd_settings_finish(settings, err, sizeof(err))) {
		ast_log(LOG_ERROR, "%s: %s\n", MCD_CONFIG_FILE, err);
		bad = 1;
	}
	return bad ? MCD_CONF_BAD : MCD_CONF_READ;
}

/* The last read found the file unusable: it is read again even when unchanged, so that a
 * reload says what is wrong with it rather than that nothing changed. */
static int last_read_bad;

enum mcd_conf_status mcd_conf_read(struct mcd_settings *settings, int reloading)
{
	/* A reload of a file that did not change (FreePBX reloads on every Apply) does nothing:
	 * the pools and what is known of the servers' health stay. A load always reads it
	 * (Asterisk remembers the file across an unload). */
	struct ast_flags flags = { reloading && !last_read_bad ? CONFIG_FLAG_FILEUNCHANGED : 0 };
	enum mcd_conf_status status = parse_file(settings, flags);

	last_read_bad = status == MCD_CONF_BAD;
	return status;
}

void mcd_conf_log(const struct mcd_settings *settings)
{
	struct ast_str *servers = ast_str_alloca(MCD_MAX_SERVERS * (MCD_ADDRESS_LEN + 2));

	for (unsigned int i = 0; i < settings->server_count; i++) {
		char address[MCD_ADDRESS_LEN];

		ast_str_append(&servers, 0, "%s%s", i ? ", " : "",
			mcd_server_address(&settings->servers[i], address));
	}
	ast_verb(2, "res_memcached: servers %s; prefix '%s'; ttl %ld s; %s protocol\n",
		ast_str_buffer(servers), settings->prefix, settings->ttl,
		settings->binary_protocol ? "binary" : "text");
}
