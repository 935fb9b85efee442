package validator

import "context"

// Request is one login attempt as PostgreSQL hands it to the module.
type Request struct {
	// Token is the bearer token. It MUST NOT appear in any log record,
	// error text or reason detail, in whole or in part.
	Token string
	// Issuer is the pg_hba.conf "issuer" option of the matching oauth line,
	// byte for byte.
	Issuer string
	// Scope is the pg_hba.conf "scope" option (space separated, may be empty).
	Scope string
	// Role is the PostgreSQL role the client asked to log in as.
	Role string
	// Delegate is true when the pg_hba line has delegate_ident_mapping=1:
	// the module alone decides whether the token may log in as Role.
	Delegate bool
	// CacheOnly forbids the network: when the keys cannot be served from
	// the cache as they are, Validate returns an error matching
	// keycache.ErrNeedsNetwork (and no verdict), and the caller validates
	// again without CacheOnly where it can wait interruptibly.
	CacheOnly bool
	// RolePrivileges are the privileged attributes of Role (SUPERUSER,
	// BYPASSRLS, CREATEROLE, directly or through membership) as the server
	// knows them at the moment of the decision; the module's shim reads
	// them from pg_authid for every delegated login. In delegated mode a
	// token grants a role with any of them only when the issuer's policy
	// has AllowPrivilegedRoles. nil means unknown: that check is skipped,
	// so a caller that grants roles MUST set it (an empty list for a plain
	// role).
	RolePrivileges *RolePrivileges
}

// Level is the severity of a LogRecord; the shim maps it onto elog levels.
type Level int

// Log levels understood by the C shim.
const (
	LevelDebug   Level = iota // DEBUG1
	LevelLog                  // LOG
	LevelWarning              // WARNING
)

// LogRecord is one line the shim writes to the server log with ereport.
// Message is a lowercase fragment without a trailing period (errmsg);
// Detail is full sentences (errdetail_log). Neither may contain the token.
type LogRecord struct {
	Level   Level
	Message string
	Detail  string
}

// Result is the verdict on one Request.
type Result struct {
	// Authorized is true only when every check passed.
	Authorized bool
	// AuthnID is the authenticated identity (from the configured claim),
	// set whenever it is known, also on rejection, for the audit log.
	AuthnID string
	// Reason is the stable reason code; ReasonOK when Authorized.
	Reason Reason
	// Logs are the records the shim writes to the server log, in order.
	Logs []LogRecord
}

// Validator checks tokens. Implementations are safe for concurrent use.
type Validator interface {
	// Validate judges req. A non-nil error means the module itself failed
	// (configuration error, internal fault): the server then logs an
	// internal error and refuses the login. A rejected token is a nil
	// error with Result.Authorized == false.
	Validate(ctx context.Context, req Request) (Result, error)
}

// Settings are the oauth_jwt.* configuration parameters exactly as the
// server holds them, keyed by name without the "oauth_jwt." prefix
// (for example "audience"). The shim also passes a few server facts under
// names starting with "server.": "server.data_directory" and
// "server.authentication_timeout" (seconds).
type Settings map[string]string
