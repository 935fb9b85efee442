package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// The audience every test token carries unless a case says otherwise.
const testAudience = "postgres-db"

// idpEnv is a test identity provider plus a cluster trusting it.
type idpEnv struct {
	IdP *testidp.IdP
	PG  *pgtest.Cluster
}

// startIdP starts a test identity provider stopped at cleanup.
func startIdP(t testing.TB, opts testidp.Options) *testidp.IdP {
	t.Helper()
	if opts.Realm == "" {
		opts.Realm = "/realms/test"
	}
	p, err := testidp.Start(opts)
	if err != nil {
		t.Fatalf("test identity provider: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// baseConf is the oauth_jwt configuration used against the test IdP.
func baseConf(extra map[string]string) map[string]string {
	kv := map[string]string{
		"oauth_jwt.audience":      quote(testAudience),
		"oauth_jwt.require_https": "off", // the test IdP is plain http on loopback
	}
	for k, v := range extra {
		kv[k] = v
	}
	return kv
}

// newIdPEnv starts an IdP and a cluster whose TCP logins use oauth against
// it, in delegated mode where identity == role is allowed. Roles given are
// created with LOGIN.
func newIdPEnv(t testing.TB, roles ...string) *idpEnv {
	t.Helper()
	p := startIdP(t, testidp.Options{})
	c := pgtest.New(t, pgtest.Options{})
	c.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on"}))
	c.SetHBA(hbaOAuth(p.Issuer(), "delegate_ident_mapping=1"))
	for _, r := range roles {
		c.Exec(fmt.Sprintf("create role %s login", r))
	}
	return &idpEnv{IdP: p, PG: c}
}

// hbaOAuth is a pg_hba line for TCP oauth logins against issuer.
func hbaOAuth(issuer string, opts ...string) string {
	return fmt.Sprintf(`host all all 127.0.0.1/32 oauth issuer="%s" scope="openid" %s`, issuer, strings.Join(opts, " "))
}

// token mints a valid access token for sub, with overrides.
func (e *idpEnv) token(t testing.TB, sub string, over map[string]any, opts ...testidp.MintOption) string {
	t.Helper()
	claims := map[string]any{
		"sub":                sub,
		"aud":                testAudience,
		"azp":                "psql",
		"scope":              "openid profile",
		"preferred_username": sub,
	}
	for k, v := range over {
		claims[k] = v // nil removes the claim (also the IdP's defaults)
	}
	tok, err := e.IdP.Mint(claims, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// mustLogin connects as role with token and fails the test if refused.
func (e *idpEnv) mustLogin(t testing.TB, ctx context.Context, role, token string) *pgxConn {
	t.Helper()
	conn, err := e.PG.ConnectOAuth(ctx, role, token)
	if err != nil {
		t.Fatalf("login as %s refused: %v\n%s", role, err, e.PG.LogTail(15))
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
