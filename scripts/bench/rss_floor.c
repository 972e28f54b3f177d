/*
 * rss_floor.c - the idle resident set that llmgwd's libraries cost by
 * themselves, the floor under llmgwd's own idle RSS in make bench.
 *
 * Linked with exactly llmgwd's libraries (the Makefile's LDLIBS, with
 * --no-as-needed so that the ones it makes no call into stay loaded), it does
 * the start-up work every llmgwd does and nothing else: curl's global
 * init and one multi handle per worker, one SHA-256 through OpenSSL's
 * EVP, and a libmicrohttpd daemon on an ephemeral loopback port with
 * llmgwd's flags. Then it prints its VmRSS, RssAnon and RssFile (kB) as
 * one JSON line after --idle-ms (default 500) and exits.
 *
 *   rss_floor [--idle-ms N]
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *size, void **state)
{
	(void)cls, (void)c, (void)url, (void)method, (void)version, (void)data, (void)size,
		(void)state;
	return MHD_NO;
}

static long status_kb(const char *key)
{
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0 && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	long idle_ms = 500;
	if (argc == 3 && strcmp(argv[1], "--idle-ms") == 0)
		idle_ms = strtol(argv[2], NULL, 10);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	long workers = sysconf(_SC_NPROCESSORS_ONLN);
	for (long i = 0; i < (workers > 0 ? workers : 1); i++)
		if (!curl_multi_init())
			return 1;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	if (!EVP_Digest("floor", 5, md, &mdlen, EVP_sha256(), NULL))
		return 1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL,
		NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(8 * 1024), MHD_OPTION_END);
	if (!d)
		return 1;
	struct timespec ts = { .tv_sec = idle_ms / 1000, .tv_nsec = (idle_ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	printf("{\"rss_kb\":%ld,\"anon_kb\":%ld,\"file_kb\":%ld}\n", status_kb("VmRSS"),
	       status_kb("RssAnon"), status_kb("RssFile"));
	MHD_stop_daemon(d);
	return 0;
}
