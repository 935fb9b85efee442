package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// assertNoTokenInLog fails when any segment of tok (or the whole) is in log.
func assertNoTokenInLog(t testing.TB, log, tok string) {
	t.Helper()
	for _, seg := range strings.Split(tok, ".") {
		if len(seg) >= 8 && strings.Contains(log, seg) {
			t.Errorf("a token segment reached the server log")
			return
		}
	}
}

// refused connects and expects the login to be refused with reason logged.
func (e *idpEnv) refused(t *testing.T, role, tok, reason string) string {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	mark := e.PG.LogMark()
	conn, err := e.PG.ConnectOAuth(ctx, role, tok)
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("login as %s accepted; want refusal with reason %s", role, reason)
	}
	log := e.PG.WaitLog(mark, `OAuth bearer authentication failed for user "`+role+`"`)
	if !e.PG.RefusalLogged(log, reason) {
		t.Errorf("server log lacks reason %q (logged once, as PostgreSQL %d logs it):\n%s", reason, e.PG.Major, log)
	}
	assertNoTokenInLog(t, log, tok)
	return log
}

// Every family of reason code, through a real server and real connections:
// the client is refused, the log names the reason, the token never appears.
func TestRejectionReasonsThroughServer(t *testing.T) {
	e := newIdPEnv(t, "alice", "bob")
	e.PG.SetConf(baseConf(map[string]string{
		"oauth_jwt.role_from_identity": "on",
		"oauth_jwt.allowed_client_ids": "'psql, pg-service'",
		"oauth_jwt.required_scopes":    "'openid'",
		"log_min_messages":             "debug1",
	}))
	now := time.Now()
	foreign, err := testidp.NewKey(testidp.KeyTypeRSA)
	if err != nil {
		t.Fatal(err)
	}
	mint := func(over map[string]any, opts ...testidp.MintOption) string {
		return e.token(t, "alice", over, opts...)
	}
	must := func(tok string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	base := map[string]any{"sub": "alice", "aud": testAudience, "azp": "psql", "scope": "openid"}
	cases := []struct {
		name, role, token, reason string
	}{
		{"alg none", "alice", must(e.IdP.MintNone(base)), "alg_not_allowed"},
		{"HS256 keyed with the RSA public key", "alice", must(e.IdP.MintHS256WithPublicKey(base)), "alg_not_allowed"},
		{"foreign key under a published kid", "alice", must(e.IdP.MintWithForeignKey(base)), "bad_signature"},
		{"foreign key under its own kid", "alice", mint(nil, testidp.WithKey(foreign)), "unknown_kid"},
		{"kid of the encryption key", "alice", mint(nil, testidp.WithKID(e.IdP.EncKID())), "kid_not_signing_key"},
		{"header alg differs from the key's", "alice", mint(nil, testidp.WithAlg(jwa.PS256())), "key_alg_mismatch"},
		{"expired", "alice", mint(map[string]any{"exp": now.Add(-10 * time.Minute).Unix(), "iat": now.Add(-20 * time.Minute).Unix()}), "expired"},
		{"not yet valid", "alice", mint(map[string]any{"nbf": now.Add(10 * time.Minute).Unix()}), "not_yet_valid"},
		{"issued in the future", "alice", mint(map[string]any{"iat": now.Add(10 * time.Minute).Unix()}), "iat_in_future"},
		{"no exp", "alice", mint(map[string]any{"exp": nil}), "missing_exp"},
		{"other issuer", "alice", mint(map[string]any{"iss": "https://evil.example/realms/test"}), "iss_mismatch"},
		{"issuer with a trailing slash", "alice", mint(map[string]any{"iss": e.IdP.Issuer() + "/"}), "iss_mismatch"},
		{"wrong audience", "alice", mint(map[string]any{"aud": "account"}), "aud_mismatch"},
		{"wrong audience array", "alice", mint(map[string]any{"aud": []string{"account", "broker"}}), "aud_mismatch"},
		{"client not allowed", "alice", mint(map[string]any{"azp": "other-app"}), "azp_not_allowed"},
		{"missing scope", "alice", mint(map[string]any{"scope": "profile email"}), "missing_scope"},
		{"Keycloak ID token", "alice", mint(map[string]any{"typ": "ID"}), "id_token"},
		{"ID token with nonce", "alice", mint(map[string]any{"nonce": "n-0S6_WzA2Mj", "typ": nil}), "id_token"},
		{"ID token with at_hash", "alice", mint(map[string]any{"at_hash": "77QmUPtjPfzWtF2AnpK9RQ", "typ": nil}), "id_token"},
		{"jku header", "alice", mint(nil, testidp.WithHeader("jku", "https://evil.example/jwks")), "untrusted_key_header"},
		{"crit header", "alice", mint(nil, testidp.WithHeader("crit", []string{"exp"})), "crit_header"},
		{"not a JWT", "alice", "this-is-not-a-jwt", "malformed"},
		{"oversized", "alice", strings.Repeat("A", 40000) + "." + strings.Repeat("B", 10) + "." + strings.Repeat("C", 10), "token_too_large"},
		{"no identity claim", "alice", mint(map[string]any{"sub": nil}), "no_identity"},
		{"valid token, other role", "bob", mint(nil), "role_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log := e.refused(t, tc.role, tc.token, tc.reason)
			if tc.name == "issuer with a trailing slash" && !strings.Contains(log, "trailing slash") {
				t.Errorf("the log does not point out the trailing slash:\n%s", log)
			}
		})
	}
	t.Run("valid token accepted", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		mark := e.PG.LogMark()
		tok := mint(nil)
		conn := e.mustLogin(t, ctx, "alice", tok)
		var user string
		if err := conn.QueryRow(ctx, "select system_user").Scan(&user); err != nil || user != "oauth:alice" {
			t.Fatalf("system_user = %q, %v", user, err)
		}
		log := e.PG.WaitLog(mark, "Reason: ok.")
		assertNoTokenInLog(t, log, tok)
	})
}

// pg_ident mode: authn_id comes from the configured claim and pg_hba's map
// decides the role.
func TestPgIdentMode(t *testing.T) {
	e := newIdPEnv(t, "alice_db")
	writeIdent(t, e.PG, "oauthmap alice@example.com alice_db")
	e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.authn_id_claim": "email"}))
	e.PG.SetHBA(hbaOAuth(e.IdP.Issuer(), "map=oauthmap"))
	ctx := ctxT(t, 60*time.Second)

	conn := e.mustLogin(t, ctx, "alice_db", e.token(t, "u-1", map[string]any{"email": "alice@example.com"}))
	var cu, su string
	if err := conn.QueryRow(ctx, "select current_user, system_user").Scan(&cu, &su); err != nil {
		t.Fatal(err)
	}
	if cu != "alice_db" || su != "oauth:alice@example.com" {
		t.Errorf("current_user, system_user = %q, %q", cu, su)
	}

	mark := e.PG.LogMark()
	if c, err := e.PG.ConnectOAuth(ctx, "alice_db", e.token(t, "u-2", map[string]any{"email": "bob@example.com"})); err == nil {
		c.Close(ctx)
		t.Fatal("bob's token logged in as alice_db through the ident map")
	}
	e.PG.WaitLog(mark, `no match in usermap "oauthmap" for user "alice_db" authenticated as "bob@example.com"`)
}

func writeIdent(t *testing.T, c *pgtest.Cluster, lines ...string) {
	t.Helper()
	path := filepath.Join(c.Data, "pg_ident.conf")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chown(t, path) // the caller's SetHBA reloads
}

// Delegated mode: the token alone decides the role, from a groups claim
// mapping, a client mapping for machine tokens, or identity == role.
func TestDelegatedRoleMapping(t *testing.T) {
	e := newIdPEnv(t, "pgadmin", "reader", "app_writer", "carol")
	e.PG.SetConf(baseConf(map[string]string{
		"oauth_jwt.role_claim":         "groups",
		"oauth_jwt.role_map":           "'dba=pgadmin, dba=reader, analysts=reader'",
		"oauth_jwt.client_role_map":    "'pg-service=app_writer'",
		"oauth_jwt.role_from_identity": "on",
	}))
	alice := e.token(t, "alice", map[string]any{"groups": []string{"dba"}})
	bob := e.token(t, "bob", map[string]any{"groups": []string{"analysts"}})
	svc := e.token(t, "service-account-pg-service", map[string]any{"azp": "pg-service", "groups": nil})
	carol := e.token(t, "carol", nil)
	ctx := ctxT(t, 60*time.Second)
	for _, ok := range []struct{ role, tok string }{
		{"pgadmin", alice}, {"reader", alice}, {"reader", bob}, {"app_writer", svc}, {"carol", carol},
	} {
		conn := e.mustLogin(t, ctx, ok.role, ok.tok)
		var cu string
		if err := conn.QueryRow(ctx, "select current_user").Scan(&cu); err != nil || cu != ok.role {
			t.Errorf("current_user = %q (%v), want %s", cu, err, ok.role)
		}
		conn.Close(ctx)
	}
	for _, bad := range []struct{ name, role, tok string }{
		{"analyst as admin", "pgadmin", bob},
		{"service as reader", "reader", svc},
		{"carol as admin", "pgadmin", carol},
		{"dba as another user's role", "carol", alice},
	} {
		t.Run(bad.name, func(t *testing.T) { e.refused(t, bad.role, bad.tok, "role_not_allowed") })
	}
}

// Two issuers on two pg_hba lines, each with its own audience through the
// per-issuer configuration file.
func TestSeveralIssuers(t *testing.T) {
	a := startIdP(t, testidp.Options{Realm: "/realms/a"})
	b := startIdP(t, testidp.Options{Realm: "/realms/b"})
	c := pgtest.New(t, pgtest.Options{})
	conf := filepath.Join(c.Dir, "issuers.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[%s]\naudience = aud-a\n\n[%s]\naudience = aud-b\n", a.Issuer(), b.Issuer())), 0o600); err != nil {
		t.Fatal(err)
	}
	chown(t, conf)
	c.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on", "oauth_jwt.issuer_config": quote(conf)}))
	c.SetHBA(
		fmt.Sprintf(`host all tenant_a 127.0.0.1/32 oauth issuer="%s" scope="openid" delegate_ident_mapping=1`, a.Issuer()),
		fmt.Sprintf(`host all tenant_b 127.0.0.1/32 oauth issuer="%s" scope="openid" delegate_ident_mapping=1`, b.Issuer()),
	)
	c.Exec("create role tenant_a login", "create role tenant_b login")
	ea, eb := &idpEnv{IdP: a, PG: c}, &idpEnv{IdP: b, PG: c}
	ctx := ctxT(t, 60*time.Second)
	ea.mustLogin(t, ctx, "tenant_a", ea.token(t, "tenant_a", map[string]any{"aud": "aud-a"})).Close(ctx)
	eb.mustLogin(t, ctx, "tenant_b", eb.token(t, "tenant_b", map[string]any{"aud": "aud-b"})).Close(ctx)
	t.Run("a's audience at b", func(t *testing.T) {
		eb.refused(t, "tenant_b", eb.token(t, "tenant_b", map[string]any{"aud": "aud-a"}), "aud_mismatch")
	})
	t.Run("a's token at b's line", func(t *testing.T) {
		eb.refused(t, "tenant_b", ea.token(t, "tenant_b", map[string]any{"aud": "aud-b"}), "iss_mismatch")
	})
}

// A storm of 100 concurrent logins on a cold cache makes exactly one
// discovery request and one JWKS request for the whole server.
func TestColdCacheStormSingleFetch(t *testing.T) {
	const clients = 100
	e := newIdPEnv(t)
	roles := make([]string, clients)
	var sql []string
	for i := range roles {
		roles[i] = fmt.Sprintf("storm_%03d", i)
		sql = append(sql, "create role "+roles[i]+" login")
	}
	e.PG.Exec(sql...)
	toks := make([]string, clients)
	for i := range toks {
		toks[i] = e.token(t, roles[i], nil)
	}
	e.IdP.ResetCounts()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := make(chan struct{})
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			conn, err := e.PG.ConnectOAuth(ctx, roles[i], toks[i])
			if err != nil {
				errs <- fmt.Errorf("%s: %w", roles[i], err)
				return
			}
			conn.Close(ctx)
		}(i)
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	d, j := e.IdP.Requests(testidp.PathDiscovery), e.IdP.Requests(testidp.PathJWKS)
	t.Logf("%d concurrent logins on a cold cache: %d discovery, %d JWKS requests", clients, d, j)
	if d != 1 || j != 1 {
		t.Errorf("want exactly 1 discovery and 1 JWKS request, got %d and %d", d, j)
	}
}

// A rotated key is accepted after at most one refetch; tokens signed by a
// removed key fail once the cache has refetched.
func TestKeyRotation(t *testing.T) {
	e := newIdPEnv(t, "alice")
	e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on", "oauth_jwt.kid_refetch_interval": "1"}))
	ctx := ctxT(t, 60*time.Second)
	oldTok := e.token(t, "alice", nil)
	e.mustLogin(t, ctx, "alice", oldTok).Close(ctx) // warm cache
	oldKID := e.IdP.ActiveKID()
	if _, err := e.IdP.Rotate(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the warm-up fetch counts against kid_refetch_interval
	e.IdP.ResetCounts()
	newTok := e.token(t, "alice", nil)
	e.mustLogin(t, ctx, "alice", newTok).Close(ctx)
	e.mustLogin(t, ctx, "alice", newTok).Close(ctx)
	if n := e.IdP.Requests(testidp.PathJWKS); n != 1 {
		t.Errorf("the rotated key took %d JWKS requests, want exactly 1", n)
	}
	e.IdP.RemoveKey(oldKID)
	time.Sleep(1100 * time.Millisecond) // past kid_refetch_interval
	// A token under yet another unknown kid makes the cache refetch, which
	// drops the removed key; the old token then fails.
	e.refused(t, "alice", e.token(t, "alice", nil, testidp.WithKID("no-such-kid")), "unknown_kid")
	e.refused(t, "alice", oldTok, "unknown_kid")
}

// Identity provider down with a warm cache: logins go on (with a warning)
// until the maximum staleness, then fail with a clear reason.
func TestIdentityProviderDownWarmCache(t *testing.T) {
	e := newIdPEnv(t, "alice")
	e.PG.SetConf(baseConf(map[string]string{
		"oauth_jwt.role_from_identity":     "on",
		"oauth_jwt.cache_refresh_interval": "1",
		"oauth_jwt.cache_max_stale":        "4",
		"oauth_jwt.http_timeout":           "500",
	}))
	ctx := ctxT(t, 60*time.Second)
	e.mustLogin(t, ctx, "alice", e.token(t, "alice", nil)).Close(ctx)
	warmed := time.Now()
	if err := e.IdP.SetMode(testidp.ModeDown); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the refresh interval: now stale
	mark := e.PG.LogMark()
	e.mustLogin(t, ctx, "alice", e.token(t, "alice", nil)).Close(ctx)
	if !strings.Contains(e.PG.WaitLog(mark, "WARNING:  oauth_jwt:"), "stale") {
		t.Errorf("no warning about stale keys:\n%s", e.PG.LogSince(mark))
	}
	time.Sleep(time.Until(warmed.Add(4*time.Second + 200*time.Millisecond)))
	e.refused(t, "alice", e.token(t, "alice", nil), "keys_unavailable")
}

// Identity provider hanging with a cold cache: a clear failure within the
// HTTP timeout, not a wait until authentication_timeout.
func TestIdentityProviderDownColdCache(t *testing.T) {
	e := newIdPEnv(t, "alice")
	e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on", "oauth_jwt.http_timeout": "1000"}))
	if err := e.IdP.SetMode(testidp.ModeHang); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	log := e.refused(t, "alice", e.token(t, "alice", nil), "keys_unavailable")
	took := time.Since(start)
	t.Logf("cold cache, hanging identity provider: refused after %v", took.Round(time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("refusal took %v: the HTTP timeout (1 s) did not bound it", took)
	}
	if !strings.Contains(log, e.IdP.Issuer()) {
		t.Errorf("the log does not name the issuer:\n%s", log)
	}
}

func chown(t testing.TB, path string) {
	t.Helper()
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", pgtest.ServerUser+":", path).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
}

// The module fetches keys only through oauth_jwt_fetch, installed beside
// it. Without it a cold cache cannot be filled: the login fails as an
// internal error whose log line names the missing file and how to get it,
// and no request reaches the identity provider. Put back, the next login
// fetches and succeeds.
func TestFetchHelperMissing(t *testing.T) {
	e := newIdPEnv(t, "alice")
	helper := filepath.Join(e.PG.Dir, "lib", pgtest.FetchHelper)
	saved, err := os.ReadFile(helper)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(helper); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 60*time.Second)
	tok := e.token(t, "alice", nil)
	mark := e.PG.LogMark()
	if conn, err := e.PG.ConnectOAuth(ctx, "alice", tok); err == nil {
		conn.Close(ctx)
		t.Fatal("login accepted with a cold cache and no fetch helper")
	}
	log := e.PG.WaitLog(mark, helper+" is missing")
	if !strings.Contains(log, "make install") {
		t.Errorf("the log does not say how to get the helper:\n%s", log)
	}
	assertNoTokenInLog(t, log, tok)
	if n := e.IdP.Requests(testidp.PathDiscovery) + e.IdP.Requests(testidp.PathJWKS); n != 0 {
		t.Errorf("%d requests reached the identity provider without the helper", n)
	}

	if err := os.WriteFile(helper, saved, 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, helper)
	conn, err := e.PG.ConnectOAuth(ctx, "alice", tok)
	if err != nil {
		t.Fatalf("login after reinstalling the helper: %v\n%s", err, e.PG.LogTail(10))
	}
	conn.Close(ctx)
	if n := e.IdP.Requests(testidp.PathJWKS); n != 1 {
		t.Errorf("%d JWKS requests after reinstalling the helper, want 1", n)
	}
}
