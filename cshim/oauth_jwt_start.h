/*-------------------------------------------------------------------------
 *
 * oauth_jwt_start.h
 *	  How the Go runtime starts inside a backend (cshim/oauth_jwt_start.c).
 *
 * Copyright (c) 2026, oauth_jwt developers
 *
 * cshim/oauth_jwt_start.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OAUTH_JWT_START_H
#define OAUTH_JWT_START_H

#include <signal.h>
#include <sys/types.h>

/* Process that loaded the library and so started the Go runtime. */
extern pid_t ojw_runtime_pid;

/* Every signal except the synchronous ones. */
extern void ojw_async_signals(sigset_t *set);

/* The loading thread's signal mask back (after Go's constructor). */
extern void ojw_restore_load_mask(void);

/* The runtime's threads get the loading thread's CPUs back (after a Go call). */
extern void ojw_widen_go_threads(void);

#endif							/* OAUTH_JWT_START_H */
