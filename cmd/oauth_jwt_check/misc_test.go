package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/validator"
)

// TestRefusesTokenArgument: a token on the command line is refused in
// every position, and never echoed.
func TestRefusesTokenArgument(t *testing.T) {
	w := getWorld(t)
	tok, err := w.idp.Mint(std(nil))
	if err != nil {
		t.Fatal(err)
	}
	iss := w.idp.Issuer()
	cases := map[string][]string{
		"positional":         {"token", "--issuer", iss, "--set", "audience=pg", tok},
		"positional first":   {"token", tok, "--issuer", iss},
		"after --":           {"token", "--issuer", iss, "--", tok},
		"--token flag":       {"token", "--issuer", iss, "--token", tok},
		"--token= flag":      {"token", "--issuer", iss, "--token=" + tok},
		"instead of command": {tok},
		"bearer":             {"token", "--issuer", iss, "Bearer " + tok},
		"two arguments":      {"token", "--issuer", iss, "file", tok},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			res := runTool(t, "", args...)
			if res.code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %s", res.code, exitUsage, res.stderr)
			}
			if !strings.Contains(res.stderr, "refusing a token given on the command line") {
				t.Errorf("stderr does not explain: %s", res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("stdout not empty: %s", res.stdout)
			}
			assertNoToken(t, tok, res)
		})
	}
}

// TestTokenSources: the token is read from a file or standard input, bare,
// after "Bearer ", or as the access_token of a token endpoint response.
func TestTokenSources(t *testing.T) {
	w := getWorld(t)
	tok, err := w.idp.Mint(std(nil))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "access.token.json") // a name with dots is not a token
	resp := fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer","expires_in":300,"refresh_token":"r.e.f"}`, tok)
	if err := os.WriteFile(file, []byte(resp), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"token", "--issuer", w.idp.Issuer(), "--set", "audience=pg", "--set", "require_https=off", "--role", "test-user"}
	for name, c := range map[string]struct {
		stdin string
		args  []string
		note  string
	}{
		"stdin":            {stdin: tok + "\n"},
		"stdin bearer":     {stdin: "  Bearer " + tok + "\r\n", note: "Bearer"},
		"file response":    {args: []string{file}, note: "access_token of the token endpoint response"},
		"dash is stdin":    {stdin: tok, args: []string{"-"}},
		"flags after file": {args: []string{file, "--json"}},
	} {
		t.Run(name, func(t *testing.T) {
			res := runTool(t, c.stdin, append(append([]string{}, base...), c.args...)...)
			if res.code != exitOK {
				t.Fatalf("exit %d; stderr %s\n%s", res.code, res.stderr, res.stdout)
			}
			if !strings.Contains(res.stdout, c.note) {
				t.Errorf("output lacks %q", c.note)
			}
			assertNoToken(t, tok, res)
		})
	}
	for name, c := range map[string]struct {
		stdin string
		args  []string
		want  string
	}{
		"empty":          {stdin: "\n", want: "no token in standard input"},
		"missing file":   {args: []string{filepath.Join(dir, "nope")}, want: "no such file"},
		"json no token":  {stdin: `{"error":"invalid_grant"}`, want: "without an access_token"},
		"no issuer":      {args: []string{"--issuer", ""}, want: "give the pg_hba.conf line"},
		"delegate role":  {args: []string{"--delegate", "--role", ""}, want: "give it with --role"},
		"bad set":        {args: []string{"--set", "leeway"}, want: "expected name=value"},
		"unknown set":    {args: []string{"--set", "nope=1"}, want: "unknown setting"},
		"out of range":   {args: []string{"--set", "leeway=10min"}, want: "outside the valid range (0 .. 300)"},
		"bad unit":       {args: []string{"--set", "http_timeout=5 sec"}, want: "invalid unit"},
		"bad --now":      {args: []string{"--now", "yesterday"}, want: "--now"},
		"hba and issuer": {args: []string{"--hba", file}, want: "either --hba or --issuer"},
	} {
		t.Run(name, func(t *testing.T) {
			res := runTool(t, c.stdin, append(append([]string{}, base...), c.args...)...)
			if res.code != exitUsage || !strings.Contains(res.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", res.code, res.stderr, c.want)
			}
		})
	}
}

func TestConvertUnits(t *testing.T) {
	for _, c := range []struct {
		name, raw, want string
	}{
		{"leeway", "30", "30"},
		{"leeway", "30s", "30"},
		{"leeway", "1min", "60"},
		{"leeway", "1500ms", "2"}, // rounded as rint() does
		{"leeway", "2500 ms", "2"},
		{"http_timeout", "5s", "5000"},
		{"http_timeout", "2000ms", "2000"},
		{"http_timeout", "0.5min", "30000"},
		{"cache_max_stale", "1h", "3600"},
		{"cache_max_stale", "7d", "604800"},
		{"accept_id_tokens", "TRUE", "on"},
		{"accept_id_tokens", "of", "off"},
		{"require_https", "y", "on"},
		{"require_https", "0", "off"},
		{"audience", " api://pg ", " api://pg "},
		{"max_token_lifetime", "1d", "86400"},
		{"max_token_lifetime", "1min", "60"},
		{"enforce_hba_scope", "off", "off"},
	} {
		got, err := convert(gucs[c.name], c.raw)
		if err != nil || got != c.want {
			t.Errorf("%s = %q: got %q, %v; want %q", c.name, c.raw, got, err, c.want)
		}
	}
	for _, c := range []struct{ name, raw string }{
		{"leeway", "301"}, {"leeway", "-1"}, {"leeway", "5m"}, {"leeway", "five"},
		{"http_timeout", "50ms"}, {"accept_id_tokens", "o"}, {"accept_id_tokens", "maybe"},
		{"max_token_lifetime", "30s"}, {"max_token_lifetime", "366d"}, {"enforce_hba_scope", "maybe"},
	} {
		if got, err := convert(gucs[c.name], c.raw); err == nil {
			t.Errorf("%s = %q: got %q, want an error", c.name, c.raw, got)
		}
	}
}

func TestReadConf(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "postgresql.conf")
	text := `# comment
listen_addresses = '*'		# another module's
oauth_validator_libraries = 'oauth_jwt'
shared_preload_libraries = 'pg_stat_statements,oauth_jwt'
OAuth_JWT.Audience = 'api://pg, pg'   # names are case-insensitive
oauth_jwt.leeway 1min
oauth_jwt.http_timeout = '2500ms'
oauth_jwt.role_claim = groups
oauth_jwt.role_map = 'it''s=postgres, a\tb=reader'
oauth_jwt.require_https = off
oauth_jwt.unknown_thing = 1
include 'other.conf'
authentication_timeout = 20s
oauth_jwt.leeway = 45   # later lines win
`
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	auto := "oauth_jwt.allowed_client_ids = 'psql'\n"
	if err := os.WriteFile(filepath.Join(dir, "postgresql.auto.conf"), []byte(auto), 0o600); err != nil {
		t.Fatal(err)
	}
	st := newSettings()
	if err := st.loadConf(conf); err != nil {
		t.Fatal(err)
	}
	vs := st.validatorSettings()
	for k, want := range map[string]string{
		"audience": "api://pg, pg", "leeway": "45", "http_timeout": "2500", "role_map": "it's=postgres, a\tb=reader",
		"require_https": "off", "allowed_client_ids": "psql", factAuthTimeout: "20",
		"authn_id_claim": "sub", "kid_refetch_interval": "60", "allowed_algorithms": validator.DefaultAlgorithms,
	} {
		if vs[k] != want {
			t.Errorf("%s = %q, want %q", k, vs[k], want)
		}
	}
	notes := strings.Join(st.notes, "\n")
	for _, want := range []string{"unknown setting \"oauth_jwt.unknown_thing\"", "include \"other.conf\" is not followed", "refuses to be preloaded"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if _, err := validator.ParseSettings(vs); err != nil {
		t.Errorf("the settings read are not accepted: %v", err)
	}
	for _, bad := range []string{"oauth_jwt.audience = 'open", "= x", "oauth_jwt.leeway = 30 40", "oauth_jwt.leeway = 1000"} {
		if err := os.WriteFile(conf, []byte(bad+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := newSettings().loadConf(conf); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestReadHBA(t *testing.T) {
	dir := t.TempDir()
	hba := filepath.Join(dir, "pg_hba.conf")
	text := `# TYPE  DATABASE USER ADDRESS METHOD
local   all      all          peer
host    all      all  127.0.0.1 255.255.255.255 oauth issuer="https://sso.example.com/realms/corp" scope="openid db" map=sso
hostssl all      all  0.0.0.0/0 oauth issuer="https://sso.example.com/realms/corp/" \
        scope=openid delegate_ident_mapping=1   # continued
local   oauth    all          oauth issuer=https://local.example validator=other delegate_ident_mapping=true
host    admin    all  10.0.0.0/8 oauth issuer=https://sso.example.com/realms/corp scope=openid validator.audience=admin-db validator.role_map="dba=alice, ops=bob"
`
	if err := os.WriteFile(hba, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	lines, _, err := readHBA(hba)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 4 {
		t.Fatalf("lines = %+v", lines)
	}
	want := []hbaLine{
		{File: hba, Line: 3, Issuer: "https://sso.example.com/realms/corp", Scope: "openid db", Map: "sso"},
		{File: hba, Line: 4, Issuer: "https://sso.example.com/realms/corp/", Scope: "openid", Delegate: true},
		{File: hba, Line: 6, Issuer: "https://local.example", Validator: "other"},
		{File: hba, Line: 7, Issuer: "https://sso.example.com/realms/corp", Scope: "openid",
			Options: map[string]string{"audience": "admin-db", "role_map": "dba=alice, ops=bob"}},
	}
	for i := range want {
		if !reflect.DeepEqual(lines[i], want[i]) {
			t.Errorf("line %d = %+v, want %+v", i, lines[i], want[i])
		}
	}
	// The options reach the validator as the shim passes them on PostgreSQL 19.
	if got := lines[3].settings(); got["hba.audience"] != "admin-db" || got["server.hba_line"] != "7" || got["server.hba_issuer"] != "https://sso.example.com/realms/corp" {
		t.Errorf("settings() = %v", got)
	}
	if got := lines[0].settings(); got != nil {
		t.Errorf("a line without options gives settings %v", got)
	}
	if _, _, err := pickHBA(hba, 0); err == nil || !strings.Contains(err.Error(), "choose one with --hba-line") {
		t.Errorf("pickHBA without a line: %v", err)
	}
	if _, _, err := pickHBA(hba, 2); err == nil || !strings.Contains(err.Error(), "is not an oauth line") {
		t.Errorf("pickHBA of a peer line: %v", err)
	}
	if l, _, err := pickHBA(hba, 4); err != nil || !l.Delegate {
		t.Errorf("pickHBA(4) = %+v, %v", l, err)
	}
}

// TestConfigAndHBAFiles runs the token command from a postgresql.conf and
// a pg_hba.conf, as a DBA would on the server.
func TestConfigAndHBAFiles(t *testing.T) {
	w := getWorld(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "postgresql.conf")
	if err := os.WriteFile(conf, []byte("oauth_validator_libraries = oauth_jwt\noauth_jwt.audience = 'pg'\noauth_jwt.require_https = off\n"+
		"oauth_jwt.role_claim = 'groups'\noauth_jwt.role_map = 'analysts=reader'\noauth_jwt.leeway = '1min'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hba := filepath.Join(dir, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte(fmt.Sprintf("local all all peer\nhost all all ::1/128 oauth issuer=%q scope=openid delegate_ident_mapping=1\n", w.idp.Issuer())), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := w.idp.Mint(std(nil))
	if err != nil {
		t.Fatal(err)
	}
	res := runTool(t, tok, "token", "--config", conf, "--hba", hba, "--role", "reader", "--json")
	if res.code != exitOK {
		t.Fatalf("exit %d: %s\n%s", res.code, res.stderr, res.stdout)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	req := rep["request"].(map[string]any)
	if req["source"] != hba+":2" || req["delegate"] != true || rep["accepted"] != true || rep["authn_id"] != "test-user" {
		t.Errorf("report = %v", rep)
	}
	// The server's own cache is named, and not used.
	if notes := fmt.Sprint(rep["notes"]); !strings.Contains(notes, filepath.Join(dir, validator.CacheDirName)+" was not used") {
		t.Errorf("notes = %s", notes)
	}
	// Stable JSON field names.
	for _, k := range []string{"command", "accepted", "reason", "hint", "error", "authn_id", "ident", "request", "now",
		"settings", "cache_dir", "notes", "header", "claims", "segments", "signature_bytes", "checks", "keys", "server_log"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
	// Role refused by the mapping: exit 1.
	res = runTool(t, tok, "token", "--config", conf, "--hba", hba, "--role", "postgres")
	if res.code != exitRejected || !strings.Contains(res.stdout, "role_not_allowed") {
		t.Errorf("exit %d:\n%s", res.code, res.stdout)
	}
}

// TestConfigPolicySettings: the pg_hba scope read by --hba is enforced, and
// enforce_hba_scope and max_token_lifetime are read by --config as the server reads them.
func TestConfigPolicySettings(t *testing.T) {
	w := getWorld(t)
	dir := t.TempDir()
	hba := filepath.Join(dir, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte(fmt.Sprintf("host all all ::1/128 oauth issuer=%q scope=\"openid pg:connect\"\n", w.idp.Issuer())), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "oauth_jwt.audience = 'pg'\noauth_jwt.require_https = off\n"
	long := std(map[string]any{"iat": goldenNow.Unix(), "exp": goldenNow.Add(20 * time.Minute).Unix(), "scope": "openid pg:connect"})
	for _, tc := range []struct {
		name, conf string
		claims     map[string]any
		reason     string
	}{
		{"pg_hba scope missing", "", std(nil), "missing_scope"},
		{"lifetime over max_token_lifetime", "oauth_jwt.max_token_lifetime = '10min'\n", long, "lifetime_too_long"},
		{"pg_hba scope granted", "", std(map[string]any{"scope": "openid pg:connect"}), "ok"},
		{"enforce_hba_scope off", "oauth_jwt.enforce_hba_scope = off\n", std(nil), "ok"},
		{"lifetime within max_token_lifetime", "oauth_jwt.max_token_lifetime = '1h'\n", long, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := filepath.Join(t.TempDir(), "postgresql.conf")
			if err := os.WriteFile(conf, []byte(base+tc.conf), 0o600); err != nil {
				t.Fatal(err)
			}
			tok, err := w.idp.Mint(tc.claims)
			if err != nil {
				t.Fatal(err)
			}
			res := runTool(t, tok, "token", "--config", conf, "--hba", hba, "--role", "test-user", "--json")
			var rep tokenReport
			if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
				t.Fatalf("exit %d: %s\n%s", res.code, res.stderr, res.stdout)
			}
			if rep.Reason != tc.reason || (res.code == exitOK) != (tc.reason == "ok") {
				t.Errorf("reason %q (exit %d), want %q", rep.Reason, res.code, tc.reason)
			}
		})
	}
}

// TestColour: colour only on a terminal, and never with NO_COLOR.
func TestColour(t *testing.T) {
	w := getWorld(t)
	tok, err := w.idp.Mint(std(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tty     bool
		noColor string
		want    bool
	}{{true, "", true}, {true, "1", false}, {false, "", false}} {
		var out bytes.Buffer
		e := &env{ctx: context.Background(), stdin: strings.NewReader(tok), stdout: &out, stderr: &bytes.Buffer{},
			getenv: func(k string) string {
				if k == "NO_COLOR" {
					return c.noColor
				}
				return ""
			},
			now: func() time.Time { return goldenNow }, isTerminal: func(any) bool { return c.tty }, tempDir: t.TempDir()}
		run(e, []string{"token", "--issuer", w.idp.Issuer(), "--set", "audience=pg", "--set", "require_https=off"})
		if got := strings.Contains(out.String(), "\x1b["); got != c.want {
			t.Errorf("tty %v NO_COLOR %q: colour %v", c.tty, c.noColor, got)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"issuer"}, {"issuer", "a", "b"}, {"token", "--nope"}} {
		if res := runTool(t, "", args...); res.code != exitUsage {
			t.Errorf("%v: exit %d", args, res.code)
		}
	}
	for _, args := range [][]string{{"--help"}, {"token", "-h"}, {"issuer", "--help"}} {
		if res := runTool(t, "", args...); res.code != exitOK {
			t.Errorf("%v: exit %d", args, res.code)
		}
	}
}

func TestWrap(t *testing.T) {
	got := wrap("aaa bbb ccc dddddddddddddddddddddddddddd eee", 20)
	want := []string{"aaa bbb ccc", "dddddddddddddddddddddddddddd", "eee"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("wrap = %q", got)
	}
}

// TestTerminalSafe: what a token says cannot drive the terminal.
func TestTerminalSafe(t *testing.T) {
	w := getWorld(t)
	tok, err := w.idp.Mint(std(map[string]any{"sub": "evil\u009b2J\u202eadmin", "note": "\x1b[31mred", "aud": "x\u0085y"}))
	if err != nil {
		t.Fatal(err)
	}
	res := runTool(t, tok, "token", "--issuer", w.idp.Issuer(), "--set", "audience=pg", "--set", "require_https=off")
	for _, bad := range []string{"\u009b", "\u202e", "\u0085", "\x1b"} {
		if strings.Contains(res.stdout, bad) {
			t.Errorf("the text report contains %q", bad)
		}
	}
	if !strings.Contains(res.stdout, `evil\u009b2J\u202eadmin`) {
		t.Errorf("the escaped claim is not shown:\n%s", res.stdout)
	}
	if got := termSafe("ok\xff\u009b\n"); got != `ok\xff\u009b`+"\n" {
		t.Errorf("termSafe = %q", got)
	}
}
