package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

const (
	introClientID = "pg-introspect"
	introSecret   = "s3cret &+/=x" // characters that form-urlencoding must carry
)

// introEnv is an IdP with an introspection client and a cluster that uses
// it; conf are extra settings.
func introEnv(t *testing.T, mode string, conf map[string]string) (*idpEnv, func(map[string]string)) {
	t.Helper()
	e := newIdPEnv(t, "alice")
	e.IdP.SetIntrospectionClient(introClientID, introSecret)
	secret := filepath.Join(e.PG.Dir, "introspection.secret")
	if err := os.WriteFile(secret, []byte(introSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chown(t, secret)
	set := func(extra map[string]string) {
		kv := map[string]string{
			"oauth_jwt.role_from_identity":        "on",
			"oauth_jwt.introspection":             quote(mode),
			"oauth_jwt.introspection_client_id":   quote(introClientID),
			"oauth_jwt.introspection_secret_file": quote(secret),
			"oauth_jwt.http_timeout":              "1000",
			"log_min_messages":                    "debug5",
		}
		for k, v := range conf {
			kv[k] = v
		}
		for k, v := range extra {
			kv[k] = v
		}
		e.PG.SetConf(baseConf(kv))
	}
	set(nil)
	return e, set
}

// refusedIntro is refused plus: neither the secret nor the token's hash
// prefix reached the log.
func (e *idpEnv) refusedIntro(t *testing.T, tok, reason string) string {
	t.Helper()
	log := e.refused(t, "alice", tok, reason)
	if strings.Contains(log, introSecret) || strings.Contains(log, "s3cret") {
		t.Errorf("the client secret reached the server log")
	}
	return log
}

// introspection = always, through the real server: a JWT is verified
// offline, then must be active; revocation is seen at the next login with
// a TTL of 0, and within the TTL otherwise (bounded, counted in requests).
func TestIntrospectionAlwaysThroughServer(t *testing.T) {
	e, set := introEnv(t, "always", map[string]string{"oauth_jwt.introspection_cache_ttl": "0"})
	ctx := ctxT(t, 120*time.Second)
	requests := func() int { return e.IdP.Requests(testidp.PathIntrospect) }

	t.Run("expired JWT refused offline, no request", func(t *testing.T) {
		before := requests()
		e.refusedIntro(t, e.token(t, "alice", map[string]any{"exp": time.Now().Add(-time.Hour)}), "expired")
		if n := requests() - before; n != 0 {
			t.Errorf("%d introspection requests for a token refused offline", n)
		}
	})
	tok := e.token(t, "alice", nil)
	t.Run("active JWT accepted", func(t *testing.T) {
		before := requests()
		e.mustLogin(t, ctx, "alice", tok).Close(ctx)
		if n := requests() - before; n != 1 {
			t.Errorf("%d introspection requests, want 1", n)
		}
	})
	t.Run("revoked JWT refused token_inactive at once with ttl 0", func(t *testing.T) {
		e.IdP.Revoke(tok)
		log := e.refusedIntro(t, tok, "token_inactive")
		if !strings.Contains(log, "inactive") {
			t.Errorf("the log does not explain:\n%s", log)
		}
	})
	t.Run("cached within the TTL, one request", func(t *testing.T) {
		set(map[string]string{"oauth_jwt.introspection_cache_ttl": "600"})
		fresh := e.token(t, "alice", map[string]any{"jti": "cached"})
		before := requests()
		for range 3 {
			e.mustLogin(t, ctx, "alice", fresh).Close(ctx)
		}
		if n := requests() - before; n != 1 {
			t.Errorf("%d introspection requests for 3 logins within the TTL, want 1", n)
		}
		// Lowering the TTL takes effect at once: the cached answer is
		// older than... nothing; with ttl 0 the endpoint is asked again.
		e.IdP.Revoke(fresh)
		set(map[string]string{"oauth_jwt.introspection_cache_ttl": "0"})
		e.refusedIntro(t, fresh, "token_inactive")
	})
	t.Run("endpoint down fails closed", func(t *testing.T) {
		e.IdP.SetIntrospectionMode(testidp.IntroError500)
		defer e.IdP.SetIntrospectionMode(testidp.IntroNormal)
		e.refusedIntro(t, e.token(t, "alice", map[string]any{"jti": "down"}), "introspection_failed")
	})
}

// introspection = opaque through the real server: opaque tokens accepted
// and mapped; every bad answer refused with its reason.
func TestIntrospectionOpaqueThroughServer(t *testing.T) {
	e, set := introEnv(t, "opaque", map[string]string{"oauth_jwt.introspection_cache_ttl": "0"})
	ctx := ctxT(t, 180*time.Second)
	opaque := func(over map[string]any) string {
		c := map[string]any{"sub": "alice", "aud": testAudience, "scope": "openid", "client_id": "psql"}
		for k, v := range over {
			c[k] = v
		}
		return e.IdP.MintOpaque(c)
	}
	t.Run("opaque token accepted and mapped", func(t *testing.T) {
		mark := e.PG.LogMark()
		tok := opaque(nil)
		e.mustLogin(t, ctx, "alice", tok).Close(ctx)
		log := e.PG.WaitLog(mark, "oauth_jwt: bearer token accepted")
		if !strings.Contains(log, `Identity "alice"`) || !strings.Contains(log, "Opaque token") {
			t.Errorf("the accepted record does not show the identity:\n%s", log)
		}
		assertNoTokenInLog(t, log, tok)
	})
	t.Run("JWT still verified offline", func(t *testing.T) {
		before := e.IdP.Requests(testidp.PathIntrospect)
		e.mustLogin(t, ctx, "alice", e.token(t, "alice", nil)).Close(ctx)
		if n := e.IdP.Requests(testidp.PathIntrospect) - before; n != 0 {
			t.Errorf("%d introspection requests for a JWT in opaque mode", n)
		}
	})

	cases := []struct {
		name   string
		mode   testidp.IntroMode
		over   map[string]any // answer override
		token  func() string
		reason string
	}{
		{name: "revoked (active false)", token: func() string { tok := opaque(nil); e.IdP.Revoke(tok); return tok }, reason: "token_inactive"},
		{name: "unknown token", token: func() string { return "opq_never-issued-token-000000" }, reason: "token_inactive"},
		{name: "active is a string", mode: testidp.IntroActiveString, reason: "token_inactive"},
		{name: "active missing", mode: testidp.IntroNoActive, reason: "token_inactive"},
		{name: "wrong iss", over: map[string]any{"iss": e.IdP.Issuer() + "/"}, reason: "iss_mismatch"},
		{name: "missing aud", over: map[string]any{"aud": nil}, reason: "aud_mismatch"},
		{name: "wrong aud", over: map[string]any{"aud": "someone-else"}, reason: "aud_mismatch"},
		{name: "missing exp", over: map[string]any{"exp": nil}, reason: "missing_exp"},
		{name: "past exp", over: map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}, reason: "expired"},
		{name: "refresh token type", over: map[string]any{"token_type": "refresh_token"}, reason: "wrong_token_type"},
		{name: "oversized answer", mode: testidp.IntroOversized, reason: "introspection_failed"},
		{name: "non-JSON answer", mode: testidp.IntroGarbage, reason: "introspection_failed"},
		{name: "status 500", mode: testidp.IntroError500, reason: "introspection_failed"},
		{name: "slow endpoint beyond http_timeout", mode: testidp.IntroSlow, reason: "introspection_failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.IdP.SetIntrospectionMode(tc.mode)
			e.IdP.SetIntrospectionOverride(tc.over)
			defer e.IdP.SetIntrospectionMode(testidp.IntroNormal)
			defer e.IdP.SetIntrospectionOverride(nil)
			tok := opaque(nil)
			if tc.token != nil {
				tok = tc.token()
			}
			e.refusedIntro(t, tok, tc.reason)
		})
	}
	t.Run("missing iss is accepted (RFC 7662: optional)", func(t *testing.T) {
		e.IdP.SetIntrospectionOverride(map[string]any{"iss": nil})
		defer e.IdP.SetIntrospectionOverride(nil)
		e.mustLogin(t, ctx, "alice", opaque(nil)).Close(ctx)
	})
	t.Run("wrong client credentials", func(t *testing.T) {
		e.IdP.SetIntrospectionClient(introClientID, "another secret")
		defer e.IdP.SetIntrospectionClient(introClientID, introSecret)
		log := e.refusedIntro(t, opaque(nil), "introspection_failed")
		if !strings.Contains(log, "401") || !strings.Contains(log, "client credentials") {
			t.Errorf("the log does not say the credentials were refused:\n%s", log)
		}
	})
	t.Run("secret file others can write", func(t *testing.T) {
		bad := filepath.Join(e.PG.Dir, "open.secret")
		if err := os.WriteFile(bad, []byte(introSecret), 0o600); err != nil {
			t.Fatal(err)
		}
		chown(t, bad)
		os.Chmod(bad, 0o666)
		set(map[string]string{"oauth_jwt.introspection_secret_file": quote(bad)})
		defer set(nil)
		before := e.IdP.Requests(testidp.PathIntrospect)
		log := e.refusedIntro(t, opaque(nil), "introspection_failed")
		if !strings.Contains(log, bad) || !strings.Contains(log, "writable by group or others") {
			t.Errorf("the log does not name the file and its problem:\n%s", log)
		}
		if n := e.IdP.Requests(testidp.PathIntrospect) - before; n != 0 {
			t.Errorf("%d requests sent without a usable secret", n)
		}
	})
}

// A hanging introspection endpoint: the backend stays cancellable, well
// before http_timeout would end the wait.
func TestIntrospectionHangInterruptible(t *testing.T) {
	e, _ := introEnv(t, "opaque", map[string]string{"oauth_jwt.http_timeout": "'50s'"})
	e.IdP.SetIntrospectionMode(testidp.IntroHang)
	for _, tc := range []struct{ name, act string }{
		{"pg_terminate_backend", "select pg_terminate_backend(%d)"},
		{"pg_cancel_backend", "select pg_cancel_backend(%d)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := e.IdP.MintOpaque(map[string]any{"sub": "alice", "aud": testAudience})
			interruptHangingLogin(t, e, tok, testidp.PathIntrospect, tc.act)
		})
	}
}

// Introspection is per issuer (an issuer_config section) and, on
// PostgreSQL 19, per pg_hba line, with the line winning: the section turns
// it on for the issuer, bob's line turns it off again. On 18 the server has
// no per-line options (TestLineOptions shows it refuses them), so both
// lines follow the section there.
func TestIntrospectionPerIssuerAndLine(t *testing.T) {
	e := newIdPEnv(t, "alice", "bob")
	e.IdP.SetIntrospectionClient(introClientID, introSecret)
	secret := filepath.Join(e.PG.Dir, "introspection.secret")
	conf := filepath.Join(e.PG.Dir, "issuers.conf")
	if err := os.WriteFile(secret, []byte(introSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf("[%s]\nintrospection = always\nintrospection_cache_ttl = 0\n", e.IdP.Issuer())
	if err := os.WriteFile(conf, []byte(section), 0o600); err != nil {
		t.Fatal(err)
	}
	chown(t, secret)
	chown(t, conf)
	e.PG.SetConf(baseConf(map[string]string{
		"oauth_jwt.role_from_identity":        "on",
		"oauth_jwt.introspection_client_id":   quote(introClientID),
		"oauth_jwt.introspection_secret_file": quote(secret),
		"oauth_jwt.issuer_config":             quote(conf),
	}))
	bobOpts := ""
	if e.PG.Major >= 19 {
		bobOpts = "validator.introspection=off"
	}
	e.PG.SetHBA(
		fmt.Sprintf(`host all alice 127.0.0.1/32 oauth issuer="%s" scope="openid" delegate_ident_mapping=1`, e.IdP.Issuer()),
		fmt.Sprintf(`host all bob 127.0.0.1/32 oauth issuer="%s" scope="openid" delegate_ident_mapping=1 %s`, e.IdP.Issuer(), bobOpts),
	)
	ctx := ctxT(t, 120*time.Second)
	requests := func() int { return e.IdP.Requests(testidp.PathIntrospect) }

	t.Run("the section's introspection sees alice's revoked token", func(t *testing.T) {
		tok := e.token(t, "alice", nil)
		before := requests()
		e.mustLogin(t, ctx, "alice", tok).Close(ctx)
		if n := requests() - before; n != 1 {
			t.Errorf("%d introspection requests for alice's login, want 1", n)
		}
		e.IdP.Revoke(tok)
		e.refusedIntro(t, tok, "token_inactive")
	})
	t.Run("bob's line", func(t *testing.T) {
		tok := e.token(t, "bob", nil)
		e.IdP.Revoke(tok)
		before := requests()
		if e.PG.Major < 19 {
			e.refused(t, "bob", tok, "token_inactive")
			return
		}
		// validator.introspection=off on the line wins over the section:
		// verified offline only, no request, so revocation is not seen.
		e.mustLogin(t, ctx, "bob", tok).Close(ctx)
		if n := requests() - before; n != 0 {
			t.Errorf("%d introspection requests for bob's line, which turns introspection off", n)
		}
	})
}
