/* The context's thread pool (see threadpool.h and docs/threads.md).
 *
 * A job is published in one atomic word, `state`: its generation, whether
 * it is still open to workers, and how many workers have joined it. A
 * worker that sees a new generation joins it (one compare-and-swap) only
 * while it is open, then takes tasks from a shared counter. The caller
 * takes tasks too; once none is left it closes the job and waits only for
 * the workers that joined, which are running their last task. A worker
 * that was asleep or descheduled (an oversubscribed machine) and comes
 * late finds the job closed and skips it: the caller never waits for a
 * thread that is not running. The job's fields are rewritten only after
 * every joined worker has left, and a worker reads them only after joining.
 *
 * Waiting threads poll briefly, then poll with sched_yield (on an idle
 * machine that returns at once; on a loaded one it lets the others run),
 * then sleep on a condition variable: a generation step issues a few
 * hundred small products in a row, and waking a sleeping thread for each
 * would cost more than the products themselves. */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

/* How long a waiting thread polls in all before it sleeps, and how much of
 * that it spins without yielding the core (ns). */
#define TPOOL_SPIN_NS 200000
#define TPOOL_BUSY_NS 20000

/* state: generation (high 32 bits) | OPEN | joined workers (low 31 bits) */
#define ST_OPEN ((uint64_t)1 << 31)
#define ST_JOINED(s) ((s) & (ST_OPEN - 1))
#define ST_GEN(s) ((uint32_t)((s) >> 32))

struct tpool {
    int n_workers;                      /* started; threads = n_workers + 1 */
    pthread_t th[TPOOL_MAX_THREADS];
    pthread_mutex_t run_lock;           /* one job at a time */
    pthread_mutex_t mu;                 /* with wake / done: the sleeping side */
    pthread_cond_t wake, done;
    /* the current job, written before it is published (release) */
    tpool_task fn;
    void *arg;
    int64_t n_tasks;
    uint32_t gen;                       /* the caller's copy (under run_lock) */
    atomic_int_fast64_t next;           /* the next task to take */
    _Atomic uint64_t state;
    atomic_int stop;
};

/* Set while this thread runs tasks (always in a worker): a tpool_run from
 * inside a task runs inline instead of waiting for itself. */
static _Thread_local int in_pool;

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Poll `done_fn` for up to TPOOL_SPIN_NS (yielding the core after
 * TPOOL_BUSY_NS); 1 if it became true. */
static int spin_until(int (*done_fn)(tpool *, uint32_t), tpool *p, uint32_t v)
{
    uint64_t t0 = 0;
    int yield = 0;
    for (unsigned i = 1;; i++) {
        if (done_fn(p, v))
            return 1;
        if ((i & 63) == 0) {
            uint64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > TPOOL_SPIN_NS)
                return 0;
            else
                yield = t - t0 > TPOOL_BUSY_NS;
        }
        if (yield)
            sched_yield();
        else
            cpu_relax();
    }
}

static int new_job(tpool *p, uint32_t seen)
{
    return ST_GEN(atomic_load_explicit(&p->state, memory_order_acquire)) != seen ||
           atomic_load_explicit(&p->stop, memory_order_acquire);
}

/* the job is closed and every worker that joined it has left */
static int all_out(tpool *p, uint32_t unused)
{
    (void)unused;
    return ST_JOINED(atomic_load_explicit(&p->state, memory_order_acquire)) == 0;
}

static void run_tasks(tpool *p)
{
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks)
            return;
        p->fn(p->arg, t);
    }
}

/* Join the job of generation gen if it is still open; 1 if joined. */
static int join(tpool *p, uint32_t gen)
{
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    while ((s & ST_OPEN) && ST_GEN(s) == gen)
        if (atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return 1;
    return 0;
}

static void *worker(void *vp)
{
    tpool *p = vp;
    uint32_t seen = 0;
    in_pool = 1;
    for (;;) {
        if (!spin_until(new_job, p, seen)) {
            pthread_mutex_lock(&p->mu);
            while (!new_job(p, seen))
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            return NULL;
        seen = ST_GEN(atomic_load_explicit(&p->state, memory_order_acquire));
        if (!join(p, seen))
            continue; /* closed already: the caller did without us */
        run_tasks(p);
        uint64_t prev = atomic_fetch_sub_explicit(&p->state, 1, memory_order_acq_rel);
        if (!(prev & ST_OPEN) && ST_JOINED(prev) == 1) {
            /* the last one out of a closed job: the caller may be asleep */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

dalle_status tpool_create(int n_threads, tpool **out)
{
    *out = NULL;
    if (n_threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = cores > 0 ? (int)cores : 1;
    }
    if (n_threads > TPOOL_MAX_THREADS)
        n_threads = TPOOL_MAX_THREADS;
    tpool *p = calloc(1, sizeof *p);
    if (!p)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "thread pool: out of memory");
    int ok = pthread_mutex_init(&p->run_lock, NULL) == 0;
    ok = ok && pthread_mutex_init(&p->mu, NULL) == 0;
    ok = ok && pthread_cond_init(&p->wake, NULL) == 0;
    ok = ok && pthread_cond_init(&p->done, NULL) == 0;
    if (!ok) {
        /* only fails for lack of resources; a partly initialised pool is
         * not worth unwinding field by field on a path that never runs */
        free(p);
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "thread pool: cannot create its locks");
    }
    atomic_init(&p->next, 0);
    atomic_init(&p->state, 0);
    atomic_init(&p->stop, 0);
    /* a worker that cannot start is left out: the pool only gets slower */
    for (int i = 0; i < n_threads - 1; i++) {
        if (pthread_create(&p->th[p->n_workers], NULL, worker, p) != 0)
            break;
        p->n_workers++;
    }
    *out = p;
    return DALLE_OK;
}

void tpool_free(tpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->th[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_lock);
    free(p);
}

int tpool_threads(const tpool *p)
{
    return p ? p->n_workers + 1 : 1;
}

void tpool_run(tpool *p, int64_t n_tasks, tpool_task fn, void *arg)
{
    if (n_tasks <= 0)
        return;
    if (!p || p->n_workers == 0 || n_tasks == 1 || in_pool) {
        for (int64_t t = 0; t < n_tasks; t++)
            fn(arg, t);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->gen++;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->state, ((uint64_t)p->gen << 32) | ST_OPEN, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    in_pool = 1;
    run_tasks(p);
    in_pool = 0;

    /* no task left to take: close the job, then wait for the workers that
     * joined it (each is finishing a task it took) */
    atomic_fetch_and_explicit(&p->state, ~ST_OPEN, memory_order_acq_rel);
    if (!spin_until(all_out, p, 0)) {
        pthread_mutex_lock(&p->mu);
        while (!all_out(p, 0))
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->run_lock);
}

/* tpool_for as a job: task t covers items [n·t/T, n·(t+1)/T). */
typedef struct range_job {
    tpool_range fn;
    void *arg;
    int64_t n, tasks;
} range_job;

static void range_task(void *vp, int64_t t)
{
    const range_job *j = vp;
    j->fn(j->arg, j->n * t / j->tasks, j->n * (t + 1) / j->tasks);
}

void tpool_for(tpool *p, int64_t n, int64_t min_items, tpool_range fn, void *arg)
{
    if (n <= 0)
        return;
    int64_t tasks = 4 * (int64_t)tpool_threads(p); /* a few per thread: balance */
    if (min_items < 1)
        min_items = 1;
    if (tasks > n / min_items)
        tasks = n / min_items;
    if (tasks <= 1) {
        fn(arg, 0, n);
        return;
    }
    range_job j = {fn, arg, n, tasks};
    tpool_run(p, tasks, range_task, &j);
}
