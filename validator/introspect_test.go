package validator

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// fakeIntrospector answers with a canned body or error and keeps a cache
// in memory, recording what it was asked and what it stored.
type fakeIntrospector struct {
	mu      sync.Mutex
	answer  string
	err     error
	asked   []keycache.IntrospectQuery
	stored  map[string]time.Time
	answers map[string][]byte
}

func (f *fakeIntrospector) LookupIntrospection(key string, maxAge time.Duration) ([]byte, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	until, ok := f.stored[key]
	if !ok || !testNow.Before(until) {
		return nil, false, nil
	}
	return f.answers[key], true, nil
}

func (f *fakeIntrospector) StoreIntrospection(key string, answer []byte, expires time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stored == nil {
		f.stored, f.answers = map[string]time.Time{}, map[string][]byte{}
	}
	f.stored[key], f.answers[key] = expires, answer
	return nil
}

func (f *fakeIntrospector) Introspect(_ context.Context, q keycache.IntrospectQuery) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, q)
	return []byte(f.answer), f.err
}

const opaqueToken = "opaque-Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"

func secretFile(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "secret")
	if err := os.WriteFile(p, []byte("s3cr+t &x\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func introVerifier(tb testing.TB, in *fakeIntrospector, mode string, extra Settings) *Verifier {
	tb.Helper()
	s := baseSettings()
	s["introspection"] = mode
	s["introspection_client_id"] = "pg-introspect"
	s["introspection_secret_file"] = secretFile(tb)
	s["introspection_endpoint"] = "https://idp.example.com/introspect"
	for k, v := range extra {
		s[k] = v
	}
	v, err := New(s, WithKeySource(&memSource{set: testFixture(tb).set}), WithIntrospector(in), WithClock(testClock))
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return v
}

// answerJSON is an RFC 7662 answer for an active opaque token, with changes.
func answerJSON(tb testing.TB, over map[string]any) string {
	tb.Helper()
	m := map[string]any{
		"active": true, "iss": testIssuer, "aud": testAud, "client_id": "psql",
		"username": "alice", "sub": "8d8b6a2c-alice", "scope": "openid db",
		"exp": testNow.Add(10 * time.Minute).Unix(), "iat": testNow.Add(-time.Minute).Unix(),
		"token_type": "Bearer",
	}
	for k, v := range over {
		if v == del {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return string(mustJSON(tb, m))
}

func TestIntrospectionOpaque(t *testing.T) {
	soon := testNow.Add(10 * time.Minute).Unix()
	cases := []struct {
		name   string
		answer string
		err    error
		token  string
		reason Reason
		asked  int
	}{
		{name: "active false", answer: `{"active":false}`, reason: ReasonTokenInactive, asked: 1},
		{name: "active is the string true", answer: answerJSON(t, map[string]any{"active": "true"}), reason: ReasonTokenInactive, asked: 1},
		{name: "active is 1", answer: answerJSON(t, map[string]any{"active": 1}), reason: ReasonTokenInactive, asked: 1},
		{name: "active missing", answer: answerJSON(t, map[string]any{"active": del}), reason: ReasonTokenInactive, asked: 1},
		{name: "wrong iss", answer: answerJSON(t, map[string]any{"iss": "https://evil.example.com"}), reason: ReasonIssMismatch, asked: 1},
		{name: "iss not a string", answer: answerJSON(t, map[string]any{"iss": 7}), reason: ReasonIssMismatch, asked: 1},
		{name: "aud missing", answer: answerJSON(t, map[string]any{"aud": del}), reason: ReasonAudMismatch, asked: 1},
		{name: "aud wrong", answer: answerJSON(t, map[string]any{"aud": "other"}), reason: ReasonAudMismatch, asked: 1},
		{name: "exp missing", answer: answerJSON(t, map[string]any{"exp": del}), reason: ReasonMissingExp, asked: 1},
		{name: "exp past", answer: answerJSON(t, map[string]any{"exp": testNow.Add(-time.Hour).Unix()}), reason: ReasonExpired, asked: 1},
		{name: "exp a string", answer: answerJSON(t, map[string]any{"exp": "soon"}), reason: ReasonInvalidClaim, asked: 1},
		{name: "token_type refresh", answer: answerJSON(t, map[string]any{"token_type": "refresh_token"}), reason: ReasonWrongTokenType, asked: 1},
		{name: "client not allowed", answer: answerJSON(t, map[string]any{"client_id": "evil"}), reason: ReasonAzpNotAllowed, asked: 1},
		{name: "scope missing", answer: answerJSON(t, map[string]any{"scope": "openid"}), reason: ReasonMissingScope, asked: 1},
		{name: "no identity", answer: answerJSON(t, map[string]any{"username": del}), reason: ReasonNoIdentity, asked: 1},
		{name: "endpoint failed", err: errors.New("POST https://idp.example.com/introspect: connection refused"), reason: ReasonIntrospectionFailed, asked: 1},
		{name: "answer not JSON", answer: "<html>", reason: ReasonIntrospectionFailed, asked: 1},
		{name: "answer with duplicate active", answer: `{"active":false,"active":true}`, reason: ReasonIntrospectionFailed, asked: 1},
		{name: "answer nested too deep", answer: `{"active":true,"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, reason: ReasonIntrospectionFailed, asked: 1},
		{name: "answer a JSON array", answer: `[{"active":true}]`, reason: ReasonIntrospectionFailed, asked: 1},
		{name: "JWT-shaped garbage is not introspected", token: "aaa.bbb.ccc", reason: ReasonMalformed},
		{name: "JWE-shaped is not introspected", token: "a.b.c.d.e", reason: ReasonMalformed},
		{name: "white space is not a token", token: "abc def", reason: ReasonMalformed},
		{name: "accepted", answer: answerJSON(t, map[string]any{"exp": soon}), reason: ReasonOK, asked: 1},
		{name: "accepted without iss", answer: answerJSON(t, map[string]any{"iss": del}), reason: ReasonOK, asked: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &fakeIntrospector{answer: tc.answer, err: tc.err}
			v := introVerifier(t, in, "opaque", Settings{"authn_id_claim": "username", "allowed_client_ids": "psql",
				"required_scopes": "db"})
			tok := tc.token
			if tok == "" {
				tok = opaqueToken
			}
			res, err := v.Validate(context.Background(), Request{Token: tok, Issuer: testIssuer})
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if res.Reason != tc.reason || res.Authorized != (tc.reason == ReasonOK) {
				t.Fatalf("verdict %v %s, want %s: %v", res.Authorized, res.Reason, tc.reason, res.Err())
			}
			if len(in.asked) != tc.asked {
				t.Errorf("asked the endpoint %d times, want %d", len(in.asked), tc.asked)
			}
			if tc.reason == ReasonOK {
				if res.AuthnID != "alice" {
					t.Errorf("authn_id %q, want alice (claim username of the answer)", res.AuthnID)
				}
				if len(in.stored) != 1 {
					t.Errorf("%d answers cached, want 1", len(in.stored))
				}
				q := in.asked[0]
				if q.Token != tok || q.ClientID != "pg-introspect" || q.ClientSecret != "s3cr+t &x" || q.Endpoint != "https://idp.example.com/introspect" {
					t.Errorf("query %+v", q)
				}
			} else if len(in.stored) != 0 {
				t.Errorf("a refused answer was cached")
			}
			assertNoTokenText(t, tok, res, err)
			for _, l := range res.Logs {
				if strings.Contains(l.Detail, "s3cr+t") || strings.Contains(l.Detail, keycache.IntrospectionKey(testIssuer, tok)[:8]) {
					t.Errorf("the secret or a token hash reached the log: %+v", l)
				}
			}
		})
	}
}

// introspection = always: the JWT is checked offline first (a bad one
// costs no request), then must be active; positive answers are cached until
// the TTL or the token's exp, negatives never.
func TestIntrospectionAlways(t *testing.T) {
	f := testFixture(t)
	good := f.rs256().build(t)
	cases := []struct {
		name   string
		token  string
		answer string
		err    error
		reason Reason
		asked  int
	}{
		{name: "expired JWT, no request", token: f.rs256().c("exp", testNow.Add(-time.Hour).Unix()).build(t), answer: `{"active":true}`, reason: ReasonExpired},
		{name: "bad signature, no request", token: f.rs256().signedWith("RS256", "rsa1", f.rsaOther).build(t), answer: `{"active":true}`, reason: ReasonBadSignature},
		{name: "inactive", token: good, answer: `{"active":false}`, reason: ReasonTokenInactive, asked: 1},
		{name: "active string", token: good, answer: `{"active":"true"}`, reason: ReasonTokenInactive, asked: 1},
		{name: "other issuer", token: good, answer: `{"active":true,"iss":"https://other"}`, reason: ReasonIssMismatch, asked: 1},
		{name: "unreachable", token: good, err: errors.New("timeout"), reason: ReasonIntrospectionFailed, asked: 1},
		{name: "active", token: good, answer: `{"active":true,"token_type":"Bearer"}`, reason: ReasonOK, asked: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &fakeIntrospector{answer: tc.answer, err: tc.err}
			v := introVerifier(t, in, "always", nil)
			res, err := v.Validate(context.Background(), Request{Token: tc.token, Issuer: testIssuer})
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if res.Reason != tc.reason {
				t.Fatalf("reason %s, want %s: %v", res.Reason, tc.reason, res.Err())
			}
			if len(in.asked) != tc.asked {
				t.Errorf("asked %d times, want %d", len(in.asked), tc.asked)
			}
			if (len(in.stored) == 1) != (tc.reason == ReasonOK) {
				t.Errorf("%d answers cached for reason %s", len(in.stored), tc.reason)
			}
		})
	}
}

func TestIntrospectionCache(t *testing.T) {
	f := testFixture(t)
	t.Run("bounded by the TTL", func(t *testing.T) {
		in := &fakeIntrospector{answer: `{"active":true}`}
		v := introVerifier(t, in, "always", Settings{"introspection_cache_ttl": "20"})
		tok := f.rs256().build(t) // exp in 5 min
		for range 3 {
			if res, err := v.Validate(context.Background(), Request{Token: tok, Issuer: testIssuer}); err != nil || !res.Authorized {
				t.Fatalf("refused: %v %v", err, res.Err())
			}
		}
		if len(in.asked) != 1 {
			t.Errorf("asked %d times for 3 logins within the TTL, want 1", len(in.asked))
		}
		for _, until := range in.stored {
			if !until.Equal(testNow.Add(20 * time.Second)) {
				t.Errorf("cached until %v, want now + 20 s", until)
			}
		}
	})
	t.Run("bounded by exp", func(t *testing.T) {
		in := &fakeIntrospector{answer: `{"active":true}`}
		v := introVerifier(t, in, "always", Settings{"introspection_cache_ttl": "3600"})
		exp := testNow.Add(90 * time.Second)
		tok := f.rs256().c("exp", exp.Unix()).build(t)
		if res, err := v.Validate(context.Background(), Request{Token: tok, Issuer: testIssuer}); err != nil || !res.Authorized {
			t.Fatalf("refused: %v %v", err, res.Err())
		}
		for _, until := range in.stored {
			if until.After(exp) {
				t.Errorf("cached until %v, past the token's exp %v", until, exp)
			}
		}
	})
	t.Run("TTL 0 asks every time", func(t *testing.T) {
		in := &fakeIntrospector{answer: `{"active":true}`}
		v := introVerifier(t, in, "always", Settings{"introspection_cache_ttl": "0"})
		tok := f.rs256().build(t)
		for range 3 {
			if res, err := v.Validate(context.Background(), Request{Token: tok, Issuer: testIssuer}); err != nil || !res.Authorized {
				t.Fatalf("refused: %v %v", err, res.Err())
			}
		}
		if len(in.asked) != 3 || len(in.stored) != 0 {
			t.Errorf("asked %d times and cached %d answers, want 3 and 0", len(in.asked), len(in.stored))
		}
	})
	t.Run("cache only needs the network", func(t *testing.T) {
		in := &fakeIntrospector{answer: `{"active":true}`}
		v := introVerifier(t, in, "always", nil)
		_, err := v.Validate(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer, CacheOnly: true})
		var ne *NeedsIntrospectionError
		if !errors.As(err, &ne) || !errors.Is(err, keycache.ErrNeedsNetwork) {
			t.Fatalf("error %v, want a NeedsIntrospectionError", err)
		}
		if len(in.asked) != 0 {
			t.Errorf("asked the endpoint with CacheOnly")
		}
	})
	t.Run("supplied answer", func(t *testing.T) {
		in := &fakeIntrospector{}
		s := baseSettings()
		s["introspection"], s["introspection_client_id"], s["introspection_secret_file"] = "always", "c", secretFile(t)
		v, err := New(s, WithKeySource(&memSource{set: f.set}), WithIntrospector(in), WithClock(testClock),
			WithIntrospectionAnswer([]byte(`{"active":false}`), nil))
		if err != nil {
			t.Fatal(err)
		}
		res, err := v.Validate(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer, CacheOnly: true})
		if err != nil || res.Reason != ReasonTokenInactive || len(in.asked) != 0 {
			t.Fatalf("%v %s asked %d", err, res.Reason, len(in.asked))
		}
	})
}

func TestIntrospectionConfigErrors(t *testing.T) {
	cases := []struct {
		name     string
		settings Settings
		setting  string
	}{
		{name: "bad mode", settings: Settings{"introspection": "sometimes"}, setting: "oauth_jwt.introspection"},
		{name: "no client id", settings: Settings{"introspection": "always", "introspection_secret_file": "/etc/s"}, setting: "oauth_jwt.introspection_client_id"},
		{name: "no secret file", settings: Settings{"introspection": "opaque", "introspection_client_id": "c"}, setting: "oauth_jwt.introspection_secret_file"},
		{name: "relative secret file", settings: Settings{"introspection": "opaque", "introspection_client_id": "c", "introspection_secret_file": "s"}, setting: "oauth_jwt.introspection_secret_file"},
		{name: "with jwks_file", settings: Settings{"introspection": "always", "introspection_client_id": "c", "introspection_secret_file": "/etc/s", "jwks_file": "/etc/k"}, setting: "oauth_jwt.introspection"},
		{name: "endpoint over http", settings: Settings{"introspection_endpoint": "http://idp.example.com/i"}, setting: "oauth_jwt.introspection_endpoint"},
		{name: "ttl too long", settings: Settings{"introspection_cache_ttl": "3601"}, setting: "oauth_jwt.introspection_cache_ttl"},
		{name: "ttl negative", settings: Settings{"introspection_cache_ttl": "-1"}, setting: "oauth_jwt.introspection_cache_ttl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := baseSettings()
			for k, v := range tc.settings {
				s[k] = v
			}
			_, err := New(s, WithKeySource(&memSource{}))
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Setting != tc.setting {
				t.Fatalf("error %v, want a ConfigError for %s", err, tc.setting)
			}
		})
	}
}

// The secret file gets the trusted-file checks, and its contents never
// reach an error.
func TestIntrospectionSecretFile(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, []byte("topsecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o644|0o002)
	twoLines := filepath.Join(dir, "two")
	os.WriteFile(twoLines, []byte("topsecret\nmore\n"), 0o600)
	for _, p := range []string{open, twoLines, filepath.Join(dir, "none")} {
		in := &fakeIntrospector{answer: `{"active":true}`}
		v := introVerifier(t, in, "always", Settings{"introspection_secret_file": p})
		res, err := v.Validate(context.Background(), Request{Token: testFixture(t).rs256().build(t), Issuer: testIssuer})
		if err != nil || res.Reason != ReasonIntrospectionFailed {
			t.Fatalf("%s: %v %s", p, err, res.Reason)
		}
		d := res.Err().(*RejectionError).Detail
		if !strings.Contains(d, p) || strings.Contains(d, "topsecret") {
			t.Errorf("detail %q", d)
		}
		if len(in.asked) != 0 {
			t.Errorf("asked without a secret")
		}
	}
}
