// Package validator decides whether a bearer token presented to
// PostgreSQL 18 through SASL OAUTHBEARER may log in. It is the whole
// token policy of the oauth_jwt validator module; the C shim and the cgo
// layer (validator/capi) only carry requests and verdicts, and nothing
// here knows it runs inside PostgreSQL.
//
// It follows RFC 7519 (JSON Web Token), RFC 8725 (JWT Best Current
// Practices), RFC 9068 (JWT profile for OAuth 2.0 access tokens), RFC 7515
// and RFC 7517 (JWS and JSON Web Key), and RFC 8414 / OpenID Connect
// Discovery 1.0 for finding an issuer's keys (through package keycache).
//
// # Use
//
//	v, err := validator.New(settings)       // settings: oauth_jwt.* without the prefix
//	res, err := v.Validate(ctx, validator.Request{Token: tok, Issuer: hbaIssuer, Scope: hbaScope, Role: role})
//
// A nil error with res.Authorized == false is a rejected token;
// res.Reason says why and res.Logs explain it for the server log. A
// non-nil error means the module itself cannot judge tokens (a
// configuration error, an unsafe key cache, a fault): the server logs an
// internal error and refuses the login.
//
// # Order of checks
//
// Cheap checks run before any key is looked up or any signature is
// verified, so a flood of junk tokens costs no network and no public-key
// operation:
//
//  1. parse: size (at most MaxTokenBytes), exactly three base64url
//     segments (strict: no padding, no white space, canonical encoding),
//     header and payload each one UTF-8 JSON object, nested at most
//     MaxJSONDepth deep, with no duplicate member names at any level
//     (parsers disagree about which duplicate wins);
//  2. header: alg in allowed_algorithms; no "crit" (or "b64"); no
//     "jku", "x5u", "jwk" or "x5c" (keys named by the token are never
//     fetched or trusted); no nested JWT (cty "JWT");
//  3. token type (below), iss, aud, exp/nbf/iat, lifetime, client,
//     scopes (below);
//  4. keys and signature: kid selects the key in the issuer's JWKS;
//  5. identity (authn_id) and, with delegate_ident_mapping=1, the role.
//
// Within each step the first failing rule gives the reason code.
//
// # Keys
//
// The kid header selects the key. A key may verify only if its "use" is
// absent or "sig", its "key_ops" (if present) include "verify", its "alg"
// (if present) equals the header alg, and its type fits the alg (RSA for
// RS*/PS*, EC on P-256/P-384/P-521 for ES256/ES384/ES512, OKP Ed25519 for
// EdDSA). RSA keys shorter than MinRSABits (2048) are refused (weak_key).
// When no key has the token's kid, the key source is asked once more with
// Query.MissingKID (it refetches the JWKS unless a refetch happened less
// than kid_refetch_interval ago, server-wide); if the kid is still
// unknown the token is refused (unknown_kid). A token without kid is
// tried only when the key set holds exactly one key usable with its alg.
// Symmetric algorithms are never accepted, so an "oct" key in a JWKS can
// never verify anything, and a public key can never be abused as an HMAC
// secret (RFC 8725 sections 2.1 and 3.1).
//
// # Token type
//
// Only access tokens may log in. The rules, in order:
//
//   - header typ: absent, "JWT" or "at+jwt" (RFC 9068; also with the
//     "application/" prefix, case-insensitive) are accepted; "id_token"
//     and similar are ID tokens; anything else (logout+jwt, dpop+jwt...)
//     is wrong_token_type;
//   - the "typ" claim, which Keycloak sets: "Bearer" is an access token,
//     "ID" an ID token, anything else ("Refresh", "Logout"...)
//     wrong_token_type;
//   - otherwise, unless header typ is "at+jwt" or the typ claim is
//     "Bearer", a "nonce", "at_hash" or "c_hash" claim marks an OpenID
//     Connect ID token: access tokens never carry them.
//
// ID tokens are refused (id_token) unless accept_id_tokens is on. What
// that means per identity provider:
//
//   - Keycloak: access tokens have typ claim "Bearer", ID tokens "ID";
//     the rule is exact.
//   - Microsoft Entra ID: both kinds have header typ "JWT" and no typ
//     claim; ID tokens carry "nonce" when the client sent one, and their
//     aud is the client's application ID, while an access token for your
//     API has the API's application (client) ID as aud (v2 tokens always;
//     v1 tokens may carry the application ID URI instead). Configure the
//     API as audience and ID tokens fail aud_mismatch even without nonce.
//     Entra v1 tokens name the client in "appid" (v2: "azp"); Okta in "cid".
//     Tokens for Microsoft Graph are v1 tokens (iss
//     "https://sts.windows.net/<tenant>/") and fail iss_mismatch against a
//     v2 issuer.
//   - Okta and Auth0: ID tokens have aud = the client ID (and usually
//     nonce/at_hash); access tokens have aud = the API ("api://default",
//     the Auth0 API identifier). The audience check separates them.
//   - Google: access tokens are opaque, not JWTs, and are refused as
//     malformed. Google ID tokens can be used only with accept_id_tokens
//     on and audience = the OAuth client IDs allowed to log in.
//
// Never list a client ID as an audience unless you mean to accept ID
// tokens issued to that client.
//
// # Times and lifetime
//
// exp is required; exp, nbf and iat must be JSON numbers (fractions
// allowed, RFC 7519 NumericDate) from 0 to before MaxNumericDate (the
// year 10000), else invalid_claim: a negative time or exp 1e30 is a
// broken or forged token. The leeway applies to exp, nbf and iat. A
// validator that checks offline cannot see a revoked token, so its
// lifetime is bounded: exp - iat must not exceed max_token_lifetime
// (default 24 h), and a token without iat must not stay valid for longer
// than max_token_lifetime plus the leeway from now (lifetime_too_long).
//
// # Scopes
//
// The token must grant every scope of the pg_hba.conf line's scope option
// (Request.Scope) except the OpenID Connect request scopes openid, profile,
// email, address, phone and offline_access, which ask for claims and which
// providers do not put in access tokens; and every scope of
// required_scopes (no exception there). A scope is granted when it is a
// whole word of the "scope" claim (space-separated) or of "scp" (a string
// or an array of strings): exact, case-sensitive, never a prefix
// ("pg:connect-admin" does not grant "pg:connect"). enforce_hba_scope off
// (per issuer) drops the pg_hba.conf part for providers that put no
// scopes in tokens (Dex); required_scopes still apply. The rejection
// detail names each missing scope and where it was required.
//
// One renaming is understood, Microsoft Entra ID's: a client requests
// "api://<app>/db.login" and the access token carries "db.login" in scp.
// A URI-shaped scope ("scheme://authority/path/name") is therefore also
// granted by its last path segment alone, but only when the rest names the
// token's own audience: a value of aud that is also a configured audience,
// equal to the rest (v1 tokens, whose aud is the application ID URI) or
// equal to it without "api://" (v2 tokens carry the application's client
// id as aud, and "api://<client id>" is the default application ID URI).
// So a scope granted for another API never counts. A "<URI>/.default"
// scope (Entra's "all permissions granted to the client", never echoed) is
// granted by that audience alone. With a custom application ID URI and v2
// tokens the rest cannot be tied to aud: list the bare scope name in
// required_scopes and turn enforce_hba_scope off for that issuer.
//
// # Identity and trust
//
// authn_id is read from authn_id_claim only after the signature has
// verified: an identity from an unverified token is not trustworthy, so
// Result.AuthnID is empty on every rejection that happens before the
// signature check, and set on rejections after it (no_identity excepted,
// role_not_allowed included) and on acceptance. Log records of early
// rejections do quote iss, sub, azp, aud and exp, marked "signature not
// verified". A string claim is used as is; a number is rendered as its
// JSON text; anything else, an empty string or a string containing NUL is
// no_identity. PostgreSQL writes authn_id unescaped into its own log lines
// ("connection authenticated: identity=...", pg_ident.conf mismatches), so
// an identity holding a control character (C0, DEL, C1), the line
// separators U+2028 or U+2029, or a bidirectional embedding, override or
// isolate (U+202A to U+202E, U+2066 to U+2069, which reorder how the rest
// of the line is displayed) is invalid_identity and never becomes
// authn_id. Names in right-to-left scripts need none of those; the
// bidirectional marks U+200E, U+200F and U+061C are allowed.
//
// Claim paths (authn_id_claim, role_claim) use a safe subset of gjson
// path syntax: keys separated by dots, numeric components indexing arrays,
// and a backslash escaping a literal special character, as in
// "https://example\.com/groups" for the claim named
// "https://example.com/groups". Wildcards, queries, modifiers, pipes and
// multipaths are configuration errors.
//
// # Delegated role mapping
//
// Without delegate_ident_mapping the token is authorized once valid and
// the server maps authn_id through pg_ident.conf (map=...). With
// delegate_ident_mapping=1 the token alone must grant Request.Role, by
// any of:
//
//   - role_claim and role_map: a value of the claim (a string, or an
//     array whose string elements count) maps to the role, as in
//     role_claim = groups, role_map = "dba=dba_admin, analysts=reader";
//   - client_role_map: the client (azp, else client_id, else appid, else cid) maps
//     to the role, for machine tokens without groups: "etl=loader";
//   - role_from_identity on: authn_id equals the role.
//
// Map entries are comma-separated value=role pairs (the last "=" splits,
// so values may contain "="); a value may appear several times to map to
// several roles. Matching is exact and case-sensitive. Anything else is
// role_not_allowed.
//
// A granted role that is privileged is still refused, with
// privileged_role, unless allow_privileged_roles is on for the issuer:
// Request.RolePrivileges lists its SUPERUSER, BYPASSRLS and CREATEROLE
// attributes and those of every role it is a member of, directly or not
// (the module's shim reads them from pg_authid and pg_auth_members at the
// login and passes them as the server fact server.role_privileges; see
// ParseRolePrivileges). The detail names each attribute and the role that
// holds it. A nil RolePrivileges (a caller that cannot know them, such as
// oauth_jwt_check without --role-attributes) skips this check; the module
// always sets it in delegated mode. Without delegate_ident_mapping the
// pg_ident.conf map, the DBA's explicit list, decides and role attributes
// are not checked.
//
// # Settings
//
// Settings are the oauth_jwt.* parameters without the prefix, as strings.
// An empty value means the default. Lists are separated by commas and/or
// white space; booleans are on/off (also true/false, yes/no, 1/0);
// numbers are plain integers in the unit given. Relative paths are
// relative to the data directory. CheckSetting judges one value alone with
// the same parsers (the module's GUC check hooks call it, so ALTER SYSTEM
// refuses what a login would); the integer ranges below are those the
// module's shim gives the server.
//
// Per-issuer (may be overridden in issuer_config):
//
//	audience            list, REQUIRED. aud must contain one of them. Unset
//	                    is a configuration error, never "any audience".
//	allowed_client_ids  list, default empty (not checked). azp, else
//	                    client_id, else appid, else cid (Okta) must be one of them.
//	required_scopes     list, default empty. Scopes required besides
//	                    the pg_hba scope option's (see "Scopes").
//	enforce_hba_scope   bool, default on: the token must grant the scopes
//	                    of the pg_hba scope option (OpenID Connect request
//	                    scopes excepted). Off only for providers that put
//	                    no scopes in tokens (Dex).
//	max_token_lifetime  seconds, default 86400 (60..31536000): the longest
//	                    exp - iat accepted (see "Times and lifetime").
//	allowed_algorithms  list, default RS256,RS384,RS512,PS256,PS384,PS512,
//	                    ES256,ES384,ES512,EdDSA. "none" and HS* are
//	                    configuration errors.
//	leeway              seconds, default 30, at most 300: clock skew on
//	                    exp, nbf, iat.
//	accept_id_tokens    bool, default off. See "Token type".
//	jwks_uri            URL, default empty: fetch the JWKS here and skip
//	                    discovery (static key location).
//	discovery_url       URL, default issuer + "/.well-known/openid-configuration";
//	                    for an internal address of the provider. The
//	                    document's issuer must still equal the pg_hba issuer.
//	jwks_file           absolute path, default empty: the issuer's keys from
//	                    a JWK set on disk, re-read when it changes (stat
//	                    stamp), with the trusted-file checks (owner the
//	                    server's user or root, not writable by group or
//	                    others, no symlink or FIFO, at most MaxKeyFileBytes,
//	                    no directory above writable by others). No request
//	                    is ever made for the issuer. Excludes jwks_uri and
//	                    discovery_url; a bad file is keys_unavailable.
//	introspection       off (default), opaque or always: RFC 7662. opaque
//	                    judges tokens that are not JWTs by the issuer's
//	                    answer ("active" the JSON boolean true, then the
//	                    same claim checks as a JWT's, iss optional);
//	                    always also requires a JWT that passed every
//	                    offline check to be active. token_inactive and
//	                    introspection_failed; fails closed, never stale.
//	introspection_endpoint URL, default the discovery document's.
//	introspection_client_id, introspection_secret_file: the confidential
//	                    client (HTTP Basic, RFC 6749 section 2.3.1
//	                    encoding); the secret file gets the trusted-file
//	                    rule and must not be readable by others.
//	introspection_cache_ttl seconds, default 30, 0 to 3600: positive
//	                    answers are shared by all backends for at most this
//	                    long and never past exp, keyed by a hash of the
//	                    token; negative answers are never cached.
//	authn_id_claim      claim path, default "sub".
//	role_claim          claim path, default empty; needs role_map.
//	role_map            value=role pairs, default empty; needs role_claim.
//	client_role_map     clientid=role pairs, default empty.
//	role_from_identity  bool, default off.
//	allow_privileged_roles  bool, default off: in delegated mode, grant
//	                    roles with SUPERUSER, BYPASSRLS or CREATEROLE (or
//	                    members of such roles) too. MUST NOT be on for an
//	                    issuer whose users choose their names or groups.
//	log_accepted        bool, default off: log accepted tokens at LOG
//	                    instead of DEBUG1.
//
// Server-wide (one key cache and one HTTP client serve every issuer):
//
//	cache_dir               path, default <data_directory>/oauth_jwt_cache.
//	cache_refresh_interval  seconds, default 300 (1..86400).
//	cache_max_stale         seconds, default 3600 (1..604800): how long
//	                        last-known-good keys are served, with a
//	                        warning, while the provider fails.
//	kid_refetch_interval    seconds, default 60 (1..86400).
//	http_timeout            milliseconds, default 5000 (100..600000). It must stay below
//	                        authentication_timeout: otherwise it is lowered
//	                        to authentication_timeout minus 1 s (half of it
//	                        when that is 1 s) and a warning is logged.
//	ca_file                 path of PEM certificates trusted for the
//	                        provider instead of the system roots, default
//	                        empty (system roots); at most 2 MiB, checked
//	                        by the trusted-file rule at every use.
//	http_proxy              proxy URL, default empty = no proxy. The
//	                        environment (HTTPS_PROXY...) is never consulted.
//	                        Credentials in the URL are refused: any role
//	                        can read the setting in a session that did
//	                        not load the module.
//	require_https           bool, default on. Off allows plain http for
//	                        loopback hosts only (tests).
//	issuer_config           path of the per-issuer file, default empty;
//	                        at most 1 MiB, checked by the trusted-file
//	                        rule at every use.
//
// Server facts passed by the shim: server.data_directory,
// server.authentication_timeout (seconds, default 60) and
// server.module_path (the loaded oauth_jwt.so, whose directory holds the
// oauth_jwt_fetch helper; read by the module, not by Settings) and
// server.role_privileges (delegated logins: the requested role's
// attributes, which the module puts in Request.RolePrivileges). Other keys starting
// with "server." or "test.", and unknown keys, are ignored in Settings.
//
// # Per-issuer configuration
//
// pg_hba.conf may hold several oauth lines with different issuers. The
// file named by issuer_config gives each issuer its own policy:
//
//	# comments start with # or ;
//	[https://kc.example.com/realms/db]
//	audience = pg
//	role_claim = groups
//	role_map = dba=postgres, analysts=reader
//
//	[https://login.microsoftonline.com/<tenant>/v2.0]
//	# v2 access tokens carry the API's application (client) ID as aud,
//	# never its api:// URI
//	audience = 11111111-2222-3333-4444-555555555555
//	authn_id_claim = oid
//
// A section header is the issuer exactly as in pg_hba.conf; a section
// applies when Request.Issuer equals it byte for byte. Lines are
// "name = value" with the per-issuer setting names (the "oauth_jwt."
// prefix is optional; one pair of surrounding quotes is removed). A
// section starts from the global settings and replaces what it sets; a
// list it sets replaces the global list. Every section must end up with
// an audience. With issuer_config set, the global audience may be empty;
// an issuer without a section then fails with aud_not_configured (an
// internal error). Errors — unknown or server-wide names, repeated names
// or sections, bad values, a file over 1 MiB, a file that fails the
// trusted-file rule of package internal/trustedfile (owner the server's
// OS user or root; not writable by group or others; not a symbolic link,
// FIFO or device; every directory above it safe from others) — are
// configuration errors naming the file (and line) and the fix. When
// several issuers are configured, set jwks_uri and discovery_url in their
// sections, never globally.
//
// # Per-line policy (PostgreSQL 19)
//
// On PostgreSQL 19 the shim registers PolicyKeys as pg_hba options, so an
// oauth line may set any per-issuer key as validator.<key>=value. For a
// login on such a line the shim adds the settings "hba.<key>" (the values
// the line sets), "server.hba_file", "server.hba_line" and
// "server.hba_issuer". Config.PolicyFor then applies, most specific first:
// the line's options, the issuer's issuer_config section, the global
// settings. A bad value is a *ConfigError whose Setting is
// "validator.<key>" and whose File and Line are the pg_hba line's: that
// line's logins fail, nothing falls back to a less specific value.
//
// # Reason codes
//
// Rejections (nil error, Authorized false, one LOG record "bearer token
// rejected" whose detail starts with "Reason: <code>."):
//
//	malformed                  not a compact JWS of UTF-8 JSON objects; JWE;
//	                           too deep; duplicate members; bad header member
//	token_too_large            longer than MaxTokenBytes (32 KiB)
//	alg_not_allowed            alg not in allowed_algorithms (none/HS* never)
//	crit_header                "crit" (or a "b64") header member
//	untrusted_key_header       jku, x5u, jwk or x5c header member
//	wrong_token_type           not an access token nor an ID token
//	id_token                   an ID token while accept_id_tokens is off
//	invalid_claim              a registered claim of the wrong JSON type, or
//	                           exp, nbf or iat negative or in year 10000+
//	iss_mismatch               iss absent or not the pg_hba issuer (the
//	                           detail points out a trailing-slash difference)
//	aud_mismatch               aud absent, empty, or without a configured one
//	missing_exp                no exp
//	expired                    exp + leeway in the past
//	not_yet_valid              nbf - leeway in the future
//	iat_in_future              iat - leeway in the future
//	lifetime_too_long          exp - iat (no iat: exp - now - leeway) above
//	                           max_token_lifetime
//	azp_not_allowed            client not in allowed_client_ids
//	missing_scope              a scope of the pg_hba scope option or of
//	                           required_scopes not granted
//	keys_unavailable           the issuer's keys cannot be had now (provider
//	                           down or answering too much, no usable cache)
//	discovery_issuer_mismatch  the discovery document names another issuer
//	unknown_kid                no key with the kid after a refetch; or no kid
//	                           and not exactly one usable key
//	kid_not_signing_key        the kid's key is not for signatures
//	key_alg_mismatch           the kid's key is for another alg
//	key_type_mismatch          the kid's key type or curve cannot do the alg
//	weak_key                   RSA key under 2048 bits
//	bad_signature              the signature does not verify
//	no_identity                authn_id_claim absent, empty, not a string or
//	                           number, or containing NUL
//	invalid_identity           authn_id with a control, line-separator or
//	                           bidirectional formatting character
//	role_not_allowed           delegated mode: nothing grants the role
//	privileged_role            delegated mode: the granted role has
//	                           SUPERUSER, BYPASSRLS or CREATEROLE, or is a
//	                           member of a role that has one, and
//	                           allow_privileged_roles is off
//
// Internal errors (non-nil error; the server logs an internal error):
//
//	aud_not_configured  no audience for the issuer
//	config_error        a bad setting (also issuer_config or ca_file
//	                    failing the trusted-file rule), the key source
//	                    refused a configured URL as insecure
//	                    (keycache.ErrInsecureURL), or the fetch helper
//	                    failed the trusted-file rule
//	                    (trustedfile.ErrUntrusted)
//	insecure_cache      the key cache directory is not safe to use
//	                    (keycache.ErrInsecureCache)
//	internal_error      anything unexpected, including a recovered panic
//
// Key source errors map as follows: keycache.ErrUnavailable and
// keycache.ErrTooLarge (and a cancelled or expired context) reject with
// keys_unavailable, because the module works and the token simply cannot
// be checked now; keycache.ErrDiscoveryMismatch rejects with
// discovery_issuer_mismatch; ErrInsecureCache and ErrInsecureURL are
// internal errors. Keys served stale add a WARNING record naming the
// issuer and the cause; keys fetched for this login that the key cache
// could not store (keycache.Keys.Unstored) add a WARNING "key cache
// directory is not writable"; keycache.ErrFutureFetch (cached keys dated
// after the current time, never served stale) adds a WARNING "cached
// signing keys are dated in the future" before the keys_unavailable
// rejection.
//
// # Logs
//
// Every Result carries its log records: configuration warnings (with the
// first validation of a Verifier), a WARNING for stale keys, then the
// verdict: a LOG record for a rejection, a DEBUG1 record (LOG with
// log_accepted) for an acceptance. Details are sentences naming the
// claims that explain the verdict (iss, sub, azp, aud, exp), quoted and
// truncated, with control characters escaped; error texts from elsewhere
// (the fetch helper's output among them) are escaped the same way
// (EscapeLogText), so every record stays one line. The token, or any
// segment of it, never appears in a record
// or an error text; as a last guard, any segment that a crafted claim
// repeats is replaced by "[redacted]".
//
// # Explaining a verdict
//
// Verifier.Explain judges a request through the same code as Validate
// (same result, same log records) and also records every check it ran, in
// the order above, with its status (pass, fail or skip), what the token
// offered and what the configuration wanted, the reason code and Hint, the
// one table of what to do about each reason (the id_token detail in the
// log ends with the same text). DescribeKeys applies the key rules to a
// whole key set, KeySourceReason maps key source errors onto reason codes
// as Validate does, and DecodeToken shows a token's header and claims,
// never its signature. The troubleshooting tool cmd/oauth_jwt_check is
// built on them.
package validator
