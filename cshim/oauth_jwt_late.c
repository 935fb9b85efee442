/*-------------------------------------------------------------------------
 *
 * oauth_jwt_late.c
 *	  A constructor that runs right after the Go runtime's.
 *
 * The linker runs the constructors of a library without a priority in link
 * order.  This object is linked after the Go archive (Makefile: SHLIB_LINK),
 * so its constructor runs right after the runtime's, which has by then
 * created the runtime's first thread.  It gives the loading thread back the
 * signal mask that the priority-101 constructor in oauth_jwt_start.c
 * blocked, also when the server then refuses the library before _PG_init
 * (a build for another major loaded by mistake).
 *
 * Copyright (c) 2026, oauth_jwt developers
 *
 * cshim/oauth_jwt_late.c
 *
 *-------------------------------------------------------------------------
 */
#include "oauth_jwt_start.h"

__attribute__((constructor))
static void
ojw_after_go_runtime_start(void)
{
	ojw_restore_load_mask();
}
