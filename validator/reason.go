package validator

// Reason is a stable reason code. It is printed in the server log
// ("reason=expired") and by oauth_jwt_check; never rename one.
type Reason string

// ReasonOK is the reason of an accepted token.
const ReasonOK Reason = "ok"

// ReasonInternal marks a failure of the module itself (not of the token).
const ReasonInternal Reason = "internal_error"
