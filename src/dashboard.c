/*
 * dashboard.c - serves the usage dashboard page and Chart.js from memory.
 *
 * The bytes live in build/<variant>/assets.c, generated at build time by
 * scripts/embed.sh from src/dashboard.html and the system's Chart.js
 * (Debian package libjs-chart.js); nothing third-party is kept in the
 * repository and nothing is read from disk at run time. See dashboard.h.
 */
#include "dashboard.h"

#include <errno.h>
#include <string.h>

/* Defined in the generated assets.c (scripts/embed.sh NAME=FILE). */
extern const unsigned char gw_asset_dashboard_html[];
extern const size_t gw_asset_dashboard_html_len;
extern const unsigned char gw_asset_chartjs[];
extern const size_t gw_asset_chartjs_len;

struct asset {
	const char *path;
	const unsigned char *body;
	const size_t *len;
	const char *content_type;
};

static const struct asset assets[] = {
	{ "/dashboard", gw_asset_dashboard_html, &gw_asset_dashboard_html_len,
	  "text/html; charset=utf-8" },
	{ "/dashboard/chart.js", gw_asset_chartjs, &gw_asset_chartjs_len,
	  "application/javascript; charset=utf-8" },
};

int gw_dashboard_asset(const char *path, const char **body, size_t *len,
		       const char **content_type)
{
	if (!path)
		return -ENOENT;
	for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++) {
		if (strcmp(path, assets[i].path) != 0)
			continue;
		*body = (const char *)assets[i].body;
		*len = *assets[i].len;
		*content_type = assets[i].content_type;
		return 0;
	}
	return -ENOENT;
}
