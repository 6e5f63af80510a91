/* A small persistent thread pool, one per context (docs/threads.md).
 *
 * A job is n tasks 0 .. n-1 run by the calling thread together with the
 * pool's workers; tpool_run returns when all of them are done. Which thread
 * runs which task is left to chance (the next free thread takes the next
 * task), so a task must compute the same thing whoever runs it: write only
 * its own part of the output, in an order fixed by the task number alone.
 * Then a job's result does not depend on the number of threads.
 *
 * Everything is allocated by tpool_create; running a job allocates nothing.
 * A NULL pool is valid everywhere and means "the calling thread only".
 * Jobs on one pool are serialized (a second thread's tpool_run waits for
 * the first), and a tpool_run from inside a task runs inline.
 */
#ifndef DALLE_THREADPOOL_H
#define DALLE_THREADPOOL_H

#include <stdint.h>

#include "dalle/dalle.h"

typedef struct tpool tpool;

/* The most threads a pool uses (more are accepted and capped): every
 * product is split into at most a few dozen blocks (lib/ops_cpu.c). */
#define TPOOL_MAX_THREADS 64

/* A pool of n_threads threads in all, the caller included (0 = one per
 * online core): n_threads - 1 workers are started. A worker that cannot
 * start is simply missing (fewer threads: slower, never different).
 * DALLE_ERR_OUT_OF_MEMORY when the pool itself cannot be allocated. */
dalle_status tpool_create(int n_threads, tpool **out);
void tpool_free(tpool *p);

/* Threads a job runs on (1 for NULL). */
int tpool_threads(const tpool *p);

typedef void (*tpool_task)(void *arg, int64_t task);

/* fn(arg, t) for every t in [0, n_tasks). */
void tpool_run(tpool *p, int64_t n_tasks, tpool_task fn, void *arg);

/* fn(arg, lo, hi) over contiguous ranges covering [0, n), for element-wise
 * passes whose items are independent (each item is computed the same way
 * in any range). Runs inline below min_items * 2 items. */
typedef void (*tpool_range)(void *arg, int64_t lo, int64_t hi);
void tpool_for(tpool *p, int64_t n, int64_t min_items, tpool_range fn, void *arg);

#endif
