package validator

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Settings the shim passes for a login on a pg_hba line with options
// (PostgreSQL 19): the line's options as hba.<key>, and where the line is.
func lineSettings(base Settings, issuer string, opts map[string]string) Settings {
	s := Settings{}
	for k, v := range base {
		s[k] = v
	}
	for k, v := range opts {
		s[LineSettingPrefix+k] = v
	}
	s["server.hba_file"] = "/data/pg_hba.conf"
	s["server.hba_line"] = "7"
	s["server.hba_issuer"] = issuer
	return s
}

func TestLineOptionErrors(t *testing.T) {
	const iss = "https://idp.example.com/realms/a"
	cases := []struct {
		name    string
		global  Settings
		opts    map[string]string
		setting string
		msg     string
	}{
		{name: "bad leeway", global: Settings{"audience": "db"}, opts: map[string]string{"leeway": "soon"}, setting: "validator.leeway", msg: "from 0 to 300"},
		{name: "HS256 on the line", global: Settings{"audience": "db"}, opts: map[string]string{"allowed_algorithms": "HS256"}, setting: "validator.allowed_algorithms", msg: "symmetric"},
		{name: "bad boolean", global: Settings{"audience": "db"}, opts: map[string]string{"role_from_identity": "perhaps"}, setting: "validator.role_from_identity"},
		{name: "role_claim without role_map", global: Settings{"audience": "db"}, opts: map[string]string{"role_claim": "groups"}, setting: "validator.role_map"},
		{name: "empty audience on the line", global: Settings{"audience": "db"}, opts: map[string]string{"audience": " "}, setting: "validator.audience"},
		{name: "server-wide key", global: Settings{"audience": "db"}, opts: map[string]string{"cache_dir": "/tmp"}, setting: "validator.cache_dir", msg: "cannot be set on a pg_hba line"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSettings(lineSettings(tc.global, iss, tc.opts))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			if ce.Setting != tc.setting {
				t.Errorf("Setting = %q, want %q", ce.Setting, tc.setting)
			}
			if !strings.HasPrefix(err.Error(), "/data/pg_hba.conf:7: ") {
				t.Errorf("error does not name the pg_hba line: %v", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q lacks %q", err, tc.msg)
			}
		})
	}
}

// The pg_hba line wins over the issuer_config section, which wins over the
// global settings; what the line does not set comes from the next level.
func TestLinePrecedence(t *testing.T) {
	const iss, other = "https://idp.example.com/realms/a", "https://idp.example.com/realms/b"
	dir := t.TempDir()
	conf := filepath.Join(dir, "issuers.conf")
	if err := os.WriteFile(conf, []byte("["+iss+"]\naudience = section-aud\nrequired_scopes = openid\nleeway = 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	global := Settings{"audience": "global-aud", "allowed_client_ids": "psql", "issuer_config": conf, "leeway": "20"}
	cases := []struct {
		name    string
		issuer  string
		opts    map[string]string
		aud     []string
		scopes  []string
		clients []string
		leewayS int
	}{
		{name: "no line options: section", issuer: iss, opts: nil, aud: []string{"section-aud"}, scopes: []string{"openid"}, clients: []string{"psql"}, leewayS: 10},
		{name: "line audience over section", issuer: iss, opts: map[string]string{"audience": "admin-aud"}, aud: []string{"admin-aud"}, scopes: []string{"openid"}, clients: []string{"psql"}, leewayS: 10},
		{name: "line over global for an issuer without section", issuer: other, opts: map[string]string{"audience": "b-aud", "allowed_client_ids": "svc"}, aud: []string{"b-aud"}, clients: []string{"svc"}, leewayS: 20},
		{name: "line leeway over section", issuer: iss, opts: map[string]string{"leeway": "0"}, aud: []string{"section-aud"}, scopes: []string{"openid"}, clients: []string{"psql"}, leewayS: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := global
			if tc.opts != nil {
				s = lineSettings(global, tc.issuer, tc.opts)
			}
			c, err := ParseSettings(s)
			if err != nil {
				t.Fatal(err)
			}
			p := c.PolicyFor(tc.issuer)
			if !reflect.DeepEqual(p.Audiences, tc.aud) || !reflect.DeepEqual(p.RequiredScopes, tc.scopes) ||
				!reflect.DeepEqual(p.AllowedClientIDs, tc.clients) || int(p.Leeway.Seconds()) != tc.leewayS {
				t.Errorf("policy: aud %v scopes %v clients %v leeway %v; want %v %v %v %ds",
					p.Audiences, p.RequiredScopes, p.AllowedClientIDs, p.Leeway, tc.aud, tc.scopes, tc.clients, tc.leewayS)
			}
		})
	}
	// The line's policy is for its own issuer only.
	c, err := ParseSettings(lineSettings(global, iss, map[string]string{"audience": "admin-aud"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.PolicyFor(other).Audiences; !reflect.DeepEqual(got, []string{"global-aud"}) {
		t.Errorf("another issuer got the line's audience: %v", got)
	}
}

// With no global audience and no issuer_config, a line that sets the
// audience makes a working verifier for its issuer; without it, the
// configuration error stays.
func TestLineAudienceWithoutGlobal(t *testing.T) {
	const iss = "https://idp.example.com/realms/a"
	if _, err := New(lineSettings(Settings{}, iss, map[string]string{"leeway": "10"})); err == nil {
		t.Fatal("New accepted a configuration with no audience anywhere")
	}
	v, err := New(lineSettings(Settings{"cache_dir": t.TempDir()}, iss, map[string]string{"audience": "line-aud"}))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if got := v.Config().PolicyFor(iss).Audiences; !reflect.DeepEqual(got, []string{"line-aud"}) {
		t.Errorf("audiences = %v, want [line-aud]", got)
	}
}

// The keys a line may set are exactly the issuer_config keys.
func TestPolicyKeysAreTheSectionKeys(t *testing.T) {
	keys := PolicyKeys()
	if !reflect.DeepEqual(keys, policyKeys) {
		t.Fatalf("PolicyKeys() = %v, want %v", keys, policyKeys)
	}
	keys[0] = "changed"
	if policyKeys[0] == "changed" {
		t.Error("PolicyKeys returned the package's own slice")
	}
	for _, k := range policyKeys {
		for _, r := range k {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				t.Errorf("key %q cannot be a pg_hba option name ([A-Za-z0-9_-])", k)
			}
		}
	}
}
