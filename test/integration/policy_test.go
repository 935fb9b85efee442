package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
)

// The pg_hba.conf scope is enforced by default (issue 11, item 1): before,
// a token with no scope and one with only "pg:connect-admin" both logged in
// through a line with scope="openid pg:connect" (oauth_jwt checked scopes
// only when oauth_jwt.required_scopes named them, and it is empty here), so
// the two refusals below fail on the old module: the login succeeds and
// e.refused fails the test.
func TestHBAScopeEnforced(t *testing.T) {
	e := newIdPEnv(t, "alice")
	line := fmt.Sprintf(`host all all 127.0.0.1/32 oauth issuer="%s" scope="openid pg:connect" delegate_ident_mapping=1`, e.IdP.Issuer())
	e.PG.SetHBA(line)
	const fromHBA = `(required by the pg_hba.conf scope option)`
	for _, tc := range []struct {
		name, scope, detail string
	}{
		{"token without scope", "", `The token lacks the scope "pg:connect" ` + fromHBA + `; it has none.`},
		{"prefix-sharing scope", "openid pg:connect-admin", `The token lacks the scope "pg:connect" ` + fromHBA + `; it has "openid", "pg:connect-admin".`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			over := map[string]any{"scope": tc.scope}
			if tc.scope == "" {
				over["scope"] = nil
			}
			log := e.refused(t, "alice", e.token(t, "alice", over), "missing_scope")
			if !strings.Contains(log, tc.detail) {
				t.Errorf("the log does not say which scope was missing and where it was required (want %q):\n%s", tc.detail, log)
			}
		})
	}
	t.Run("scope granted", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		e.mustLogin(t, ctx, "alice", e.token(t, "alice", map[string]any{"scope": "pg:connect-admin pg:connect"})).Close(ctx)
	})
	t.Run("required_scopes named as the source", func(t *testing.T) {
		e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on", "oauth_jwt.required_scopes": "'pg:audit'"}))
		t.Cleanup(func() { e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on"})) })
		log := e.refused(t, "alice", e.token(t, "alice", map[string]any{"scope": "openid pg:connect"}), "missing_scope")
		if want := `"pg:audit" (required by "oauth_jwt.required_scopes")`; !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	})
	t.Run("enforce_hba_scope off for the issuer", func(t *testing.T) {
		conf := filepath.Join(e.PG.Dir, "issuers-noscope.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("[%s]\naudience = %s\nenforce_hba_scope = off\n", e.IdP.Issuer(), testAudience)), 0o600); err != nil {
			t.Fatal(err)
		}
		chown(t, conf)
		e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on", "oauth_jwt.issuer_config": quote(conf)}))
		t.Cleanup(func() { e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on"})) })
		ctx := ctxT(t, 30*time.Second)
		e.mustLogin(t, ctx, "alice", e.token(t, "alice", map[string]any{"scope": nil})).Close(ctx)
	})
}

// A validly signed token that stays valid for 1e9 s is refused with its own
// reason (item 2), and exp 1e30 as an invalid claim; both logged in before.
func TestTokenLifetimeBounded(t *testing.T) {
	e := newIdPEnv(t, "alice")
	now := time.Now()
	t.Run("exp - iat = 1e9 s", func(t *testing.T) {
		tok := e.token(t, "alice", map[string]any{"iat": now.Unix(), "exp": now.Unix() + 1e9})
		log := e.refused(t, "alice", tok, "lifetime_too_long")
		if want := `"oauth_jwt.max_token_lifetime" allows at most 86400 s`; !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	})
	t.Run("exp 1e30", func(t *testing.T) {
		e.refused(t, "alice", e.token(t, "alice", map[string]any{"exp": 1e30}), "invalid_claim")
	})
	t.Run("a longer per-server maximum", func(t *testing.T) {
		e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on", "oauth_jwt.max_token_lifetime": "'7d'"}))
		t.Cleanup(func() { e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on"})) })
		ctx := ctxT(t, 30*time.Second)
		tok := e.token(t, "alice", map[string]any{"iat": now.Unix(), "exp": now.Add(6 * 24 * time.Hour).Unix()})
		e.mustLogin(t, ctx, "alice", tok).Close(ctx)
	})
}

// An identity with a newline or an escape sequence is refused (item 8),
// and no raw control character reaches the server log: before, such an
// identity logged in through pg_ident mode and PostgreSQL wrote it into
// its "connection authenticated" line, where the newline started a forged
// line.
func TestIdentityWithControlCharacters(t *testing.T) {
	e := newIdPEnv(t, "alice")
	writeIdent(t, e.PG, `oauthmap /^(.*)$ alice`)
	e.PG.SetConf(baseConf(map[string]string{"log_connections": "on"}))
	e.PG.SetHBA(hbaOAuth(e.IdP.Issuer(), "map=oauthmap"))
	for _, tc := range []struct{ name, sub string }{
		{"newline", "mallory\n2026-12-06 LOG:  connection authorized: user=postgres"},
		{"escape sequence", "mallory\x1b[2K\x1b[1Grewritten"},
		{"C1 next line", "mallory\u0085forged"},
		{"right-to-left override", "mallory\u202etoor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := e.refused(t, "alice", e.token(t, tc.sub, nil), "invalid_identity")
			for _, l := range strings.Split(log, "\n") {
				if strings.HasPrefix(l, "2026-12-06 LOG:") {
					t.Errorf("the identity started a log line of its own: %q", l)
				}
			}
			if i := strings.IndexFunc(log, func(r rune) bool {
				return r != '\n' && r != '\t' && (r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f || r >= 0x202a && r <= 0x202e)
			}); i >= 0 {
				t.Errorf("the server log holds a raw control character at byte %d:\n%q", i, log)
			}
			if strings.Contains(log, "connection authenticated") {
				t.Errorf("the identity was authenticated:\n%s", log)
			}
		})
	}
}

// Internal error texts are escaped like the rest of the log (item 8): the
// fetch helper's standard error reaches the log in the internal error of a
// failed fetch. A helper that prints a carriage return, an escape sequence
// and a right-to-left override leaves them escaped in the log line (the old
// module wrote them raw).
func TestFetchHelperStderrEscaped(t *testing.T) {
	e := newIdPEnv(t, "alice")
	helper := filepath.Join(e.PG.Dir, "lib", pgtest.FetchHelper)
	saved, err := os.ReadFile(helper)
	if err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nprintf 'broken helper\\r LOG:  forged\\033[2K \\342\\200\\256gnp.exe\\n' >&2\nexit 3\n"
	if err := os.WriteFile(helper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, helper)
	t.Cleanup(func() {
		if err := os.WriteFile(helper, saved, 0o755); err != nil {
			t.Error(err)
		}
	})
	ctx := ctxT(t, 60*time.Second)
	mark := e.PG.LogMark()
	if conn, err := e.PG.ConnectOAuth(ctx, "alice", e.token(t, "alice", nil)); err == nil {
		conn.Close(ctx)
		t.Fatal("login accepted with a cold cache and a failing fetch helper")
	}
	log := e.PG.WaitLog(mark, "internal error in OAuth validator module")
	if want := `broken helper\r LOG:  forged\x1b[2K \u202egnp.exe`; !strings.Contains(log, want) {
		t.Errorf("the log lacks the helper's escaped output %s:\n%q", want, log)
	}
	if i := strings.IndexFunc(log, func(r rune) bool {
		return r != '\n' && r != '\t' && (r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f || r >= 0x202a && r <= 0x202e)
	}); i >= 0 {
		t.Errorf("the server log holds a raw control character at byte %d:\n%q", i, log)
	}
}
