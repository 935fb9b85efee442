package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
)

// Database roles of the scenarios. Delegated mode maps Keycloak groups onto them
// (alice: group dba, bob: group analysts, carol: no group) and the pg-service client
// onto roleWriter.
const (
	roleAdmin  = "pgadmin"
	roleReader = "reader"
	roleWriter = "app_writer"
)

// The delegated-mode policy of the scenarios.
var delegatedConf = map[string]string{
	"oauth_jwt.role_claim":      "'groups'",
	"oauth_jwt.role_map":        "'dba=pgadmin, dba=reader, analysts=reader'",
	"oauth_jwt.client_role_map": "'pg-service=app_writer'",
}

// issuer is the pinned issuer of realm postgres: the exact iss of its tokens.
func issuer() string { return kc.Issuer(keycloak.Realm) }

// hbaDelegated is a pg_hba line for TCP oauth logins in delegated mode.
func hbaDelegated(iss string) string {
	return fmt.Sprintf(`host all all 127.0.0.1/32 oauth issuer="%s" scope="openid" delegate_ident_mapping=1`, iss)
}

// hbaMap is a pg_hba line for TCP oauth logins in pg_ident mode with map m.
func hbaMap(iss, m string) string {
	return fmt.Sprintf(`host all all 127.0.0.1/32 oauth issuer="%s" scope="openid" map=%s`, iss, m)
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ---------------------------------------------------------------------------------------
// Tokens. Every token the suite obtains is remembered, and every cluster's whole server
// log is checked against all of them when its test ends.

var (
	seenMu sync.Mutex
	seen   []string
)

// remember records tokens (empty strings ignored) and returns the first.
func remember(toks ...string) string {
	seenMu.Lock()
	defer seenMu.Unlock()
	for _, t := range toks {
		if t != "" {
			seen = append(seen, t)
		}
	}
	if len(toks) == 0 {
		return ""
	}
	return toks[0]
}

func seenTokens() []string {
	seenMu.Lock()
	defer seenMu.Unlock()
	return append([]string(nil), seen...)
}

// jwtRE finds compact JWS/JWT strings (base64url of `{"` starts with "eyJ").
var jwtRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*`)

// looseJWTRE finds anything that looks like the start of a base64url JSON segment.
var looseJWTRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{16,}`)

// tokenLeaks reports which segments of which known tokens (and which JWT-looking strings)
// occur in s; empty when none.
func tokenLeaks(s string, toks []string) []string {
	var leaks []string
	for i, tok := range toks {
		for j, seg := range strings.Split(tok, ".") {
			if len(seg) >= 8 && strings.Contains(s, seg) {
				leaks = append(leaks, fmt.Sprintf("segment %d of token #%d", j, i))
			}
		}
	}
	if m := looseJWTRE.FindAllString(s, 3); len(m) > 0 {
		leaks = append(leaks, fmt.Sprintf("%d base64url JSON-looking string(s)", len(m)))
	}
	return leaks
}

// scrub removes token material from text before a test prints it.
func scrub(s string) string {
	s = jwtRE.ReplaceAllString(s, "[token]")
	s = looseJWTRE.ReplaceAllString(s, "[token?]")
	for _, tok := range seenTokens() {
		for _, seg := range strings.Split(tok, ".") {
			if len(seg) >= 8 {
				s = strings.ReplaceAll(s, seg, "[segment]")
			}
		}
	}
	return s
}

func assertNoToken(t testing.TB, log string, toks ...string) {
	t.Helper()
	if leaks := tokenLeaks(log, toks); len(leaks) > 0 {
		t.Errorf("token material reached the server log: %s", strings.Join(leaks, ", "))
	}
}

func deviceGrant(t testing.TB, realm, client, user string) *keycloak.TokenResponse {
	t.Helper()
	tr, err := keycloak.DeviceGrant(ctxT(t, 2*time.Minute), kc.Issuer(realm), client, user, keycloak.Passwords[user])
	if err != nil {
		t.Fatalf("device flow %s/%s as %s: %v\nKeycloak log tail:\n%s", realm, client, user, err, kc.LogTail(15))
	}
	remember(tr.AccessToken, tr.IDToken, tr.RefreshToken)
	return tr
}

// userToken is an access token of realm postgres, client psql (device flow), for user.
func userToken(t testing.TB, user string) string {
	t.Helper()
	return deviceGrant(t, keycloak.Realm, keycloak.DeviceClient, user).AccessToken
}

// serviceToken is a client-credentials access token of pg-service.
func serviceToken(t testing.TB) string {
	t.Helper()
	tok, err := keycloak.ClientCredentialsToken(ctxT(t, time.Minute), issuer(), keycloak.ServiceClient, keycloak.ServiceSecret)
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	return remember(tok)
}

// passwordToken is a password-grant access token of realm postgres (clients no-audience
// and short-lived allow it).
func passwordToken(t testing.TB, client, user string) *keycloak.TokenResponse {
	t.Helper()
	tr, err := keycloak.PasswordGrant(ctxT(t, time.Minute), issuer(), client, user, keycloak.Passwords[user])
	if err != nil {
		t.Fatal(err)
	}
	remember(tr.AccessToken, tr.IDToken, tr.RefreshToken)
	return tr
}

func claims(t testing.TB, tok string) (header, claims map[string]any) {
	t.Helper()
	h, c, err := keycloak.DecodeJWT(tok)
	if err != nil {
		t.Fatalf("decoding a token: %v", err)
	}
	return h, c
}

// ---------------------------------------------------------------------------------------
// Clusters.

// env is a PostgreSQL 18 cluster with oauth_jwt trusting the package's Keycloak.
type env struct {
	*pgtest.Cluster
	conf map[string]string
}

// baseConf: what every scenario shares. Keycloak is plain http on loopback.
func baseConf() map[string]string {
	return map[string]string{
		"oauth_jwt.audience":           quote(keycloak.Audience),
		"oauth_jwt.require_https":      "off",
		"oauth_jwt.allowed_client_ids": "'psql, pg-service, short-lived'",
		"oauth_jwt.authn_id_claim":     "'preferred_username'",
		"oauth_jwt.log_accepted":       "on", // accepted logins are logged too: more text that must hold no token
	}
}

// newEnv starts a cluster with baseConf + conf, the pg_hba lines hba (after the local
// trust line for the test's own connections), and login roles. When the test ends, its
// whole server log is checked for token material.
func newEnv(t *testing.T, conf map[string]string, hba []string, roles ...string) *env {
	t.Helper()
	c := pgtest.New(t, pgtest.Options{})
	e := &env{Cluster: c, conf: baseConf()}
	// Registered after pgtest's own cleanup, so it runs first (while the log exists).
	t.Cleanup(func() {
		if leaks := tokenLeaks(c.Log(), seenTokens()); len(leaks) > 0 {
			t.Errorf("token material in the server log %s: %s", c.LogPath, strings.Join(leaks, ", "))
		}
	})
	e.setConf(conf)
	c.SetHBA(hba...)
	for _, r := range roles {
		c.Exec(fmt.Sprintf("create role %s login", r))
	}
	return e
}

// setConf changes oauth_jwt settings (merged into the current ones; "" removes one) and
// reloads.
func (e *env) setConf(kv map[string]string) {
	for k, v := range kv {
		if v == "" {
			delete(e.conf, k)
		} else {
			e.conf[k] = v
		}
	}
	e.SetConf(e.conf)
}

// writeIdent replaces pg_ident.conf; the caller's SetHBA (or a Reload) applies it.
func (e *env) writeIdent(t *testing.T, lines ...string) {
	t.Helper()
	path := filepath.Join(e.Data, "pg_ident.conf")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", pgtest.ServerUser+":", path).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
}

// login connects as role with tok through pgx (OAUTHBEARER) and returns current_user and
// system_user; it fails the test when the login is refused.
func (e *env) login(t *testing.T, role, tok string) (currentUser, systemUser string) {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	mark := e.LogMark()
	conn, err := e.ConnectOAuth(ctx, role, tok)
	if err != nil {
		t.Fatalf("login as %s refused: %v\nserver log:\n%s", role, err, scrub(e.LogSince(mark)))
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, "select current_user::text, system_user").Scan(&currentUser, &systemUser); err != nil {
		t.Fatal(err)
	}
	assertNoToken(t, e.LogSince(mark), tok)
	return currentUser, systemUser
}

// loginAs is login asserting the role and identity.
func (e *env) loginAs(t *testing.T, role, tok, wantSystemUser string) string {
	t.Helper()
	mark := e.LogMark()
	cu, su := e.login(t, role, tok)
	if cu != role || su != wantSystemUser {
		t.Errorf("current_user, system_user = %q, %q; want %q, %q", cu, su, role, wantSystemUser)
	}
	return e.LogSince(mark)
}

// refused expects the login as role with tok to be refused by oauth_jwt with reason.
func (e *env) refused(t *testing.T, role, tok, reason string) string {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	mark := e.LogMark()
	conn, err := e.ConnectOAuth(ctx, role, tok)
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("login as %s accepted; want a refusal with reason %s\nserver log:\n%s", role, reason, scrub(e.LogSince(mark)))
	}
	log := e.waitLog(t, mark, `OAuth bearer authentication failed for user "`+role+`"`)
	if !e.RefusalLogged(log, reason) {
		t.Errorf("server log lacks reason %q (logged once, as PostgreSQL %d logs it):\n%s", reason, e.Major, scrub(log))
	}
	assertNoToken(t, log, tok)
	// The troubleshooting tool must explain the same refusal.
	e.compareTool(t, role, tok, reason)
	return log
}

// identRefused expects oauth_jwt to accept the token and PostgreSQL's pg_ident map to
// refuse the login, logging want.
func (e *env) identRefused(t *testing.T, role, tok, want string) string {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	mark := e.LogMark()
	conn, err := e.ConnectOAuth(ctx, role, tok)
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("login as %s accepted; want a pg_ident refusal", role)
	}
	log := e.waitLog(t, mark, want)
	if strings.Contains(log, "bearer token rejected") {
		t.Errorf("oauth_jwt rejected the token; want it accepted and the map to refuse:\n%s", scrub(log))
	}
	assertNoToken(t, log, tok)
	return log
}

// waitLog is pgtest's WaitLog printing a scrubbed log on failure.
func (e *env) waitLog(t *testing.T, mark int64, want string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := e.LogSince(mark)
		if strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("server log does not contain %q; log since mark:\n%s", want, scrub(s))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
