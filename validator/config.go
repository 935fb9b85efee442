package validator

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits and defaults of the settings (see the package documentation).
const (
	// DefaultAlgorithms is the default of oauth_jwt.allowed_algorithms.
	DefaultAlgorithms = "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA"
	// DefaultLeeway is the default clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest oauth_jwt.leeway accepted.
	MaxLeeway = 300 * time.Second
	// DefaultMaxTokenLifetime is the default of oauth_jwt.max_token_lifetime
	// (24 h, which covers Auth0's API default of 86 400 s).
	DefaultMaxTokenLifetime = 86400 * time.Second
	// MinMaxTokenLifetime and MaxMaxTokenLifetime bound
	// oauth_jwt.max_token_lifetime (1 min to 365 days); the C shim's GUC
	// has the same bounds.
	MinMaxTokenLifetime = 60 * time.Second
	MaxMaxTokenLifetime = 365 * 86400 * time.Second
	// MaxNumericDate is the first NumericDate (in seconds) refused in exp,
	// nbf and iat: 10000-01-01T00:00:00Z. Times are also never negative.
	MaxNumericDate = 253402300800
	// DefaultAuthnIDClaim is the default of oauth_jwt.authn_id_claim.
	DefaultAuthnIDClaim = "sub"
	// DefaultCacheRefreshInterval is the default of oauth_jwt.cache_refresh_interval.
	DefaultCacheRefreshInterval = 300 * time.Second
	// DefaultCacheMaxStale is the default of oauth_jwt.cache_max_stale.
	DefaultCacheMaxStale = time.Hour
	// DefaultKIDRefetchInterval is the default of oauth_jwt.kid_refetch_interval.
	DefaultKIDRefetchInterval = 60 * time.Second
	// DefaultHTTPTimeout is the default of oauth_jwt.http_timeout.
	DefaultHTTPTimeout = 5 * time.Second
	// DefaultAuthenticationTimeout is assumed when the server does not pass
	// server.authentication_timeout (PostgreSQL's own default).
	DefaultAuthenticationTimeout = 60 * time.Second
	// CacheDirName is the directory created under the data directory when
	// oauth_jwt.cache_dir is empty.
	CacheDirName = "oauth_jwt_cache"
	// DefaultIntrospectionCacheTTL is the default of
	// oauth_jwt.introspection_cache_ttl.
	DefaultIntrospectionCacheTTL = 30 * time.Second
	// MaxIntrospectionCacheTTL is the largest introspection_cache_ttl.
	MaxIntrospectionCacheTTL = time.Hour
	// SettingPrefix is the prefix of every setting name in postgresql.conf.
	SettingPrefix = "oauth_jwt."
)

// supportedAlgorithms are the only algorithms that may ever be allowed:
// asymmetric signatures. "none" and HS* can never be configured (RFC 8725
// sections 2.1 and 3.1: a verifier that accepts HS* with a key set holding
// public keys can be fooled with the public key used as an HMAC secret).
var supportedAlgorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA",
}

// Policy is the set of checks applied to the tokens of one issuer. The
// global oauth_jwt.* settings make the default Policy; a section of the
// issuer_config file overrides any of them for one issuer.
type Policy struct {
	// Audiences: the token's aud must contain at least one of them
	// (oauth_jwt.audience). An empty list is a configuration error, never
	// "accept any audience".
	Audiences []string
	// AllowedClientIDs: when non-empty, azp (else client_id, else appid)
	// must be one of them (oauth_jwt.allowed_client_ids).
	AllowedClientIDs []string
	// RequiredScopes must all be present in scope or scp
	// (oauth_jwt.required_scopes), in addition to the scopes of the
	// pg_hba.conf line.
	RequiredScopes []string
	// EnforceHBAScope requires every scope of the pg_hba.conf line's scope
	// option, except the OpenID Connect request scopes (openid, profile,
	// email, address, phone, offline_access), to be granted by the token
	// (oauth_jwt.enforce_hba_scope, default on). Turning it off weakens
	// security: the pg_hba.conf scope is then only what clients request.
	// It MUST NOT be off unless the identity provider puts no scopes in its
	// tokens (Dex); RequiredScopes still applies.
	EnforceHBAScope bool
	// MaxTokenLifetime bounds exp - iat (exp - now when iat is absent)
	// (oauth_jwt.max_token_lifetime, default DefaultMaxTokenLifetime): a
	// validator that checks offline cannot see revocation, so a token must
	// not be usable for longer than this.
	MaxTokenLifetime time.Duration
	// AllowedAlgorithms is the JWS alg allow-list; asymmetric algorithms
	// only (oauth_jwt.allowed_algorithms).
	AllowedAlgorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat (oauth_jwt.leeway).
	Leeway time.Duration
	// AcceptIDTokens lets OpenID Connect ID tokens log in
	// (oauth_jwt.accept_id_tokens). It weakens security: an ID token is
	// meant for the client that requested it, not for a resource server.
	// It MUST NOT be used in production unless the identity provider issues
	// no JWT access tokens at all (Google) and Audiences holds only the
	// client IDs of the applications allowed to log in.
	AcceptIDTokens bool
	// JWKSURI, when set, is where the keys are fetched; discovery is skipped
	// (oauth_jwt.jwks_uri).
	JWKSURI string
	// DiscoveryURL overrides where the discovery document is fetched; its
	// "issuer" must still equal the pg_hba issuer (oauth_jwt.discovery_url).
	DiscoveryURL string
	// JWKSFile, when set, is a JWK set on disk that holds the issuer's keys
	// (oauth_jwt.jwks_file): an absolute path, read with the trusted-file
	// checks and re-read when it changes. No network request is ever made
	// for the issuer; it excludes JWKSURI and DiscoveryURL.
	JWKSFile string
	// Introspection says which tokens are also checked with the issuer's
	// RFC 7662 introspection endpoint (oauth_jwt.introspection):
	// IntrospectionOff (default), IntrospectionOpaque (tokens that are not
	// JWTs are introspected; JWTs are verified offline) or
	// IntrospectionAlways (a JWT is verified offline, then must be active).
	Introspection string
	// IntrospectionEndpoint overrides the discovery document's
	// introspection_endpoint (oauth_jwt.introspection_endpoint).
	IntrospectionEndpoint string
	// IntrospectionClientID and IntrospectionSecretFile are the
	// confidential client the module authenticates as (HTTP Basic); the
	// secret is read from the file, never from a setting.
	IntrospectionClientID   string
	IntrospectionSecretFile string
	// IntrospectionCacheTTL: a positive answer is reused for at most this
	// long (never past the token's exp); 0 asks at every login
	// (oauth_jwt.introspection_cache_ttl).
	IntrospectionCacheTTL time.Duration
	// AuthnIDClaim is the path of the claim that becomes authn_id
	// (oauth_jwt.authn_id_claim).
	AuthnIDClaim string
	// RoleClaim is the path of the claim (string or array of strings) whose
	// values RoleMap maps to roles in delegated mode (oauth_jwt.role_claim).
	RoleClaim string
	// RoleMap maps a RoleClaim value to the roles it may log in as
	// (oauth_jwt.role_map).
	RoleMap map[string][]string
	// ClientRoleMap maps a client id (azp, else client_id, else appid) to the
	// roles it may log in as in delegated mode (oauth_jwt.client_role_map).
	ClientRoleMap map[string][]string
	// RoleFromIdentity lets a token log in as the role equal to its authn_id
	// in delegated mode (oauth_jwt.role_from_identity).
	RoleFromIdentity bool
	// AllowPrivilegedRoles lets role_map, client_role_map and
	// role_from_identity grant, in delegated mode, a role that has
	// SUPERUSER, BYPASSRLS or CREATEROLE or is a member of a role with one
	// (oauth_jwt.allow_privileged_roles). It weakens security: whoever can
	// get such a token (or change the claim it rests on at the identity
	// provider) then owns the server. It MUST NOT be on for an issuer whose
	// users can choose their own names or groups.
	AllowPrivilegedRoles bool
	// LogAccepted logs accepted tokens at LOG instead of DEBUG1
	// (oauth_jwt.log_accepted).
	LogAccepted bool
}

// Config is the whole configuration of a Verifier: the default Policy, the
// per-issuer policies and the server-wide key cache settings.
type Config struct {
	// Default applies to every issuer without a section in IssuerConfig.
	Default Policy
	// Issuers holds the effective policy of every issuer named in the
	// issuer_config file, keyed by the issuer exactly as written there.
	Issuers map[string]Policy

	// CacheDir is the key cache directory shared by all backends
	// (oauth_jwt.cache_dir; default <data_directory>/oauth_jwt_cache).
	CacheDir string
	// CacheRefreshInterval: keys younger than this are used without any
	// network request (oauth_jwt.cache_refresh_interval).
	CacheRefreshInterval time.Duration
	// CacheMaxStale: last-known-good keys up to this old are served, with a
	// warning, while the identity provider fails (oauth_jwt.cache_max_stale).
	CacheMaxStale time.Duration
	// KIDRefetchInterval: minimum time between two refetches caused by an
	// unknown kid, per issuer and server-wide (oauth_jwt.kid_refetch_interval).
	KIDRefetchInterval time.Duration
	// HTTPTimeout bounds every request to the identity provider
	// (oauth_jwt.http_timeout); always below AuthenticationTimeout.
	HTTPTimeout time.Duration
	// CAFile is a PEM bundle trusted instead of the system roots
	// (oauth_jwt.ca_file).
	CAFile string
	// HTTPProxy is the proxy URL for requests to the identity provider;
	// empty means no proxy (oauth_jwt.http_proxy). The environment
	// (HTTPS_PROXY...) is never consulted.
	HTTPProxy string
	// RequireHTTPS refuses http:// URLs (oauth_jwt.require_https). When
	// false, plain http is allowed for loopback hosts only; that is for
	// tests and MUST NOT be used in production.
	RequireHTTPS bool
	// IssuerConfig is the path of the per-issuer override file
	// (oauth_jwt.issuer_config).
	IssuerConfig string
	// DataDirectory and AuthenticationTimeout are the server facts
	// (server.data_directory, server.authentication_timeout).
	DataDirectory         string
	AuthenticationTimeout time.Duration

	// Line holds the options of the pg_hba line the login matched
	// (validator.<key>=value, PostgreSQL 19 and later); nil when the line
	// sets none. See linepolicy.go.
	Line *LineOptions

	// Warnings are problems found in the settings that did not stop the
	// module (a clamped http_timeout...). The Verifier logs them with the
	// first token it validates.
	Warnings []LogRecord
}

// PolicyFor returns the policy of issuer, from the most specific source:
// the options of the pg_hba line the login matched (PostgreSQL 19), applied
// on top of the issuer's section of the issuer_config file when there is
// one (exact, byte-for-byte match), else on top of the default.
func (c *Config) PolicyFor(issuer string) *Policy {
	if c.Line != nil && c.Line.policy != nil && issuer == c.Line.Issuer {
		p := *c.Line.policy // the pg_hba line's options win over both
		return &p
	}
	if p, ok := c.Issuers[issuer]; ok {
		return &p
	}
	p := c.Default
	return &p
}

// ConfigError is an invalid setting. The module cannot validate any token
// until it is fixed; the server logs it as an internal error.
type ConfigError struct {
	// Setting is the full setting name ("oauth_jwt.leeway").
	Setting string
	// File and Line locate the error in the issuer_config file, if there.
	File string
	Line int
	// Msg says what is wrong, as a lowercase fragment.
	Msg string
	// Err is the underlying error, if any.
	Err error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Setting != "" {
		fmt.Fprintf(&b, "invalid configuration for %q: ", e.Setting)
	} else {
		b.WriteString("invalid configuration: ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// policyKeys are the settings a section of the issuer_config file may set,
// and (PostgreSQL 19) the options a pg_hba oauth line may set as
// validator.<key>: PolicyKeys hands this list to the shim, which registers
// it with the server, so a key added here is accepted on a line too.
var policyKeys = []string{
	"audience", "allowed_client_ids", "required_scopes", "allowed_algorithms",
	"leeway", "accept_id_tokens", "jwks_uri", "discovery_url", "jwks_file",
	"introspection", "introspection_endpoint", "introspection_client_id",
	"introspection_secret_file", "introspection_cache_ttl",
	"authn_id_claim", "role_claim", "role_map", "client_role_map",
	"role_from_identity", "enforce_hba_scope", "max_token_lifetime",
	"allow_privileged_roles", "log_accepted",
}

// serverKeys are server-wide: one key cache and one HTTP client serve every
// issuer, so these cannot differ per issuer.
var serverKeys = []string{
	"cache_dir", "cache_refresh_interval", "cache_max_stale",
	"kid_refetch_interval", "http_timeout", "ca_file", "http_proxy",
	"require_https", "issuer_config",
}

// ParseSettings turns the settings the server holds into a Config. Empty
// values mean the documented defaults. Keys starting with "server." other
// than the documented server facts, keys starting with "test." and unknown
// keys are ignored (the shim passes only the settings it defines). A bad
// value is a *ConfigError naming the setting.
func ParseSettings(s Settings) (*Config, error) {
	c := &Config{
		CacheRefreshInterval:  DefaultCacheRefreshInterval,
		CacheMaxStale:         DefaultCacheMaxStale,
		KIDRefetchInterval:    DefaultKIDRefetchInterval,
		HTTPTimeout:           DefaultHTTPTimeout,
		RequireHTTPS:          true,
		AuthenticationTimeout: DefaultAuthenticationTimeout,
		DataDirectory:         s["server.data_directory"],
	}
	if v := strings.TrimSpace(s["server.authentication_timeout"]); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, &ConfigError{Setting: "authentication_timeout",
				Msg: fmt.Sprintf("expected a positive number of seconds, got %q", v)}
		}
		c.AuthenticationTimeout = time.Duration(n) * time.Second
	}
	if err := c.parseServer(s); err != nil {
		return nil, err
	}
	def, err := parsePolicy(nil, func(k string) (string, bool) { v, ok := s[k]; return v, ok },
		Policy{}, c.RequireHTTPS, nil)
	if err != nil {
		return nil, err
	}
	c.Default = *def
	if c.IssuerConfig != "" {
		iss, err := loadIssuerConfig(c.IssuerConfig, c.Default, c.RequireHTTPS)
		if err != nil {
			return nil, err
		}
		c.Issuers = iss
	}
	if err := c.parseLine(s); err != nil {
		return nil, err
	}
	if c.IssuerConfig == "" && len(c.Default.Audiences) == 0 &&
		(c.Line == nil || c.Line.policy == nil || len(c.Line.policy.Audiences) == 0) {
		return nil, errNoAudience(nil)
	}
	return c, nil
}

func errNoAudience(loc *location) error {
	e := &ConfigError{Setting: SettingPrefix + "audience",
		Msg: "no audience is configured; set it to the audience (aud) your identity provider puts in access tokens meant for this server, since an unset audience would accept tokens issued for any application"}
	loc.apply(e)
	return e
}

// location is a place in the issuer_config file.
type location struct {
	file string
	line int
}

func (l *location) apply(e *ConfigError) {
	if l != nil {
		e.File, e.Line = l.file, l.line
	}
}

func (c *Config) parseServer(s Settings) error {
	var err error
	pathSetting := func(name string) (string, error) {
		v := strings.TrimSpace(s[name])
		if v == "" || filepath.IsAbs(v) {
			return v, nil
		}
		if c.DataDirectory == "" {
			return "", &ConfigError{Setting: SettingPrefix + name,
				Msg: fmt.Sprintf("relative path %q needs the data directory, which is unknown", v)}
		}
		return filepath.Join(c.DataDirectory, v), nil
	}
	if c.CacheDir, err = pathSetting("cache_dir"); err != nil {
		return err
	}
	if c.CacheDir == "" && c.DataDirectory != "" {
		c.CacheDir = filepath.Join(c.DataDirectory, CacheDirName)
	}
	if c.CAFile, err = pathSetting("ca_file"); err != nil {
		return err
	}
	if c.IssuerConfig, err = pathSetting("issuer_config"); err != nil {
		return err
	}
	durations := []struct {
		name     string
		dst      *time.Duration
		unit     time.Duration
		min, max int
	}{
		{"cache_refresh_interval", &c.CacheRefreshInterval, time.Second, 1, 86400},
		{"cache_max_stale", &c.CacheMaxStale, time.Second, 1, 7 * 86400},
		{"kid_refetch_interval", &c.KIDRefetchInterval, time.Second, 1, 86400},
		{"http_timeout", &c.HTTPTimeout, time.Millisecond, 100, 600000},
	}
	for _, d := range durations {
		if err := parseDuration(s[d.name], d.dst, d.unit, d.min, d.max, d.name, nil); err != nil {
			return err
		}
	}
	if c.RequireHTTPS, err = parseBool(s["require_https"], true, "require_https", nil); err != nil {
		return err
	}
	if p := strings.TrimSpace(s["http_proxy"]); p != "" {
		u, err := url.Parse(p)
		if err != nil || !slices.Contains([]string{"http", "https", "socks5", "socks5h"}, u.Scheme) || u.Host == "" {
			return &ConfigError{Setting: SettingPrefix + "http_proxy",
				Msg: "expected the URL of the proxy (http, https, socks5 or socks5h scheme)"}
		}
		// Any role can read the setting in a session that did not load the
		// library (SHOW of a placeholder), so it must hold no secret.
		if u.User != nil {
			return &ConfigError{Setting: SettingPrefix + "http_proxy",
				Msg: "the proxy URL must not carry credentials (user:password@): every role can read this setting; use a proxy that needs no credentials from this host"}
		}
		c.HTTPProxy = p
	}
	// Every network call must end before the server gives up on the login.
	if c.HTTPTimeout >= c.AuthenticationTimeout {
		clamped := c.AuthenticationTimeout - time.Second
		if clamped <= 0 {
			clamped = c.AuthenticationTimeout / 2
		}
		c.Warnings = append(c.Warnings, LogRecord{
			Level:   LevelWarning,
			Message: `"oauth_jwt.http_timeout" is not below "authentication_timeout"`,
			Detail: fmt.Sprintf("The setting %q is %d ms but \"authentication_timeout\" is %d s; requests to the identity provider are limited to %d ms instead.",
				SettingPrefix+"http_timeout", c.HTTPTimeout.Milliseconds(),
				int(c.AuthenticationTimeout/time.Second), clamped.Milliseconds()),
		})
		c.HTTPTimeout = clamped
	}
	return nil
}

// parsePolicy applies the policy settings found through get onto base.
// loc is nil for postgresql.conf settings; for the issuer_config file, get
// returns the value and lines gives the line of each key.
func parsePolicy(loc *location, get func(string) (string, bool), base Policy,
	requireHTTPS bool, lines map[string]int) (*Policy, error) {
	p := base
	at := func(key string) *location {
		if loc == nil {
			return nil
		}
		return &location{file: loc.file, line: lines[key]}
	}
	// Start from copies so that sections never share slices with the base.
	p.Audiences = slices.Clone(base.Audiences)
	for _, key := range policyKeys {
		raw, ok := get(key)
		if !ok {
			if loc == nil {
				raw = "" // a missing global setting means its default
			} else {
				continue // a section inherits what it does not set
			}
		}
		v := strings.TrimSpace(raw)
		var err error
		switch key {
		case "audience":
			p.Audiences = splitList(v)
		case "allowed_client_ids":
			p.AllowedClientIDs = splitList(v)
		case "required_scopes":
			p.RequiredScopes = splitList(v)
		case "allowed_algorithms":
			p.AllowedAlgorithms, err = parseAlgorithms(v, at(key))
		case "leeway":
			p.Leeway = DefaultLeeway
			err = parseDuration(v, &p.Leeway, time.Second, 0, int(MaxLeeway/time.Second), key, at(key))
		case "accept_id_tokens":
			p.AcceptIDTokens, err = parseBool(v, false, key, at(key))
		case "jwks_uri":
			p.JWKSURI, err = parseURL(v, requireHTTPS, key, at(key))
		case "discovery_url":
			p.DiscoveryURL, err = parseURL(v, requireHTTPS, key, at(key))
		case "jwks_file":
			p.JWKSFile, err = parseFilePath(v, key, at(key))
		case "introspection":
			switch strings.ToLower(v) {
			case "", IntrospectionOff:
				p.Introspection = IntrospectionOff
			case IntrospectionOpaque, IntrospectionAlways:
				p.Introspection = strings.ToLower(v)
			default:
				e := &ConfigError{Setting: SettingPrefix + key, Msg: fmt.Sprintf("expected off, opaque or always, got %q", v)}
				at(key).apply(e)
				err = e
			}
		case "introspection_endpoint":
			p.IntrospectionEndpoint, err = parseURL(v, requireHTTPS, key, at(key))
		case "introspection_client_id":
			p.IntrospectionClientID = v
		case "introspection_secret_file":
			p.IntrospectionSecretFile, err = parseFilePath(v, key, at(key))
		case "introspection_cache_ttl":
			p.IntrospectionCacheTTL = DefaultIntrospectionCacheTTL
			err = parseDuration(v, &p.IntrospectionCacheTTL, time.Second, 0, int(MaxIntrospectionCacheTTL/time.Second), key, at(key))
		case "authn_id_claim":
			if v == "" {
				v = DefaultAuthnIDClaim
			}
			p.AuthnIDClaim, err = parseClaimPath(v, key, at(key))
		case "role_claim":
			p.RoleClaim = ""
			if v != "" {
				p.RoleClaim, err = parseClaimPath(v, key, at(key))
			}
		case "role_map":
			p.RoleMap, err = parseRoleMap(v, key, at(key))
		case "client_role_map":
			p.ClientRoleMap, err = parseRoleMap(v, key, at(key))
		case "role_from_identity":
			p.RoleFromIdentity, err = parseBool(v, false, key, at(key))
		case "enforce_hba_scope":
			p.EnforceHBAScope, err = parseBool(v, true, key, at(key))
		case "max_token_lifetime":
			p.MaxTokenLifetime = DefaultMaxTokenLifetime
			err = parseDuration(v, &p.MaxTokenLifetime, time.Second, int(MinMaxTokenLifetime/time.Second),
				int(MaxMaxTokenLifetime/time.Second), key, at(key))
		case "allow_privileged_roles":
			p.AllowPrivilegedRoles, err = parseBool(v, false, key, at(key))
		case "log_accepted":
			p.LogAccepted, err = parseBool(v, false, key, at(key))
		}
		if err != nil {
			return nil, err
		}
	}
	if err := checkKeySources(&p); err != nil {
		loc.apply(err)
		return nil, err
	}
	if (p.RoleClaim == "") != (len(p.RoleMap) == 0) {
		e := &ConfigError{Setting: SettingPrefix + "role_map",
			Msg: `"oauth_jwt.role_claim" and "oauth_jwt.role_map" must be set together`, Err: errRoleClaimMapPair}
		loc.apply(e)
		return nil, e
	}
	return &p, nil
}

// checkKeySources refuses a policy that names two places for the keys: a
// key file means no network for the issuer, so it cannot go with a URL.
func checkKeySources(p *Policy) *ConfigError {
	if p.Introspection != IntrospectionOff && p.Introspection != "" {
		switch {
		case p.JWKSFile != "":
			return &ConfigError{Setting: SettingPrefix + "introspection",
				Msg: fmt.Sprintf("%q and %q cannot both be set for one issuer: a key file means no request is ever made to the identity provider", SettingPrefix+"introspection", SettingPrefix+"jwks_file")}
		case p.IntrospectionClientID == "":
			return &ConfigError{Setting: SettingPrefix + "introspection_client_id",
				Msg: "introspection needs the id of a confidential client of the identity provider"}
		case p.IntrospectionSecretFile == "":
			return &ConfigError{Setting: SettingPrefix + "introspection_secret_file",
				Msg: "introspection needs the file holding the client secret (a secret is never a setting value)"}
		}
	}
	if p.JWKSFile == "" {
		return nil
	}
	for _, o := range []struct{ name, v string }{{"jwks_uri", p.JWKSURI}, {"discovery_url", p.DiscoveryURL}} {
		if o.v != "" {
			return &ConfigError{Setting: SettingPrefix + "jwks_file",
				Msg: fmt.Sprintf("%q and %q cannot both be set for one issuer: a key file means no request is ever made to the identity provider", SettingPrefix+"jwks_file", SettingPrefix+o.name)}
		}
	}
	return nil
}

// parseFilePath checks the path of a trusted file named in a policy: it
// must be absolute (a section of issuer_config and postgresql.conf must
// mean the same file whatever the current directory).
func parseFilePath(v, name string, loc *location) (string, error) {
	if v == "" {
		return "", nil
	}
	if !filepath.IsAbs(v) || strings.ContainsRune(v, 0) {
		e := &ConfigError{Setting: SettingPrefix + name, Msg: fmt.Sprintf("expected an absolute path, got %q", v)}
		loc.apply(e)
		return "", e
	}
	return filepath.Clean(v), nil
}

// splitList splits a list separated by commas and/or white space.
func splitList(v string) []string {
	f := strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	if len(f) == 0 {
		return nil
	}
	out := f[:0]
	for _, s := range f {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func parseAlgorithms(v string, loc *location) ([]string, error) {
	if v == "" {
		v = DefaultAlgorithms
	}
	algs := splitList(v)
	for _, a := range algs {
		if slices.Contains(supportedAlgorithms, a) {
			continue
		}
		e := &ConfigError{Setting: SettingPrefix + "allowed_algorithms"}
		switch {
		case strings.EqualFold(a, "none"):
			e.Msg = `"none" (unsigned tokens) can never be allowed`
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			e.Msg = fmt.Sprintf("%q is a symmetric (HMAC) algorithm and can never be allowed; only RS*, PS*, ES* and EdDSA are supported", a)
		default:
			e.Msg = fmt.Sprintf("unsupported algorithm %q; supported are %s", a, strings.Join(supportedAlgorithms, ", "))
		}
		loc.apply(e)
		return nil, e
	}
	return algs, nil
}

func parseBool(v string, def bool, name string, loc *location) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "":
		return def, nil
	case "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	e := &ConfigError{Setting: SettingPrefix + name,
		Msg: fmt.Sprintf("expected a boolean (on or off), got %q", v)}
	loc.apply(e)
	return false, e
}

// parseDuration parses a plain non-negative integer in unit; empty keeps *dst.
func parseDuration(v string, dst *time.Duration, unit time.Duration, min, max int,
	name string, loc *location) error {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	unitName := "seconds"
	if unit == time.Millisecond {
		unitName = "milliseconds"
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		e := &ConfigError{Setting: SettingPrefix + name,
			Msg: fmt.Sprintf("expected a whole number of %s from %d to %d, got %q", unitName, min, max, v)}
		loc.apply(e)
		return e
	}
	*dst = time.Duration(n) * unit
	return nil
}

// parseURL checks an absolute https URL (http only for loopback hosts when
// requireHTTPS is off).
func parseURL(v string, requireHTTPS bool, name string, loc *location) (string, error) {
	if v == "" {
		return "", nil
	}
	fail := func(msg string) (string, error) {
		e := &ConfigError{Setting: SettingPrefix + name, Msg: msg}
		loc.apply(e)
		return "", e
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fail("expected an absolute https:// URL without credentials or fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if requireHTTPS {
			return fail(`plain http is refused; use https (or, for tests only, set "oauth_jwt.require_https" to off with a loopback host)`)
		}
		if !isLoopback(u.Hostname()) {
			return fail("plain http is allowed only for loopback hosts")
		}
	default:
		return fail("expected an https:// URL")
	}
	return v, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// parseClaimPath accepts the simple subset of gjson path syntax: keys
// separated by dots, a literal dot (or other special character) escaped
// with a backslash, numeric components indexing arrays. Wildcards,
// queries, modifiers, pipes and multipaths are refused: the identity must
// come from one well-defined place in the token.
func parseClaimPath(v, name string, loc *location) (string, error) {
	fail := func(msg string) (string, error) {
		e := &ConfigError{Setting: SettingPrefix + name, Msg: msg}
		loc.apply(e)
		return "", e
	}
	if len(v) > 256 {
		return fail("claim path is longer than 256 bytes")
	}
	compLen := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch c {
		case '\\':
			if i+1 == len(v) {
				return fail("claim path ends with a lone backslash")
			}
			i++
			compLen++
		case '.':
			if compLen == 0 {
				return fail(fmt.Sprintf("claim path %q has an empty component", v))
			}
			compLen = 0
		case '*', '?', '#', '@', '|', '{', '}', '[', ']', '!':
			return fail(fmt.Sprintf("claim path %q uses %q, which is not supported; escape it with a backslash if it is part of a claim name", v, string(c)))
		default:
			if c < 0x20 {
				return fail("claim path contains a control character")
			}
			compLen++
		}
	}
	if compLen == 0 {
		return fail(fmt.Sprintf("claim path %q has an empty component", v))
	}
	return v, nil
}

// parseRoleMap parses "value=role, value=role": the last "=" of a pair
// separates the claim value from the role, so values may contain "=".
// A value may be repeated to map it to several roles.
func parseRoleMap(v, name string, loc *location) (map[string][]string, error) {
	if v == "" {
		return nil, nil
	}
	m := map[string][]string{}
	for _, pair := range strings.Split(v, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		i := strings.LastIndexByte(pair, '=')
		if i <= 0 || i == len(pair)-1 {
			e := &ConfigError{Setting: SettingPrefix + name,
				Msg: fmt.Sprintf("expected comma-separated value=role pairs, got %q", pair)}
			loc.apply(e)
			return nil, e
		}
		k, role := strings.TrimSpace(pair[:i]), strings.TrimSpace(pair[i+1:])
		if k == "" || role == "" {
			e := &ConfigError{Setting: SettingPrefix + name,
				Msg: fmt.Sprintf("expected comma-separated value=role pairs, got %q", pair)}
			loc.apply(e)
			return nil, e
		}
		if !slices.Contains(m[k], role) {
			m[k] = append(m[k], role)
		}
	}
	return m, nil
}

// errRoleClaimMapPair marks the one rule between two settings that
// CheckSetting, which sees one setting at a time, leaves to ParseSettings.
var errRoleClaimMapPair = errors.New("role_claim and role_map must be set together")

// CheckSetting checks the value of one setting (name with or without the
// "oauth_jwt." prefix) with the parser ParseSettings uses, as far as it
// can be judged alone: rules between settings (role_claim with role_map,
// jwks_uri needing https while require_https is on, http_timeout below
// authentication_timeout) and the contents of the files named are left to
// ParseSettings at login. The module's shim calls it from its GUC check
// hooks. Unknown names are not judged (nil).
func CheckSetting(name, value string) error {
	name = strings.TrimPrefix(name, SettingPrefix)
	switch {
	case slices.Contains(policyKeys, name):
		_, err := parsePolicy(nil, func(k string) (string, bool) {
			if k == name {
				return value, true
			}
			return "", false
		}, Policy{}, false, nil)
		if errors.Is(err, errRoleClaimMapPair) {
			return nil
		}
		return err
	case slices.Contains(serverKeys, name):
		c := &Config{DataDirectory: "/", AuthenticationTimeout: 24 * time.Hour}
		return c.parseServer(Settings{name: value})
	}
	return nil
}
