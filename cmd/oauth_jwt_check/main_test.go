package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/oauth-jwt/oauth_jwt/test/testidp"
	"github.com/oauth-jwt/oauth_jwt/validator"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

// goldenNow is the clock of every golden run; testidp mints with it too.
var goldenNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// result is the outcome of one run of the tool.
type result struct {
	code           int
	stdout, stderr string
}

// runTool runs the command line args with stdin, at goldenNow, as if
// standard output were not a terminal.
func runTool(tb testing.TB, stdin string, args ...string) result {
	tb.Helper()
	var out, errOut bytes.Buffer
	e := &env{
		ctx:        context.Background(),
		stdin:      strings.NewReader(stdin),
		stdout:     &out,
		stderr:     &errOut,
		getenv:     func(string) string { return "" },
		now:        func() time.Time { return goldenNow },
		isTerminal: func(any) bool { return false },
		tempDir:    tb.TempDir(),
	}
	code := run(e, args)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// normaliser replaces what changes from run to run (ports, kids, paths)
// with placeholders.
type normaliser [][2]string

func (n normaliser) apply(s string) string {
	// Longest first, so that an issuer is replaced before its host.
	sorted := slices.Clone(n)
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i][0]) > len(sorted[j][0]) })
	for _, r := range sorted {
		if r[0] != "" {
			s = strings.ReplaceAll(s, r[0], r[1])
		}
	}
	return s
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/oauth_jwt_check -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update to accept it):\n%s", path, diff(string(want), got))
	}
}

// diff shows the first differing lines.
func diff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\nwant: %q\n got: %q", i+1, w, g)
		}
	}
	return "(same lines)"
}

// world is the identity providers the golden cases use.
type world struct {
	idp  *testidp.IdP
	jwks *httptest.Server // a hand-made key set for key-type and weak-key cases
	odd  testidp.Key      // RSA key published without alg (kid "odd-rsa")
	weak testidp.Key      // 1024-bit RSA key (kid "weak-rsa")
	norm normaliser
}

var (
	worldOnce sync.Once
	theWorld  *world
	worldErr  error
)

// getWorld starts the shared identity providers once.
func getWorld(t *testing.T) *world {
	t.Helper()
	worldOnce.Do(func() {
		w := &world{}
		w.idp, worldErr = testidp.Start(testidp.Options{Realm: "/realms/test", Now: func() time.Time { return goldenNow }})
		if worldErr != nil {
			return
		}
		odd, err := testidp.NewKey(testidp.KeyTypeRSA)
		if err != nil {
			worldErr = err
			return
		}
		odd.KID = "odd-rsa"
		w.odd = odd
		wk, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			worldErr = err
			return
		}
		w.weak = testidp.Key{KID: "weak-rsa", Alg: jwa.RS256(), Signer: wk}
		set := map[string]any{"keys": []map[string]any{
			rsaJWK(odd.Signer.Public().(*rsa.PublicKey), "odd-rsa", ""),
			rsaJWK(&wk.PublicKey, "weak-rsa", "RS256"),
		}}
		body, _ := json.Marshal(set)
		w.jwks = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Content-Type", "application/json")
			_, _ = rw.Write(body)
		}))
		host := strings.TrimPrefix(w.idp.Issuer(), "http://")
		host = host[:strings.IndexByte(host, '/')]
		w.norm = normaliser{
			{w.idp.Issuer(), "<ISSUER>"},
			{host, "<IDP>"},
			{strings.TrimPrefix(w.jwks.URL, "http://"), "<JWKS-HOST>"},
			{w.idp.ActiveKID(), "<KID>"},
			{w.idp.EncKID(), "<ENC-KID>"},
		}
		theWorld = w
	})
	if worldErr != nil {
		t.Fatalf("starting the test identity provider: %v", worldErr)
	}
	return theWorld
}

func rsaJWK(pub *rsa.PublicKey, kid, alg string) map[string]any {
	m := map[string]any{
		"kty": "RSA", "kid": kid, "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
	if alg != "" {
		m["alg"] = alg
	}
	return m
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if theWorld != nil {
		theWorld.idp.Close()
		theWorld.jwks.Close()
	}
	os.Exit(code)
}

// tokenCase is one golden case of the token command.
type tokenCase struct {
	name  string
	token func(t *testing.T, w *world) string
	args  []string                            // besides --issuer and the base settings
	setup func(t *testing.T, w *world) func() // changes the IdP; returns the undo
	code  int
	// jsonOnly: the human output would wrap a path of variable length.
	jsonOnly bool
}

// mint returns a token function minting claims with opts.
func mint(claims map[string]any, opts ...testidp.MintOption) func(*testing.T, *world) string {
	return func(t *testing.T, w *world) string {
		t.Helper()
		tok, err := w.idp.Mint(claims, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

// std are the claims of a Keycloak-like access token for audience pg.
func std(extra map[string]any) map[string]any {
	c := map[string]any{"aud": []string{"pg", "account"}, "azp": "psql", "scope": "openid profile",
		"preferred_username": "alice", "groups": []string{"analysts"}}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func setMode(m testidp.Mode) func(*testing.T, *world) func() {
	return func(t *testing.T, w *world) func() {
		if err := w.idp.SetMode(m); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := w.idp.SetMode(testidp.ModeNormal); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// tokenCases cover every reason code of the module (and the decisions
// around it). Each runs with --issuer <ISSUER> --set audience=pg --set
// require_https=off unless its args say otherwise.
func tokenCases() []tokenCase {
	return []tokenCase{
		{name: "ok_pg_ident_map", token: mint(std(nil)), args: []string{"--map", "sso", "--role", "alice"}},
		{name: "ok_no_map_same_role", token: mint(std(nil)), args: []string{"--role", "test-user"}},
		{name: "ok_delegated_role_map", token: mint(std(nil)),
			args: []string{"--delegate", "--role", "reader", "--set", "role_claim=groups", "--set", "role_map=analysts=reader, dba=postgres"}},
		{name: "refused_no_map_other_role", token: mint(std(nil)), args: []string{"--role", "alice"}, code: 1},
		{name: "malformed", token: func(*testing.T, *world) string { return "not-a-jwt" }, code: 1},
		{name: "malformed_jwe", token: func(*testing.T, *world) string {
			return "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.ZW5jcnlwdGVka2V5.aXZpdml2aXY.Y2lwaGVydGV4dA.dGFndGFndGFn"
		}, code: 1},
		{name: "token_too_large", token: func(*testing.T, *world) string {
			return "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("A", validator.MaxTokenBytes) + ".c2ln"
		}, code: 1},
		{name: "alg_not_allowed_hs256", token: func(t *testing.T, w *world) string {
			tok, err := w.idp.MintHS256WithPublicKey(std(nil))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, code: 1},
		{name: "alg_not_allowed_none", token: func(t *testing.T, w *world) string {
			tok, err := w.idp.MintNone(std(nil))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, code: 1},
		{name: "crit_header", token: mint(std(nil), testidp.WithHeader("crit", []string{"exp"})), code: 1},
		{name: "untrusted_key_header", token: mint(std(nil), testidp.WithHeader("jku", "https://attacker.example/jwks")), code: 1},
		{name: "wrong_token_type", token: mint(std(map[string]any{"typ": "Refresh"})), code: 1},
		{name: "id_token", token: mint(std(map[string]any{"typ": "ID", "nonce": "n-0S6_WzA2Mj"})), code: 1},
		{name: "invalid_claim", token: mint(std(map[string]any{"exp": "tomorrow"})), code: 1},
		{name: "iss_mismatch_trailing_slash", token: func(t *testing.T, w *world) string {
			return mint(std(map[string]any{"iss": w.idp.Issuer() + "/"}))(t, w)
		}, code: 1},
		{name: "aud_mismatch", token: mint(std(map[string]any{"aud": "account"})), code: 1},
		{name: "missing_exp", token: mint(std(map[string]any{"exp": nil})), code: 1},
		{name: "expired", token: mint(std(map[string]any{"iat": goldenNow.Add(-612 * time.Second), "exp": goldenNow.Add(-312 * time.Second)})), code: 1},
		{name: "not_yet_valid", token: mint(std(map[string]any{"nbf": goldenNow.Add(10 * time.Minute)})), code: 1},
		{name: "iat_in_future", token: mint(std(map[string]any{"iat": goldenNow.Add(10 * time.Minute), "exp": goldenNow.Add(15 * time.Minute)})), code: 1},
		{name: "azp_not_allowed", token: mint(std(nil)), args: []string{"--set", "allowed_client_ids=etl web"}, code: 1},
		{name: "missing_scope", token: mint(std(nil)), args: []string{"--set", "required_scopes=db"}, code: 1},
		{name: "missing_scope_hba", token: mint(std(map[string]any{"scope": "openid pg:connect-admin"})), args: []string{"--scope", "openid pg:connect"}, code: 1},
		{name: "ok_hba_scope_not_enforced", token: mint(std(nil)), args: []string{"--scope", "openid pg:connect", "--set", "enforce_hba_scope=off", "--role", "test-user"}},
		{name: "lifetime_too_long", token: mint(std(map[string]any{"iat": goldenNow, "exp": goldenNow.Add(1e9 * time.Second)})), code: 1},
		{name: "invalid_claim_exp_out_of_range", token: mint(std(map[string]any{"exp": 1e30})), code: 1},
		{name: "keys_unavailable", token: mint(std(nil)), setup: setMode(testidp.ModeDown), code: 1},
		{name: "discovery_issuer_mismatch", token: mint(std(nil)), setup: setMode(testidp.ModeIssuerMismatch), code: 1},
		{name: "unknown_kid", token: mint(std(nil), testidp.WithKID("rotated-away")), code: 1},
		{name: "kid_not_signing_key", token: func(t *testing.T, w *world) string {
			enc, _ := w.idp.Key(w.idp.EncKID())
			return mint(std(nil), testidp.WithKey(enc))(t, w)
		}, code: 1},
		{name: "key_alg_mismatch", token: mint(std(nil), testidp.WithAlg(jwa.PS256())), code: 1},
		{name: "key_type_mismatch", token: func(t *testing.T, w *world) string {
			return mint(std(nil), testidp.WithKey(w.odd), testidp.WithHeader("alg", "ES256"))(t, w)
		}, args: []string{"--set", "jwks_uri=<JWKS>"}, code: 1},
		{name: "weak_key", token: func(t *testing.T, w *world) string {
			return mint(std(nil), testidp.WithKey(w.weak))(t, w)
		}, args: []string{"--set", "jwks_uri=<JWKS>"}, code: 1},
		{name: "bad_signature", token: func(t *testing.T, w *world) string {
			tok, err := w.idp.MintWithForeignKey(std(nil))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, code: 1},
		{name: "no_identity", token: mint(std(nil)), args: []string{"--set", "authn_id_claim=email"}, code: 1},
		{name: "privileged_role", token: mint(std(nil)),
			args: []string{"--delegate", "--role", "postgres", "--set", "role_claim=groups", "--set", "role_map=analysts=postgres", "--role-attributes", "SUPERUSER,CREATEROLE:admins"}, code: 1},
		{name: "ok_privileged_role_allowed", token: mint(std(nil)),
			args: []string{"--delegate", "--role", "postgres", "--set", "role_claim=groups", "--set", "role_map=analysts=postgres", "--role-attributes", "SUPERUSER", "--set", "allow_privileged_roles=on"}},
		{name: "invalid_identity", token: mint(std(map[string]any{"preferred_username": "alice\nLOG:  forged \u202egnp"})),
			args: []string{"--set", "authn_id_claim=preferred_username"}, code: 1},
		{name: "role_not_allowed", token: mint(std(nil)),
			args: []string{"--delegate", "--role", "postgres", "--set", "role_claim=groups", "--set", "role_map=dba=postgres", "--set", "client_role_map=etl=loader"}, code: 1},
		{name: "config_error", token: mint(std(nil)), args: []string{"--set", "allowed_algorithms=RS256,HS256"}, code: 1},
		{name: "aud_not_configured", token: mint(std(nil)), args: []string{"--set", "audience=", "--set", "issuer_config=<ISSUERS>"}, code: 1},
		{name: "insecure_cache", token: mint(std(nil)), args: []string{"--cache-dir", "<OPEN-DIR>"}, code: 2, jsonOnly: true},
		{name: "token_inactive", token: mint(std(nil)), args: introArgs, code: 1, jsonOnly: true,
			setup: introSetup(testidp.IntroNormal, map[string]any{"active": false})},
		{name: "introspection_failed", token: mint(std(nil)), args: introArgs, code: 1, jsonOnly: true,
			setup: introSetup(testidp.IntroError500, nil)},
		{name: "ok_introspection_active", token: mint(std(nil)), args: append([]string{"--role", "test-user"}, introArgs...), jsonOnly: true,
			setup: introSetup(testidp.IntroNormal, nil)},
	}
}

// introArgs turn on introspection = always against the world's IdP.
var introArgs = []string{"--set", "introspection=always", "--set", "introspection_client_id=pg-introspect",
	"--set", "introspection_secret_file=<SECRET>", "--set", "introspection_cache_ttl=0"}

// introSetup gives the IdP the introspection client, a fault mode and an
// answer override.
func introSetup(m testidp.IntroMode, over map[string]any) func(*testing.T, *world) func() {
	return func(t *testing.T, w *world) func() {
		w.idp.SetIntrospectionClient("pg-introspect", "golden secret")
		w.idp.SetIntrospectionMode(m)
		w.idp.SetIntrospectionOverride(over)
		return func() {
			w.idp.SetIntrospectionMode(testidp.IntroNormal)
			w.idp.SetIntrospectionOverride(nil)
		}
	}
}

// TestGoldenToken runs every case through the token command and compares
// the human and the JSON reports with testdata/token/<name>.{txt,json}.
func TestGoldenToken(t *testing.T) {
	w := getWorld(t)
	dir := t.TempDir()
	issuers := filepath.Join(dir, "issuers.conf")
	if err := os.WriteFile(issuers, []byte("[https://other.example.com]\naudience = other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "introspection.secret")
	if err := os.WriteFile(secret, []byte("golden secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	norm := append(slices.Clone(w.norm), [2]string{dir, "<TMP>"})
	subst := map[string]string{"<JWKS>": w.jwks.URL + "/jwks", "<ISSUERS>": issuers, "<OPEN-DIR>": open, "<SECRET>": secret}

	seen := map[validator.Reason]bool{}
	for _, tc := range tokenCases() {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token(t, w)
			if tc.setup != nil {
				undo := tc.setup(t, w)
				defer undo()
			}
			args := []string{"token", "--issuer", w.idp.Issuer(), "--set", "audience=pg", "--set", "require_https=off"}
			for _, a := range tc.args {
				for k, v := range subst {
					a = strings.ReplaceAll(a, k, v)
				}
				args = append(args, a)
			}
			for _, asJSON := range []bool{false, true} {
				if !asJSON && tc.jsonOnly {
					continue
				}
				a := slices.Clone(args)
				ext := ".txt"
				if asJSON {
					a, ext = append(a, "--json"), ".json"
				}
				res := runTool(t, tok, a...)
				if res.code != tc.code {
					t.Fatalf("exit %d, want %d\nstderr: %s\nstdout: %s", res.code, tc.code, res.stderr, res.stdout)
				}
				assertNoToken(t, tok, res)
				out := norm.apply(res.stdout)
				golden(t, filepath.Join("token", tc.name+ext), out)
				if asJSON {
					var rep tokenReport
					if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
						t.Fatalf("--json output is not JSON: %v", err)
					}
					seen[validator.Reason(rep.Reason)] = true
					if rep.Accepted != (tc.code == 0) {
						t.Errorf("accepted = %v with exit %d", rep.Accepted, tc.code)
					}
				}
			}
		})
	}
	// Every reason code has a golden case.
	for _, r := range validator.Reasons() {
		if r != validator.ReasonInternal && !seen[r] {
			t.Errorf("no golden case gives reason %s", r)
		}
	}
}

// assertNoToken fails when the output shows the token or a segment of it.
func assertNoToken(tb testing.TB, tok string, res result) {
	tb.Helper()
	for i, seg := range append(strings.Split(tok, "."), tok) {
		if len(seg) < 8 {
			continue
		}
		if i == 0 && strings.HasPrefix(tok, "eyJhbGciOiJSU0EtT0FFUCIs") {
			continue // the hand-written JWE header is also the decoded header's text
		}
		if strings.Contains(res.stdout, seg) || strings.Contains(res.stderr, seg) {
			tb.Errorf("the output contains token segment %d", i)
		}
	}
}

// TestGoldenIssuer checks the issuer command against the test identity
// provider in its normal and broken modes.
func TestGoldenIssuer(t *testing.T) {
	w := getWorld(t)
	cases := []struct {
		name string
		mode testidp.Mode
		args []string
		code int
	}{
		{name: "ok", args: []string{"--allow-http-loopback"}},
		{name: "issuer_trailing_slash_mismatch", mode: testidp.ModeIssuerMismatch, args: []string{"--allow-http-loopback"}, code: 1},
		{name: "issuer_given_with_slash", args: []string{"--allow-http-loopback", "<ISSUER>/"}, code: 1},
		{name: "garbage", mode: testidp.ModeGarbage, args: []string{"--allow-http-loopback"}, code: 1},
		{name: "down", mode: testidp.ModeDown, args: []string{"--allow-http-loopback"}, code: 1},
		{name: "http_refused", code: 1},
		{name: "jwks_uri_setting", args: []string{"--allow-http-loopback", "--jwks-uri", "<JWKS>"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mode != testidp.ModeNormal {
				undo := setMode(tc.mode)(t, w)
				defer undo()
			}
			args := []string{"issuer"}
			gotURL := false
			for _, a := range tc.args {
				if strings.HasPrefix(a, "<ISSUER>") {
					gotURL = true
				}
				a = strings.ReplaceAll(a, "<ISSUER>", w.idp.Issuer())
				a = strings.ReplaceAll(a, "<JWKS>", w.jwks.URL+"/jwks")
				args = append(args, a)
			}
			if !gotURL {
				args = append(args, w.idp.Issuer())
			}
			for _, ext := range []string{".txt", ".json"} {
				a := slices.Clone(args)
				if ext == ".json" {
					a = append(a, "--json")
				}
				res := runTool(t, "", a...)
				if res.code != tc.code {
					t.Fatalf("exit %d, want %d\nstderr: %s\nstdout: %s", res.code, tc.code, res.stderr, res.stdout)
				}
				golden(t, filepath.Join("issuer", tc.name+ext), w.norm.apply(res.stdout))
			}
		})
	}
}
