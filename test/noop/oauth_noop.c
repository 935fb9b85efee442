/*-------------------------------------------------------------------------
 *
 * oauth_noop.c
 *	  The floor: an OAuth validator that accepts every token without looking
 *	  at it, with authn_id equal to the requested role.  Benchmarks compare
 *	  oauth_jwt's connection cost against it.  Test use only; never install.
 *
 * Copyright (c) 2026, oauth_jwt developers
 *
 * test/noop/oauth_noop.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "libpq/oauth.h"

PG_MODULE_MAGIC_EXT(.name = "oauth_noop",.version = "0");

static bool
noop_validate(const ValidatorModuleState *state, const char *token,
			  const char *role, ValidatorModuleResult *res)
{
	res->authorized = true;
	res->authn_id = pstrdup(role);
	return true;
}

static const OAuthValidatorCallbacks noop_callbacks = {
	.magic = PG_OAUTH_VALIDATOR_MAGIC,
	.validate_cb = noop_validate,
};

const OAuthValidatorCallbacks *
_PG_oauth_validator_module_init(void)
{
	return &noop_callbacks;
}
