package validator

// Reason codes of rejected tokens. Each names the first check that failed;
// the checks run in the order listed here (parse, header, token type,
// claims, keys and signature, identity, role). The package documentation
// explains each one and what to do about it.
const (
	// ReasonMalformed: not a compact JWS (three base64url segments of
	// UTF-8 JSON objects), a JWE, nested too deep, duplicate member names,
	// a header member of the wrong type, or a nested JWT (cty "JWT").
	ReasonMalformed Reason = "malformed"
	// ReasonTokenTooLarge: the token is longer than MaxTokenBytes.
	ReasonTokenTooLarge Reason = "token_too_large"
	// ReasonAlgNotAllowed: the header alg is not in allowed_algorithms
	// ("none" and HS* never are).
	ReasonAlgNotAllowed Reason = "alg_not_allowed"
	// ReasonCritHeader: the header has a "crit" member; no JWS extension is
	// supported, so RFC 7515 section 4.1.11 requires rejection (also an
	// unsupported "b64" member).
	ReasonCritHeader Reason = "crit_header"
	// ReasonUntrustedKeyHeader: the header carries or points at a key
	// (jku, x5u, jwk, x5c). Such keys are chosen by whoever made the token;
	// they are never followed, and a token with them is refused.
	ReasonUntrustedKeyHeader Reason = "untrusted_key_header"
	// ReasonWrongTokenType: header typ (or Keycloak's typ claim) names a
	// type other than an access token (for example a refresh or logout
	// token, or an unknown media type).
	ReasonWrongTokenType Reason = "wrong_token_type"
	// ReasonIDToken: an OpenID Connect ID token, while accept_id_tokens is off.
	ReasonIDToken Reason = "id_token"
	// ReasonInvalidClaim: a registered claim has the wrong JSON type (iss not
	// a string, exp not a number, aud neither string nor array of strings...),
	// or exp, nbf or iat is a time out of range (negative, or in the year
	// 10000 or later).
	ReasonInvalidClaim Reason = "invalid_claim"
	// ReasonIssMismatch: iss is absent or differs from the pg_hba issuer.
	ReasonIssMismatch Reason = "iss_mismatch"
	// ReasonAudMismatch: aud is absent, empty, or holds no configured audience.
	ReasonAudMismatch Reason = "aud_mismatch"
	// ReasonMissingExp: the token has no exp; tokens that never expire are
	// refused.
	ReasonMissingExp Reason = "missing_exp"
	// ReasonExpired: exp is in the past by more than the leeway.
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: nbf is in the future by more than the leeway.
	ReasonNotYetValid Reason = "not_yet_valid"
	// ReasonIatInFuture: iat is in the future by more than the leeway.
	ReasonIatInFuture Reason = "iat_in_future"
	// ReasonLifetimeTooLong: the token is valid for longer than
	// max_token_lifetime: exp - iat, or exp - now (plus the leeway) when it
	// has no iat.
	ReasonLifetimeTooLong Reason = "lifetime_too_long"
	// ReasonAzpNotAllowed: allowed_client_ids is set and the token's client
	// (azp, else client_id, else appid) is absent or not in it.
	ReasonAzpNotAllowed Reason = "azp_not_allowed"
	// ReasonMissingScope: a scope of the pg_hba.conf scope option (unless
	// enforce_hba_scope is off; OpenID Connect request scopes excepted) or
	// of required_scopes is granted by neither scope nor scp.
	ReasonMissingScope Reason = "missing_scope"
	// ReasonKeysUnavailable: the issuer's keys could not be obtained (the
	// identity provider is down or answered badly or too much, and no
	// usable cached keys exist).
	ReasonKeysUnavailable Reason = "keys_unavailable"
	// ReasonDiscoveryIssuerMismatch: the discovery document names another
	// issuer than the pg_hba line (often a trailing slash).
	ReasonDiscoveryIssuerMismatch Reason = "discovery_issuer_mismatch"
	// ReasonUnknownKID: no key of the issuer has the token's kid, even after
	// a refetch; or the token has no kid and the key set does not hold
	// exactly one signing key usable with its alg.
	ReasonUnknownKID Reason = "unknown_kid"
	// ReasonKIDNotSigningKey: the kid names a key that is not for signatures
	// (use other than "sig", or key_ops without "verify").
	ReasonKIDNotSigningKey Reason = "kid_not_signing_key"
	// ReasonKeyAlgMismatch: the kid names a key whose alg member differs
	// from the header alg.
	ReasonKeyAlgMismatch Reason = "key_alg_mismatch"
	// ReasonKeyTypeMismatch: the kid names a key of a type (or curve) that
	// cannot make the header alg's signatures, or that cannot be used.
	ReasonKeyTypeMismatch Reason = "key_type_mismatch"
	// ReasonWeakKey: the selected key is an RSA key shorter than 2048 bits.
	ReasonWeakKey Reason = "weak_key"
	// ReasonBadSignature: the signature does not verify with the selected key.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonNoIdentity: the authn_id_claim is absent, empty, not a string or
	// number, or contains a NUL character.
	ReasonNoIdentity Reason = "no_identity"
	// ReasonInvalidIdentity: the authn_id_claim value contains a character
	// that would break or disguise the server's log lines: a control
	// character (C0, DEL, C1), U+2028, U+2029, or a bidirectional
	// embedding, override or isolate (U+202A to U+202E, U+2066 to U+2069).
	ReasonInvalidIdentity Reason = "invalid_identity"
	// ReasonRoleNotAllowed: in delegated mode (delegate_ident_mapping=1),
	// nothing in the token grants the requested role.
	ReasonRoleNotAllowed Reason = "role_not_allowed"
	// ReasonPrivilegedRole: in delegated mode, the token grants the
	// requested role, but that role has SUPERUSER, BYPASSRLS or CREATEROLE
	// or is a member of a role that has one, and allow_privileged_roles is
	// off. The detail names the attribute and the role holding it.
	ReasonPrivilegedRole Reason = "privileged_role"
	// ReasonTokenInactive: the issuer's introspection endpoint (RFC 7662)
	// did not report the token active: "active" is false (revoked, expired,
	// session logged out, user disabled), absent, or not the JSON boolean
	// true.
	ReasonTokenInactive Reason = "token_inactive"
	// ReasonIntrospectionFailed: introspection was required but gave no
	// answer: the endpoint was unreachable or too slow, answered another
	// status than 200 (wrong client credentials among them), too much, or
	// not a JSON object, or the client secret file cannot be used.
	// Introspection fails closed; stale answers are never used.
	ReasonIntrospectionFailed Reason = "introspection_failed"
)

// Reason codes of internal failures: Validate returns a non-nil error with
// these, and the server logs an internal error in the validator module.
const (
	// ReasonAudNotConfigured: no audience is configured for the issuer.
	ReasonAudNotConfigured Reason = "aud_not_configured"
	// ReasonConfig: a setting is invalid (ConfigError), or the key cache
	// refused a configured URL as insecure.
	ReasonConfig Reason = "config_error"
	// ReasonInsecureCache: the key cache directory or a file in it could be
	// written by someone other than the server's OS user; it is not used.
	ReasonInsecureCache Reason = "insecure_cache"
)

// Error returns the code itself, so that a Reason can be the target of
// errors.Is (errors.Is(res.Err(), validator.ReasonExpired)).
func (r Reason) Error() string { return string(r) }

// RejectionError is a rejected token as an error: see Result.Err.
type RejectionError struct {
	// Reason is the stable reason code.
	Reason Reason
	// Detail is the explanation logged with it.
	Detail string
}

func (e *RejectionError) Error() string { return "bearer token rejected: " + string(e.Reason) }

// Unwrap returns the reason, so errors.Is(err, ReasonExpired) works.
func (e *RejectionError) Unwrap() error { return e.Reason }

// Err returns nil when r is authorized, else a *RejectionError carrying
// the reason and the detail of the rejection record.
func (r Result) Err() error {
	if r.Authorized {
		return nil
	}
	e := &RejectionError{Reason: r.Reason}
	for _, l := range r.Logs {
		if l.Message == msgRejected {
			e.Detail = l.Detail
		}
	}
	return e
}
