package hostile

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// A hostile introspection endpoint (RFC 7662) and hostile opaque tokens,
// through a real server: answers that echo the token into the claims the
// module logs, wrong JSON types, deep nesting, absurd numbers, control
// characters. Each is judged with a reason (or accepted where the answer
// is valid), the backend never fails, and no token, token-hash prefix or
// secret reaches the log at debug5.
func TestHostileIntrospection(t *testing.T) {
	const secret = "hostile-introspection-secret"
	idp, err := testidp.Start(testidp.Options{Realm: "/realms/hostile"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	idp.SetIntrospectionClient("pg", secret)
	c := pgtest.New(t, pgtest.Options{Conf: []string{"log_min_messages = debug5", "oauth_validator_libraries = 'oauth_jwt'"}})
	secretFile := filepath.Join(c.Dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", pgtest.ServerUser+":", secretFile).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
	c.SetConf(map[string]string{
		"oauth_jwt.audience":                  "'pg'",
		"oauth_jwt.require_https":             "off",
		"oauth_jwt.introspection":             "'opaque'",
		"oauth_jwt.introspection_client_id":   "'pg'",
		"oauth_jwt.introspection_secret_file": "'" + secretFile + "'",
		"oauth_jwt.authn_id_claim":            "'username'",
		"oauth_jwt.role_from_identity":        "on",
	})
	c.SetHBA(`host all all 127.0.0.1/32 oauth issuer="` + idp.Issuer() + `" scope="openid" delegate_ident_mapping=1`)
	c.Exec("create role alice login")

	deep := any("x")
	for range 40 {
		deep = []any{deep}
	}
	const echo = "\x00echo" // replaced by the token itself
	cases := []struct {
		name   string
		over   map[string]any
		token  string // instead of an opaque token
		reason string // "ok" for an accepted login
	}{
		{name: "token echoed as identity", over: map[string]any{"username": echo}, reason: "no_identity"},
		{name: "token echoed inside the identity", over: map[string]any{"username": "x-" + echo + "-y"}, reason: "no_identity"},
		{name: "token echoed as issuer", over: map[string]any{"iss": echo}, reason: "iss_mismatch"},
		{name: "token echoed as audience", over: map[string]any{"aud": []any{echo, "x"}}, reason: "aud_mismatch"},
		{name: "token echoed as client and scope", over: map[string]any{"client_id": echo, "scope": echo, "username": "alice"}, reason: "ok"},
		{name: "token echoed as token_type", over: map[string]any{"token_type": echo}, reason: "wrong_token_type"},
		{name: "active an object", over: map[string]any{"active": map[string]any{"active": true}}, reason: "token_inactive"},
		{name: "active an array", over: map[string]any{"active": []any{true}}, reason: "token_inactive"},
		{name: "active null", over: map[string]any{"active": nil}, reason: "token_inactive"},
		{name: "deeply nested claim", over: map[string]any{"username": "alice", "extra": deep}, reason: "introspection_failed"},
		{name: "exp absurdly large", over: map[string]any{"username": "alice", "exp": 1e300}, reason: "invalid_claim"},
		{name: "exp negative", over: map[string]any{"username": "alice", "exp": -1}, reason: "invalid_claim"},
		{name: "identity with NUL", over: map[string]any{"username": "ali\x00ce"}, reason: "no_identity"},
		{name: "identity an object", over: map[string]any{"username": map[string]any{"x": 1}}, reason: "no_identity"},
		{name: "control characters in identity", over: map[string]any{"username": "al\nice\r\x1b[31m"}, reason: "invalid_identity"},
		{name: "duplicate active", token: "", over: map[string]any{"username": "alice", "Active": true}, reason: "ok"},
		{name: "valid", over: map[string]any{"username": "alice"}, reason: "ok"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token
			if tok == "" {
				tok = idp.MintOpaque(map[string]any{"aud": "pg", "username": "alice"})
			}
			over := map[string]any{}
			for k, v := range tc.over {
				switch v := v.(type) {
				case string:
					over[k] = strings.ReplaceAll(v, echo, tok)
				case []any:
					l := make([]any, len(v))
					for i, e := range v {
						if s, ok := e.(string); ok {
							e = strings.ReplaceAll(s, echo, tok)
						}
						l[i] = e
					}
					over[k] = l
				default:
					over[k] = v
				}
			}
			idp.SetIntrospectionOverride(over)
			defer idp.SetIntrospectionOverride(nil)
			mark := c.LogMark()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := c.ConnectOAuth(ctx, "alice", tok)
			if err == nil {
				conn.Close(ctx)
			}
			log := waitVerdict(t, c, mark, "alice")
			switch {
			case tc.reason == "ok" && err != nil:
				t.Errorf("refused: %v\n%s", err, log)
			case tc.reason != "ok" && err == nil:
				t.Errorf("accepted; want %s", tc.reason)
			case tc.reason != "ok" && !strings.Contains(log, "Reason: "+tc.reason+"."):
				t.Errorf("want reason %s:\n%s", tc.reason, log)
			}
			if strings.Contains(log, "internal error") || strings.Contains(log, "server process") {
				t.Errorf("the module failed:\n%s", log)
			}
			assertNoToken(t, log, tok)
			if h := keycache.IntrospectionKey(idp.Issuer(), tok); strings.Contains(log, h[:8]) {
				t.Errorf("a token-hash prefix reached the log")
			}
			if strings.Contains(log, secret) {
				t.Errorf("the client secret reached the log")
			}
		})
	}
}
