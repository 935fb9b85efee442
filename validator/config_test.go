package validator

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name     string
		settings Settings
		setting  string // expected ConfigError.Setting
		msg      string // substring of the error text
	}{
		{name: "audience unset", settings: Settings{"audience": ""}, setting: "oauth_jwt.audience", msg: `"oauth_jwt.audience"`},
		{name: "audience only separators", settings: Settings{"audience": " , "}, setting: "oauth_jwt.audience"},
		{name: "HS256 in allowed_algorithms", settings: Settings{"allowed_algorithms": "RS256,HS256"}, setting: "oauth_jwt.allowed_algorithms", msg: "symmetric"},
		{name: "none in allowed_algorithms", settings: Settings{"allowed_algorithms": "none"}, setting: "oauth_jwt.allowed_algorithms", msg: `"none"`},
		{name: "unknown algorithm", settings: Settings{"allowed_algorithms": "RS1"}, setting: "oauth_jwt.allowed_algorithms", msg: "unsupported"},
		{name: "leeway 1000", settings: Settings{"leeway": "1000"}, setting: "oauth_jwt.leeway", msg: "from 0 to 300"},
		{name: "leeway negative", settings: Settings{"leeway": "-1"}, setting: "oauth_jwt.leeway"},
		{name: "leeway with unit", settings: Settings{"leeway": "30s"}, setting: "oauth_jwt.leeway"},
		{name: "bad boolean", settings: Settings{"accept_id_tokens": "maybe"}, setting: "oauth_jwt.accept_id_tokens"},
		{name: "jwks_uri over http", settings: Settings{"jwks_uri": "http://idp.example.com/jwks"}, setting: "oauth_jwt.jwks_uri", msg: "https"},
		{name: "jwks_uri http non-loopback with require_https off", settings: Settings{"require_https": "off", "jwks_uri": "http://idp.example.com/jwks"}, setting: "oauth_jwt.jwks_uri", msg: "loopback"},
		{name: "discovery_url not a URL", settings: Settings{"discovery_url": "idp.example.com"}, setting: "oauth_jwt.discovery_url"},
		{name: "discovery_url with credentials", settings: Settings{"discovery_url": "https://u:p@idp.example.com/x"}, setting: "oauth_jwt.discovery_url"},
		{name: "authn_id_claim wildcard", settings: Settings{"authn_id_claim": "su*"}, setting: "oauth_jwt.authn_id_claim"},
		{name: "authn_id_claim modifier", settings: Settings{"authn_id_claim": "@reverse"}, setting: "oauth_jwt.authn_id_claim"},
		{name: "authn_id_claim query", settings: Settings{"authn_id_claim": "groups.#(x)"}, setting: "oauth_jwt.authn_id_claim"},
		{name: "authn_id_claim empty component", settings: Settings{"authn_id_claim": "a..b"}, setting: "oauth_jwt.authn_id_claim"},
		{name: "authn_id_claim trailing backslash", settings: Settings{"authn_id_claim": `a\`}, setting: "oauth_jwt.authn_id_claim"},
		{name: "role_claim without role_map", settings: Settings{"role_claim": "groups"}, setting: "oauth_jwt.role_map"},
		{name: "role_map without role_claim", settings: Settings{"role_map": "a=b"}, setting: "oauth_jwt.role_map"},
		{name: "role_map without =", settings: Settings{"role_claim": "groups", "role_map": "dba"}, setting: "oauth_jwt.role_map"},
		{name: "role_map empty role", settings: Settings{"role_claim": "groups", "role_map": "dba="}, setting: "oauth_jwt.role_map"},
		{name: "client_role_map empty client", settings: Settings{"client_role_map": "=loader"}, setting: "oauth_jwt.client_role_map"},
		{name: "http_timeout zero", settings: Settings{"http_timeout": "0"}, setting: "oauth_jwt.http_timeout"},
		{name: "cache_refresh_interval junk", settings: Settings{"cache_refresh_interval": "5m"}, setting: "oauth_jwt.cache_refresh_interval"},
		{name: "cache_max_stale too large", settings: Settings{"cache_max_stale": "99999999"}, setting: "oauth_jwt.cache_max_stale"},
		{name: "kid_refetch_interval zero", settings: Settings{"kid_refetch_interval": "0"}, setting: "oauth_jwt.kid_refetch_interval"},
		{name: "http_proxy not a URL", settings: Settings{"http_proxy": "proxy:3128"}, setting: "oauth_jwt.http_proxy"},
		{name: "http_proxy with credentials", settings: Settings{"http_proxy": "http://user:secret@proxy.example.com:3128"}, setting: "oauth_jwt.http_proxy", msg: "must not carry credentials"},
		{name: "http_proxy with a user only", settings: Settings{"http_proxy": "socks5://user@proxy.example.com:1080"}, setting: "oauth_jwt.http_proxy", msg: "credentials"},
		{name: "http_timeout below 100 ms", settings: Settings{"http_timeout": "99"}, setting: "oauth_jwt.http_timeout"},
		{name: "cache_max_stale zero", settings: Settings{"cache_max_stale": "0"}, setting: "oauth_jwt.cache_max_stale"},
		{name: "cache_max_stale above 7 days", settings: Settings{"cache_max_stale": "604801"}, setting: "oauth_jwt.cache_max_stale"},
		{name: "allow_privileged_roles not a boolean", settings: Settings{"allow_privileged_roles": "sometimes"}, setting: "oauth_jwt.allow_privileged_roles"},
		{name: "relative cache_dir without data directory", settings: Settings{"server.data_directory": "", "cache_dir": "cache"}, setting: "oauth_jwt.cache_dir"},
		{name: "authentication_timeout junk", settings: Settings{"server.authentication_timeout": "1min"}, setting: "authentication_timeout"},
		{name: "jwks_file relative", settings: Settings{"jwks_file": "keys.json"}, setting: "oauth_jwt.jwks_file", msg: "absolute path"},
		{name: "jwks_file with jwks_uri", settings: Settings{"jwks_file": "/etc/keys.json", "jwks_uri": "https://idp.example.com/jwks"}, setting: "oauth_jwt.jwks_file", msg: `"oauth_jwt.jwks_uri"`},
		{name: "jwks_file with discovery_url", settings: Settings{"jwks_file": "/etc/keys.json", "discovery_url": "https://idp.example.com/d"}, setting: "oauth_jwt.jwks_file", msg: `"oauth_jwt.discovery_url"`},
		{name: "missing issuer_config file", settings: Settings{"issuer_config": "/nonexistent/issuers.conf"}, setting: "oauth_jwt.issuer_config"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := baseSettings()
			for k, v := range tc.settings {
				s[k] = v
			}
			v, err := New(s, WithKeySource(&memSource{}))
			if err == nil {
				t.Fatalf("New succeeded (%+v), want a config error", v.Config())
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *ConfigError", err, err)
			}
			if ce.Setting != tc.setting {
				t.Errorf("setting = %q, want %q (%v)", ce.Setting, tc.setting, err)
			}
			if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
			if msg := err.Error(); msg != strings.TrimRight(msg, ".") || msg[0] < 'a' || msg[0] > 'z' {
				t.Errorf("error %q is not a lowercase fragment without a final period", msg)
			}
		})
	}
}

func TestParseSettingsDefaults(t *testing.T) {
	c, err := ParseSettings(Settings{"audience": "pg", "server.data_directory": "/var/lib/pg/data", "unknown_thing": "x", "test.x": "y"})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Default
	want := Policy{
		Audiences:         []string{"pg"},
		AllowedAlgorithms: strings.Split(DefaultAlgorithms, ","),
		Leeway:            30 * time.Second,
		AuthnIDClaim:      "sub",
		EnforceHBAScope:   true,
		MaxTokenLifetime:  24 * time.Hour,
		Introspection:     IntrospectionOff,

		IntrospectionCacheTTL: 30 * time.Second,
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("default policy:\n got %+v\nwant %+v", p, want)
	}
	if c.CacheDir != "/var/lib/pg/data/oauth_jwt_cache" || c.CacheRefreshInterval != 300*time.Second ||
		c.CacheMaxStale != time.Hour || c.KIDRefetchInterval != time.Minute || c.HTTPTimeout != 5*time.Second ||
		!c.RequireHTTPS || c.HTTPProxy != "" || c.CAFile != "" || c.AuthenticationTimeout != time.Minute || len(c.Warnings) != 0 {
		t.Errorf("server settings: %+v", c)
	}
}

func TestParseSettingsValues(t *testing.T) {
	c, err := ParseSettings(Settings{
		"audience":               "pg, api://pg  other",
		"allowed_client_ids":     "psql,svc",
		"required_scopes":        "db",
		"allowed_algorithms":     "ES256 EdDSA",
		"leeway":                 "0",
		"accept_id_tokens":       "true",
		"jwks_uri":               "http://127.0.0.1:8080/jwks",
		"require_https":          "off",
		"authn_id_claim":         `https://example\.com/email`,
		"role_claim":             "realm_access.roles",
		"role_map":               "dba=postgres, dba=admin, a=b=reader",
		"client_role_map":        "etl=loader",
		"role_from_identity":     "on",
		"log_accepted":           "yes",
		"cache_dir":              "cache",
		"ca_file":                "/etc/ssl/idp.pem",
		"http_proxy":             "http://proxy.example.com:3128",
		"http_timeout":           "1500",
		"cache_refresh_interval": "60",
		"cache_max_stale":        "600",
		"kid_refetch_interval":   "10",
		"server.data_directory":  "/data",
	})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Default
	if !reflect.DeepEqual(p.Audiences, []string{"pg", "api://pg", "other"}) ||
		!reflect.DeepEqual(p.AllowedClientIDs, []string{"psql", "svc"}) ||
		!reflect.DeepEqual(p.AllowedAlgorithms, []string{"ES256", "EdDSA"}) ||
		p.Leeway != 0 || !p.AcceptIDTokens || !p.RoleFromIdentity || !p.LogAccepted ||
		p.JWKSURI != "http://127.0.0.1:8080/jwks" || p.AuthnIDClaim != `https://example\.com/email` ||
		!reflect.DeepEqual(p.RoleMap, map[string][]string{"dba": {"postgres", "admin"}, "a=b": {"reader"}}) ||
		!reflect.DeepEqual(p.ClientRoleMap, map[string][]string{"etl": {"loader"}}) {
		t.Errorf("policy: %+v", p)
	}
	if c.CacheDir != "/data/cache" || c.HTTPTimeout != 1500*time.Millisecond || c.RequireHTTPS ||
		c.CacheRefreshInterval != time.Minute || c.CacheMaxStale != 10*time.Minute || c.KIDRefetchInterval != 10*time.Second {
		t.Errorf("server settings: %+v", c)
	}
}

func TestHTTPTimeoutClampedBelowAuthenticationTimeout(t *testing.T) {
	for _, tc := range []struct {
		authTimeout, httpTimeout string
		want                     time.Duration
	}{
		{"10", "10000", 9 * time.Second},
		{"10", "60000", 9 * time.Second},
		{"1", "5000", 500 * time.Millisecond},
	} {
		s := baseSettings()
		s["server.authentication_timeout"], s["http_timeout"] = tc.authTimeout, tc.httpTimeout
		f := testFixture(t)
		v, err := New(s, WithKeySource(&memSource{set: f.set}), WithClock(testClock))
		if err != nil {
			t.Fatal(err)
		}
		if got := v.Config().HTTPTimeout; got != tc.want {
			t.Errorf("auth %s s, http %s ms: timeout %v, want %v", tc.authTimeout, tc.httpTimeout, got, tc.want)
		}
		// The warning goes out with the first validation only.
		res, _ := v.Validate(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer})
		if len(res.Logs) != 2 || res.Logs[0].Level != LevelWarning || !strings.Contains(res.Logs[0].Detail, "http_timeout") {
			t.Fatalf("logs %+v, want the clamp warning first", res.Logs)
		}
		res, _ = v.Validate(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer})
		if len(res.Logs) != 1 {
			t.Fatalf("second validation logs %+v, want only the verdict", res.Logs)
		}
	}
}

// writeIssuerConfig writes an issuer_config file with mode 0600.
func writeIssuerConfig(tb testing.TB, text string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "issuers.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

const otherIssuer = "https://login.example.org/tenant/v2.0"

func TestIssuerConfig(t *testing.T) {
	f := testFixture(t)
	path := writeIssuerConfig(t, `
# per-issuer overrides
[`+testIssuer+`]
audience = pg-kc
role_claim = groups
role_map = "dba=postgres"

; Entra-like issuer
[`+otherIssuer+`]
oauth_jwt.audience = api://pg
authn_id_claim = preferred_username
jwks_uri = https://login.example.org/keys
`)
	v := newTestVerifier(t, &memSource{set: f.set}, Settings{"issuer_config": path, "audience": "", "leeway": "5"})
	c := v.Config()
	kc := c.PolicyFor(testIssuer)
	if !reflect.DeepEqual(kc.Audiences, []string{"pg-kc"}) || kc.RoleClaim != "groups" || kc.Leeway != 5*time.Second {
		t.Errorf("keycloak policy %+v", kc)
	}
	ms := c.PolicyFor(otherIssuer)
	if ms.AuthnIDClaim != "preferred_username" || ms.JWKSURI != "https://login.example.org/keys" || ms.RoleClaim != "" {
		t.Errorf("other policy %+v", ms)
	}

	// The section's audience applies to its issuer.
	tk := f.rs256().c("aud", "pg-kc").build(t)
	res, err := v.Validate(context.Background(), Request{Token: tk, Issuer: testIssuer, Delegate: true, Role: "postgres"})
	if err != nil || !res.Authorized {
		t.Fatalf("got %+v, %v", res, err)
	}
	res, _ = v.Validate(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer})
	if res.Reason != ReasonAudMismatch {
		t.Fatalf("global audience leaked into the section: %q", res.Reason)
	}
	// A section matches only byte for byte.
	res, err = v.Validate(context.Background(), Request{Token: tk, Issuer: testIssuer + "/"})
	if err == nil || res.Reason != ReasonAudNotConfigured {
		t.Fatalf("issuer with trailing slash: got %q, %v; want aud_not_configured error", res.Reason, err)
	}
}

func TestIssuerConfigErrors(t *testing.T) {
	cases := []struct {
		name, text string
		line       int
		msg        string
	}{
		{"unknown key", "[https://a]\naudience = x\naudiance = y\n", 3, `unknown setting "audiance"`},
		{"server-wide key", "[https://a]\naudience = x\ncache_dir = /tmp\n", 3, "server-wide"},
		{"key before section", "audience = x\n", 1, "before the first"},
		{"duplicate section", "[https://a]\naudience = x\n[https://a]\naudience = y\n", 3, "duplicate section"},
		{"repeated key", "[https://a]\naudience = x\naudience = y\n", 3, "repeated"},
		{"no equals", "[https://a]\naudience\n", 2, `"name = value"`},
		{"bad header", "[https://a\n", 1, "section header"},
		{"empty issuer", "[ ]\n", 1, "empty issuer"},
		{"bad value", "[https://a]\naudience = x\nleeway = 1000\n", 3, "oauth_jwt.leeway"},
		{"HS256 in section", "[https://a]\naudience = x\nallowed_algorithms = HS256\n", 3, "symmetric"},
		{"section without audience", "[https://a]\nleeway = 10\n", 1, "oauth_jwt.audience"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeIssuerConfig(t, tc.text)
			s := baseSettings()
			s["audience"], s["issuer_config"] = "", path
			_, err := New(s, WithKeySource(&memSource{}))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v, want *ConfigError", err)
			}
			if ce.File != path || ce.Line != tc.line {
				t.Errorf("location %s:%d, want %s:%d", ce.File, ce.Line, path, tc.line)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), path+":") {
				t.Errorf("error %q should start with the file and contain %q", err, tc.msg)
			}
		})
	}
	t.Run("writable by others", func(t *testing.T) {
		path := writeIssuerConfig(t, "[https://a]\naudience = x\n")
		if err := os.Chmod(path, 0o666); err != nil {
			t.Fatal(err)
		}
		s := baseSettings()
		s["issuer_config"] = path
		_, err := New(s, WithKeySource(&memSource{}))
		if err == nil || !strings.Contains(err.Error(), "writable") {
			t.Fatalf("error %v, want a refusal of a world-writable file", err)
		}
	})
}

func TestNewFromConfigRechecks(t *testing.T) {
	c, err := ParseSettings(baseSettings())
	if err != nil {
		t.Fatal(err)
	}
	c.Default.AllowedAlgorithms = append(c.Default.AllowedAlgorithms, "HS256")
	if _, err := NewFromConfig(c, WithKeySource(&memSource{})); err == nil {
		t.Fatal("NewFromConfig accepted HS256")
	}
	c.Default.AllowedAlgorithms = []string{"RS256"}
	c.Default.Audiences = nil
	if _, err := NewFromConfig(c, WithKeySource(&memSource{})); err == nil {
		t.Fatal("NewFromConfig accepted an empty audience")
	}
}

func TestDefaultSourceNeedsCacheDir(t *testing.T) {
	_, err := New(Settings{"audience": "pg"})
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Setting != "oauth_jwt.cache_dir" {
		t.Fatalf("error %v, want a cache_dir config error", err)
	}
}

// CheckSetting judges one value alone, as the shim's GUC check hooks ask:
// what ParseSettings refuses about that value, never the rules between
// settings.
func TestCheckSetting(t *testing.T) {
	for _, tc := range []struct {
		name, setting, value, err string
	}{
		{name: "symmetric algorithm", setting: "allowed_algorithms", value: "RS256, HS256", err: "symmetric"},
		{name: "prefixed name", setting: "oauth_jwt.leeway", value: "301", err: "from 0 to 300"},
		{name: "claim path wildcard", setting: "role_claim", value: "groups.*", err: "not supported"},
		{name: "role map pair without role", setting: "role_map", value: "dba=", err: "value=role pairs"},
		{name: "client role map without client", setting: "client_role_map", value: "=loader", err: "value=role pairs"},
		{name: "jwks_uri not a URL", setting: "jwks_uri", value: "keys.json", err: "https://"},
		{name: "jwks_uri plain http elsewhere than loopback", setting: "jwks_uri", value: "http://idp.example.com/keys", err: "loopback"},
		{name: "boolean", setting: "allow_privileged_roles", value: "maybe", err: "boolean"},
		{name: "proxy credentials", setting: "http_proxy", value: "http://u:p@proxy:3128", err: "credentials"},
		{name: "cache_max_stale zero", setting: "cache_max_stale", value: "0", err: "from 1 to 604800"},
		{name: "http_timeout 50 ms", setting: "http_timeout", value: "50", err: "from 100 to 600000"},
		{name: "role_map alone is fine", setting: "role_map", value: "dba=reader"},
		{name: "role_claim alone is fine", setting: "role_claim", value: "groups"},
		{name: "jwks_uri http on loopback (require_https is judged at login)", setting: "jwks_uri", value: "http://127.0.0.1:8080/keys"},
		{name: "relative ca_file", setting: "ca_file", value: "idp-ca.pem"},
		{name: "empty audience (judged at login, with issuer_config)", setting: "audience", value: ""},
		{name: "http_timeout above authentication_timeout (clamped at login)", setting: "http_timeout", value: "600000"},
		{name: "unknown name", setting: "no_such_setting", value: "x"},
		{name: "proxy without credentials", setting: "http_proxy", value: "http://proxy.example.com:3128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSetting(tc.setting, tc.value)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("CheckSetting(%q, %q) = %v, want nil", tc.setting, tc.value, err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("CheckSetting(%q, %q) = %v, want a *ConfigError with %q", tc.setting, tc.value, err, tc.err)
			}
		})
	}
}

// allow_privileged_roles is a policy key: off by default, on for the one
// issuer whose section says so.
func TestAllowPrivilegedRolesPerIssuer(t *testing.T) {
	path := writeIssuerConfig(t, "[https://trusted]\nallow_privileged_roles = on\n\n[https://other]\naudience = other\n")
	c, err := ParseSettings(Settings{"audience": "pg", "issuer_config": path})
	if err != nil {
		t.Fatal(err)
	}
	for iss, want := range map[string]bool{"https://trusted": true, "https://other": false, "https://unlisted": false} {
		if got := c.PolicyFor(iss).AllowPrivilegedRoles; got != want {
			t.Errorf("issuer %s: AllowPrivilegedRoles %v, want %v", iss, got, want)
		}
	}
}
