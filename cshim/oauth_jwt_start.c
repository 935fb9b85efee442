/*-------------------------------------------------------------------------
 *
 * oauth_jwt_start.c
 *	  How the Go runtime starts inside a backend: its signal mask, its CPUs,
 *	  its malloc arenas and the main thread's stack bounds.
 *
 * Everything here runs before or around the Go runtime's own start, from
 * constructors and from two wrappers the link puts around the runtime's
 * calls into glibc (Makefile: -Wl,--wrap=pthread_create and
 * -Wl,--wrap=pthread_getattr_np; they only bind references inside this
 * library, and the version script exports neither).  No PostgreSQL call is
 * made here: some of it runs before the server has checked the library's
 * magic block.
 *
 * What is done here, the first an invariant, the others kept because paired
 * runs showed them in latency, page faults or memory (docs/benchmarks.md,
 * "Paired runs"):
 *	- all asynchronous signals blocked while the runtime starts, so its
 *	  threads inherit a blocked mask (DESIGN.md section 3, invariant 2);
 *	- the runtime's threads start on one CPU, so that the runtime sizes
 *	  itself (GOMAXPROCS, per-P caches, spinning threads) for one CPU, and
 *	  get the loading thread's CPUs back once the runtime is up; the
 *	  backend's own thread is never narrowed;
 *	- one malloc arena for the whole process, so that a Go thread's first
 *	  C allocation does not map (and trim) an arena of its own;
 *	- the main thread's stack bounds from the process's stack end and
 *	  RLIMIT_STACK, instead of glibc's read of /proc/self/maps.
 *
 * Copyright (c) 2026, oauth_jwt developers
 *
 * cshim/oauth_jwt_start.c
 *
 *-------------------------------------------------------------------------
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "oauth_jwt_start.h"

/* Process that loaded the library and so started the Go runtime. */
pid_t		ojw_runtime_pid = 0;

/* The loading thread's mask, saved by the constructor, restored after Go's. */
static sigset_t ojw_load_mask;
static bool ojw_load_mask_saved = false;

/*
 * CPUs.  The loading thread's affinity is what every thread gets back.
 * While ojw_cpu_state is OJW_CPU_NARROWING, each thread the runtime creates
 * moves itself to ojw_start_cpu first thing and records its thread id; the
 * first return from Go (ojw_widen_go_threads) gives the recorded threads
 * the loading thread's CPUs back.  A thread that starts after that, or
 * finds the table full, takes those CPUs itself: its creator may still have
 * been narrowed when it was created.
 */
typedef enum
{
	OJW_CPU_UNTOUCHED,			/* never narrowed: nothing to undo */
	OJW_CPU_NARROWING,			/* runtime starting on one CPU */
	OJW_CPU_WIDENED				/* runtime up, every thread widened */
} OjwCpuState;

#define OJW_MAX_NARROWED 64

static pthread_mutex_t ojw_cpu_lock = PTHREAD_MUTEX_INITIALIZER;
static OjwCpuState ojw_cpu_state = OJW_CPU_UNTOUCHED;
static cpu_set_t ojw_load_affinity;
static cpu_set_t ojw_start_cpu;
static pid_t ojw_narrowed[OJW_MAX_NARROWED];
static int	ojw_nnarrowed = 0;

/* Every signal except the synchronous ones, which must stay deliverable. */
void
ojw_async_signals(sigset_t *set)
{
	sigfillset(set);
	sigdelset(set, SIGSEGV);
	sigdelset(set, SIGBUS);
	sigdelset(set, SIGFPE);
	sigdelset(set, SIGILL);
	sigdelset(set, SIGTRAP);
	sigdelset(set, SIGSYS);
}

static pid_t
ojw_gettid(void)
{
	return (pid_t) syscall(SYS_gettid);
}

/*
 * Runs at dlopen before the Go runtime's constructor (default priority).
 * Built with async preemption off, the runtime then leaves SIGURG blocked on
 * the threads it creates with the mask they inherit.
 */
__attribute__((constructor(101)))
static void
ojw_block_before_go(void)
{
	sigset_t	async;
	int			cpu;

	ojw_async_signals(&async);
	if (pthread_sigmask(SIG_BLOCK, &async, &ojw_load_mask) == 0)
		ojw_load_mask_saved = true;
	ojw_runtime_pid = getpid();

	/*
	 * A backend allocates from its main thread only; the runtime's threads
	 * allocate a few bytes now and then (thread start arguments).  One arena
	 * serves both.
	 */
	(void) mallopt(M_ARENA_MAX, 1);

	cpu = sched_getcpu();
	if (cpu >= 0 && sched_getaffinity(0, sizeof(ojw_load_affinity), &ojw_load_affinity) == 0 &&
		CPU_COUNT(&ojw_load_affinity) > 1)
	{
		CPU_ZERO(&ojw_start_cpu);
		CPU_SET(cpu, &ojw_start_cpu);
		ojw_cpu_state = OJW_CPU_NARROWING;
	}
}

/*
 * Give the loading thread its signal mask back.  Runs from the constructor
 * in cshim/oauth_jwt_late.c, which is linked after the Go archive and so
 * runs right after the Go runtime's constructor: by then the runtime's first
 * thread exists with the blocked mask, and its later threads are started
 * from it.  Running from a constructor, this also happens when the server
 * refuses the library before _PG_init (magic block of another major): that
 * backend must stay cancellable.  _PG_init calls it again, which does
 * nothing then.
 */
void
ojw_restore_load_mask(void)
{
	if (ojw_load_mask_saved)
	{
		pthread_sigmask(SIG_SETMASK, &ojw_load_mask, NULL);
		ojw_load_mask_saved = false;
	}
}

/* First thing in every thread the runtime creates: see ojw_cpu_state. */
static void
ojw_place_new_thread(void)
{
	pthread_mutex_lock(&ojw_cpu_lock);
	if (ojw_cpu_state == OJW_CPU_NARROWING && ojw_nnarrowed < OJW_MAX_NARROWED &&
		sched_setaffinity(0, sizeof(ojw_start_cpu), &ojw_start_cpu) == 0)
		ojw_narrowed[ojw_nnarrowed++] = ojw_gettid();
	else if (ojw_cpu_state != OJW_CPU_UNTOUCHED)
		(void) sched_setaffinity(0, sizeof(ojw_load_affinity), &ojw_load_affinity);
	pthread_mutex_unlock(&ojw_cpu_lock);
}

/*
 * Give every thread narrowed at its start the loading thread's CPUs back.
 * Called after each return from Go; does something after the first only.
 * A recorded thread that has exited is skipped (tgkill with signal 0 says
 * whether the id still belongs to this process).
 */
void
ojw_widen_go_threads(void)
{
	pid_t		pid;
	int			i;

	if (ojw_cpu_state != OJW_CPU_NARROWING)
		return;
	pid = getpid();
	pthread_mutex_lock(&ojw_cpu_lock);
	ojw_cpu_state = OJW_CPU_WIDENED;
	for (i = 0; i < ojw_nnarrowed; i++)
		if (syscall(SYS_tgkill, pid, ojw_narrowed[i], 0) == 0)
			(void) sched_setaffinity(ojw_narrowed[i], sizeof(ojw_load_affinity), &ojw_load_affinity);
	ojw_nnarrowed = 0;
	pthread_mutex_unlock(&ojw_cpu_lock);
}

/* ----------------------------------------------------------------
 * Wrappers around the Go runtime's calls into glibc (--wrap)
 * ----------------------------------------------------------------
 */
extern int	__real_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
								  void *(*start) (void *), void *arg);
extern int	__real_pthread_getattr_np(pthread_t thread, pthread_attr_t *attr);
extern int	__wrap_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
								  void *(*start) (void *), void *arg);
extern int	__wrap_pthread_getattr_np(pthread_t thread, pthread_attr_t *attr);

typedef struct
{
	void	   *(*start) (void *);
	void	   *arg;
} GoThreadStart;

static void *
ojw_thread_start(void *p)
{
	GoThreadStart ts = *(GoThreadStart *) p;

	free(p);
	ojw_place_new_thread();
	return ts.start(ts.arg);
}

/*
 * The Go runtime creates its threads here (runtime/cgo).  Only when the
 * runtime's CPUs were narrowed at load is the start routine wrapped.
 */
int
__wrap_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
					  void *(*start) (void *), void *arg)
{
	GoThreadStart *ts;
	int			rc;

	if (ojw_cpu_state == OJW_CPU_UNTOUCHED || (ts = malloc(sizeof(*ts))) == NULL)
		return __real_pthread_create(thread, attr, start, arg);
	ts->start = start;
	ts->arg = arg;
	rc = __real_pthread_create(thread, attr, ojw_thread_start, ts);
	if (rc != 0)
		free(ts);
	return rc;
}

/*
 * The Go runtime asks for the bounds of a thread's stack when that thread
 * first calls into Go (runtime/cgo x_cgo_getstackbound).  For the process's
 * main thread glibc answers by reading /proc/self/maps, ~50 us on the first
 * login's critical path.  The answer for the main thread does not need the
 * file: its stack ends just above __libc_stack_end and may grow down to
 * RLIMIT_STACK (glibc's own default when unlimited).  The runtime only uses
 * bounds that contain the caller's stack pointer, and only to guard its own
 * system stack; any other thread gets glibc's answer.
 */
extern void *__libc_stack_end;

#define OJW_UNLIMITED_STACK (32 * 1024 * 1024)	/* glibc's ARCH_STACK_DEFAULT_SIZE */

int
__wrap_pthread_getattr_np(pthread_t thread, pthread_attr_t *attr)
{
	static uintptr_t lo = 0,
				hi = 0;

	if (!pthread_equal(thread, pthread_self()) || getpid() != ojw_gettid())
		return __real_pthread_getattr_np(thread, attr);
	if (hi == 0)
	{
		struct rlimit rl;
		uintptr_t	page = (uintptr_t) sysconf(_SC_PAGESIZE);
		uintptr_t	size = OJW_UNLIMITED_STACK;
		uintptr_t	end = ((uintptr_t) __libc_stack_end + page - 1) & ~(page - 1);

		if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
			rl.rlim_cur >= page && rl.rlim_cur < end)
			size = rl.rlim_cur & ~(page - 1);
		if (size >= end)
			return __real_pthread_getattr_np(thread, attr);
		lo = end - size;
		hi = end;
	}
	/* Like glibc's (2.32 and later), start from a fresh attribute. */
	pthread_attr_init(attr);
	return pthread_attr_setstack(attr, (void *) lo, hi - lo);
}
