/*-------------------------------------------------------------------------
 *
 * protocol.h
 *	  The structures the C shim and the Go export layer exchange.
 *
 * One definition, included by validator/capi's cgo preamble (and so by the
 * generated libojw.h that cshim/oauth_jwt.c includes) and by the Go floor
 * used in benchmarks (test/gonoop), so their layouts cannot drift apart.
 * Strings are allocated by Go with C malloc and released by OjwFreeResult.
 *
 * Copyright (c) 2026, oauth_jwt developers
 *
 * validator/capi/protocol.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OJW_PROTOCOL_H
#define OJW_PROTOCOL_H

/* Severity of an OjwLog record; the shim maps these to elog levels. */
#define OJW_LEVEL_DEBUG 0
#define OJW_LEVEL_LOG 1
#define OJW_LEVEL_WARNING 2

/* One line for the server log: errmsg and errdetail_log, never the token. */
typedef struct OjwLog
{
	int			level;
	char	   *message;
	char	   *detail;
} OjwLog;

/* The verdict on one token. */
typedef struct OjwResult
{
	int			authorized;
	int			internal_error;
	char	   *authn_id;
	char	   *reason;
	int			nlogs;
	OjwLog	   *logs;
} OjwResult;

#endif							/* OJW_PROTOCOL_H */
