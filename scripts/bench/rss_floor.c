/*
 * rss_floor.c - the idle resident set that llmgwd's libraries cost by
 * themselves, the floor under llmgwd's own idle RSS in make bench.
 *
 * Linked with exactly llmgwd's libraries (the Makefile's LDLIBS, with
 * --no-as-needed so that the ones it makes no call into stay loaded), it does
 * the start-up work every llmgwd does and nothing else: curl's global
 * init and one multi handle per worker, and one SHA-256 through OpenSSL's
 * EVP. (llmgwd's HTTP server is its own code, so it counts as llmgwd's
 * share, not the floor's.) Then it prints its VmRSS, RssAnon and RssFile (kB) as
 * one JSON line after --idle-ms (default 500) and exits.
 *
 *   rss_floor [--idle-ms N]
 */
#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
	struct timespec ts = { .tv_sec = idle_ms / 1000, .tv_nsec = (idle_ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	printf("{\"rss_kb\":%ld,\"anon_kb\":%ld,\"file_kb\":%ld}\n", status_kb("VmRSS"),
	       status_kb("RssAnon"), status_kb("RssFile"));
	return 0;
}
