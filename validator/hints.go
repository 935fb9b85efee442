package validator

import "sync"

// hintIDToken is the fix of an id_token rejection. The rejection detail in
// the server log ends with it, and Hint returns it: one text for both.
const hintIDToken = "Configure the client to send an access token, or set \"oauth_jwt.accept_id_tokens\" to on."

// hints is the one table of what to do about each reason code. The server
// log and oauth_jwt_check print the same texts. Built on first use: a map
// variable would be built at package initialisation, in every backend.
var hints = sync.OnceValue(func() map[Reason]string {
	return map[Reason]string{
		ReasonMalformed: "The client must send the access token itself: a signed JWT of three base64url segments. " +
			"Opaque access tokens (Google; Auth0 without an API audience), encrypted tokens (JWE) and tokens with " +
			"white space or padding are refused.",
		ReasonTokenTooLarge: "Make the identity provider put less in access tokens (long group lists, the roles of " +
			"every client); tokens are limited to 32 KiB.",
		ReasonAlgNotAllowed: "Configure the identity provider to sign access tokens with an algorithm listed in " +
			"\"oauth_jwt.allowed_algorithms\", or add its algorithm there; \"none\" and HS* (shared secrets) can " +
			"never be allowed.",
		ReasonCritHeader: "No JWS extension is supported: configure the identity provider not to mark header " +
			"parameters as critical.",
		ReasonUntrustedKeyHeader: "Keys come only from the issuer's key set: configure the identity provider not to " +
			"put keys or key locations (jku, x5u, jwk, x5c) in token headers. A token that carries its own key is " +
			"often forged.",
		ReasonWrongTokenType: "The client sent a token that is not an access token (a refresh, logout or other " +
			"token): configure it to send the access token.",
		ReasonIDToken: hintIDToken,
		ReasonInvalidClaim: "A registered claim has the wrong JSON type, or exp, nbf or iat is not a time from " +
			"1970 to 9999: the identity provider (or a custom mapper) makes tokens that do not follow RFC 7519, " +
			"or the token is forged.",
		ReasonIssMismatch: "Copy the issuer exactly, byte for byte and trailing slash included, from the " +
			"provider's discovery document into the pg_hba.conf issuer option and libpq's oauth_issuer " +
			"(oauth_jwt_check issuer URL shows it).",
		ReasonAudMismatch: "Make the provider put your audience in access tokens (Keycloak: an audience mapper; " +
			"Entra ID, Auth0: expose an API and request its scope), or set \"oauth_jwt.audience\" to the aud the " +
			"tokens carry.",
		ReasonMissingExp: "Configure the identity provider to give access tokens an expiry time (exp); tokens " +
			"that never expire are refused.",
		ReasonExpired: "Get a new token (psql gets one at each login). If it was fresh, compare the clocks of " +
			"the server and the identity provider (NTP); \"oauth_jwt.leeway\" tolerates up to 300 s of skew.",
		ReasonNotYetValid: "The server's clock is behind the identity provider's: synchronise them (NTP); " +
			"\"oauth_jwt.leeway\" tolerates up to 300 s of skew.",
		ReasonIatInFuture: "The server's clock is behind the identity provider's: synchronise them (NTP); " +
			"\"oauth_jwt.leeway\" tolerates up to 300 s of skew.",
		ReasonLifetimeTooLong: "Make the identity provider issue shorter-lived access tokens, or raise " +
			"\"oauth_jwt.max_token_lifetime\" (for this issuer in \"oauth_jwt.issuer_config\"); a token that " +
			"stays valid longer cannot be revoked by an offline check.",
		ReasonAzpNotAllowed: "Add the client id to \"oauth_jwt.allowed_client_ids\", or make the program use an " +
			"allowed client (libpq's oauth_client_id).",
		ReasonMissingScope: "Let the provider grant the scope the detail names to this client (psql requests the " +
			"pg_hba.conf scope option), or change that option or \"oauth_jwt.required_scopes\". For a provider " +
			"that puts no scopes in tokens (Dex), set \"oauth_jwt.enforce_hba_scope\" to off for its issuer.",
		ReasonKeysUnavailable: "The server cannot get the issuer's keys: check the network from the server host, " +
			"\"oauth_jwt.ca_file\", \"oauth_jwt.http_proxy\" and \"oauth_jwt.http_timeout\"; the WARNING lines " +
			"before the rejection say what failed. Run oauth_jwt_check issuer URL on the server host.",
		ReasonDiscoveryIssuerMismatch: "The pg_hba.conf issuer must equal the \"issuer\" of the provider's " +
			"discovery document byte for byte (often a trailing slash differs); with \"oauth_jwt.discovery_url\" " +
			"set, that document must still name this issuer.",
		ReasonUnknownKID: "The token was signed with a key the issuer does not publish (any more): after a key " +
			"rotation, wait \"oauth_jwt.kid_refetch_interval\"; otherwise check that the token comes from this " +
			"issuer and that its jwks_uri (or \"oauth_jwt.jwks_uri\") is the right key set.",
		ReasonKIDNotSigningKey: "The token names a key that is not for signatures (such as the use \"enc\" key): " +
			"the provider's key configuration is wrong, or the token is forged.",
		ReasonKeyAlgMismatch: "The key named by kid is published for another algorithm than the header's alg: " +
			"the provider's key configuration is wrong, or the token is forged.",
		ReasonKeyTypeMismatch: "The key named by kid cannot make signatures of the header's alg (another key type " +
			"or curve, or a key that cannot be decoded): check the provider's key configuration.",
		ReasonWeakKey: "Replace the provider's signing key with an RSA key of at least 2048 bits or an EC key.",
		ReasonBadSignature: "The signature does not match the issuer's key: the token was altered or forged, or " +
			"another provider signed it under the same kid. Get a fresh token from the issuer named in pg_hba.conf.",
		ReasonNoIdentity: "Set \"oauth_jwt.authn_id_claim\" to a claim every access token carries (sub, or " +
			"preferred_username or email through a mapper), or make the provider add it.",
		ReasonInvalidIdentity: "The identity claim holds a control or bidirectional formatting character: set " +
			"\"oauth_jwt.authn_id_claim\" to a claim users cannot edit (sub), or fix the value at the provider.",
		ReasonRoleNotAllowed: "Map a value of the token's \"oauth_jwt.role_claim\" to the role in " +
			"\"oauth_jwt.role_map\", or its client in \"oauth_jwt.client_role_map\"; or log in as a role the " +
			"token grants.",
		ReasonPrivilegedRole: "Map the token to a role that has the privileges it needs through GRANTs, without " +
			"SUPERUSER, BYPASSRLS or CREATEROLE and without membership in a role that has them; for administrators, " +
			"a pg_hba.conf line with map= (pg_ident.conf names exactly who may use the role); or, if the claims of " +
			"this issuer are under your control alone, set \"oauth_jwt.allow_privileged_roles\" to on for it.",
		ReasonTokenInactive: "The identity provider no longer vouches for the token (revoked, logged out, user " +
			"disabled, or expired there): get a new token. If the provider answers \"active\" as a string or not " +
			"at all, it does not follow RFC 7662.",
		ReasonIntrospectionFailed: "The introspection endpoint gave no usable answer: check the network from the " +
			"server host, \"oauth_jwt.introspection_endpoint\" (or the discovery document's), the client id and " +
			"secret file (a 401 means the provider refused them) and \"oauth_jwt.http_timeout\". Logins fail " +
			"closed until it answers.",
		ReasonConfig: "Fix the setting the message names (in postgresql.conf or the issuer_config file) and " +
			"reload; every login fails until then.",
		ReasonAudNotConfigured: "Set \"oauth_jwt.audience\" globally, or in this issuer's section of the " +
			"\"oauth_jwt.issuer_config\" file.",
		ReasonInsecureCache: "The key cache directory must be owned by the server's OS user and writable by no " +
			"one else: fix its owner and mode (chmod 700), or set \"oauth_jwt.cache_dir\" to such a directory.",
		ReasonInternal: "A fault in the module itself: report it, with the server log lines around it.",
	}
})

// reasonOrder lists every reason code: rejections in the order of the
// checks, then the internal failures.
var reasonOrder = []Reason{
	ReasonMalformed, ReasonTokenTooLarge, ReasonAlgNotAllowed, ReasonCritHeader,
	ReasonUntrustedKeyHeader, ReasonWrongTokenType, ReasonIDToken, ReasonInvalidClaim,
	ReasonIssMismatch, ReasonAudMismatch, ReasonMissingExp, ReasonExpired,
	ReasonNotYetValid, ReasonIatInFuture, ReasonLifetimeTooLong, ReasonAzpNotAllowed, ReasonMissingScope,
	ReasonKeysUnavailable, ReasonDiscoveryIssuerMismatch, ReasonUnknownKID,
	ReasonKIDNotSigningKey, ReasonKeyAlgMismatch, ReasonKeyTypeMismatch, ReasonWeakKey,
	ReasonBadSignature, ReasonNoIdentity, ReasonInvalidIdentity, ReasonRoleNotAllowed,
	ReasonPrivilegedRole, ReasonTokenInactive, ReasonIntrospectionFailed,
	ReasonAudNotConfigured, ReasonConfig, ReasonInsecureCache, ReasonInternal,
}

// Reasons returns every reason code except ReasonOK: the rejections in the
// order of the checks, then the internal failures.
func Reasons() []Reason { return append([]Reason(nil), reasonOrder...) }

// Hint returns what to do about a reason code, as one or two sentences;
// "" for ReasonOK and unknown codes.
func Hint(r Reason) string { return hints()[r] }

// IsInternal reports whether r is the reason of a failure of the module
// itself (Validate returns an error) rather than of a rejected token.
func IsInternal(r Reason) bool {
	switch r {
	case ReasonAudNotConfigured, ReasonConfig, ReasonInsecureCache, ReasonInternal:
		return true
	}
	return false
}
