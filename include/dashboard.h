/*
 * dashboard.h - the usage dashboard (GET /dashboard) and the chart library
 * it loads (GET /dashboard/chart.js), served from memory.
 *
 * Both are compiled into the binary: scripts/embed.sh turns
 * src/dashboard.html and Debian's Chart.js (package libjs-chart.js) into
 * build/<variant>/assets.c. The page reads /stats every 5 seconds and
 * loads nothing from any other origin. See docs/dashboard.md.
 */
#ifndef GW_DASHBOARD_H
#define GW_DASHBOARD_H

#include <stddef.h>

/*
 * Looks up an asset by URL path (no query string): "/dashboard" is the page
 * ("text/html; charset=utf-8"), "/dashboard/chart.js" the chart library
 * ("application/javascript; charset=utf-8"). On success sets *body, *len
 * and *content_type and returns 0; the bytes are static and read-only (an
 * answer may point at them without copying or owning them, and nothing
 * is freed). Any other path returns -ENOENT and leaves the outputs alone.
 * Thread-safe; never blocks.
 */
int gw_dashboard_asset(const char *path, const char **body, size_t *len,
		       const char **content_type);

/*
 * Content-Security-Policy for the page. It matches what the page does:
 * inline script and style, the chart library from this origin, fetch()
 * only to this origin, no frames, forms or plugins. The front sends it
 * with "/dashboard".
 */
#define GW_DASHBOARD_CSP                                                              \
	"default-src 'none'; script-src 'self' 'unsafe-inline'; "                     \
	"style-src 'unsafe-inline'; connect-src 'self'; img-src data:; "              \
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#endif
