/*
 * job.c - job allocation, reference counting and completion. See job.h.
 */
#include "job.h"

#include <stdlib.h>
#include <string.h>

struct gw_job *gw_job_new(struct gw_config *conf)
{
	struct gw_job *job = calloc(1, sizeof(*job));
	if (!job)
		return NULL;
	atomic_init(&job->refs, 1);
	atomic_init(&job->finished, false);
	job->qn.level = -1;
	job->provider = -1;
	job->prio = GW_PRIO_MEDIUM;
	job->chat.max_tokens = -1;
	job->conf = gw_config_ref(conf);
	gw_buf_init(&job->attempt_log, 4096);
	gw_buf_init(&job->out, conf->upstream_max_body_bytes);
	gw_buf_init(&job->record, conf->upstream_max_body_bytes);
	job->x_cache = "BYPASS";
	pthread_mutex_init(&job->lock, NULL);
	return job;
}

struct gw_job *gw_job_ref(struct gw_job *job)
{
	atomic_fetch_add_explicit(&job->refs, 1, memory_order_relaxed);
	return job;
}

void gw_job_unref(struct gw_job *job)
{
	if (!job)
		return;
	if (atomic_fetch_sub_explicit(&job->refs, 1, memory_order_acq_rel) != 1)
		return;
	gw_chat_free(&job->chat);
	gw_buf_free(&job->attempt_log);
	gw_buf_free(&job->out);
	gw_buf_free(&job->record);
	pthread_mutex_destroy(&job->lock);
	free(job->body);
	gw_config_unref(job->conf);
	free(job);
}

void gw_job_set_error(struct gw_job *job, const struct gw_error *err)
{
	free(job->body);
	job->body = gw_error_body(err, &job->body_len);
	job->status = err->status;
	job->retry_after_s = err->retry_after_s;
	job->no_retry = err->no_retry;
}

void gw_job_log_attempt(struct gw_job *job, const char *provider, const char *reason)
{
	/* Past the bound the log is simply cut; it is informational. */
	gw_buf_printf(&job->attempt_log, "%s%s: %s", job->attempt_log.len ? "; " : "", provider,
		      reason);
}

/* Caller holds job->lock. */
static void wake_locked(struct gw_job *job)
{
	if (job->suspended && job->conn && job->wake) {
		job->suspended = false;
		job->wake(job->conn);
	}
}

void gw_job_wake(struct gw_job *job)
{
	pthread_mutex_lock(&job->lock);
	wake_locked(job);
	pthread_mutex_unlock(&job->lock);
}

int gw_job_stream_push(struct gw_job *job, const char *data, size_t len, bool end, bool failed)
{
	int rc = 0;
	pthread_mutex_lock(&job->lock);
	if (len > 0) {
		rc = gw_buf_append(&job->out, data, len);
		if (rc == 0)
			job->started = true;
		/* Past its bound the copy is dropped and the answer not cached. */
		if (job->cache_store && gw_buf_append(&job->record, data, len) < 0)
			job->cache_store = false;
	}
	if (end || rc < 0) {
		job->ended = true;
		job->stream_failed = failed || rc < 0;
	}
	wake_locked(job);
	pthread_mutex_unlock(&job->lock);
	return rc;
}

bool gw_job_started(struct gw_job *job)
{
	pthread_mutex_lock(&job->lock);
	bool v = job->started;
	pthread_mutex_unlock(&job->lock);
	return v;
}

bool gw_job_client_gone(struct gw_job *job)
{
	pthread_mutex_lock(&job->lock);
	bool v = job->client_gone;
	pthread_mutex_unlock(&job->lock);
	return v;
}

void gw_job_finish(struct gw_job *job)
{
	bool expected = false;
	if (!atomic_compare_exchange_strong(&job->finished, &expected, true))
		return;
	job->state = GW_JOB_DONE;
	if (job->done)
		job->done(job, job->done_arg);
}
