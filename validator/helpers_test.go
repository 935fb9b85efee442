package validator

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

const (
	testIssuer = "https://idp.example.com/realms/test"
	testAud    = "pg"
)

// testNow is the fixed clock of the tests.
var testNow = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func testClock() time.Time { return testNow }

// fixture holds the test keys and the key set the issuer publishes.
type fixture struct {
	rsa       *rsa.PrivateKey // kid "rsa1", alg RS256
	rsaOther  *rsa.PrivateKey // not published; signs with kid "rsa1"
	ps        *rsa.PrivateKey // kid "ps1", alg PS256
	rs512     *rsa.PrivateKey // kid "rs512only", alg RS512
	weak      *rsa.PrivateKey // kid "weak1", 1024 bits
	enc       *rsa.PrivateKey // kid "enc1", use "enc"
	opsEnc    *rsa.PrivateKey // kid "ops1", key_ops ["encrypt"]
	rotated   *rsa.PrivateKey // kid "rsa2", published only after a refetch
	ec        *ecdsa.PrivateKey
	ec384     *ecdsa.PrivateKey // kid "ec384", no alg
	ed        ed25519.PrivateKey
	hmac      []byte // kid "hmac1", kty "oct"
	set       jwk.Set
	rotatedTo jwk.Set // set plus "rsa2"
	pubPEM    []byte
}

var (
	fixOnce sync.Once
	fix     *fixture
)

// testFixture returns the shared keys (RSA generation is slow).
func testFixture(tb testing.TB) *fixture {
	tb.Helper()
	fixOnce.Do(func() {
		f := &fixture{}
		gen := func(bits int) *rsa.PrivateKey {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				panic(err)
			}
			return k
		}
		f.rsa, f.rsaOther, f.ps, f.rs512 = gen(2048), gen(2048), gen(2048), gen(2048)
		f.enc, f.opsEnc, f.rotated = gen(2048), gen(2048), gen(2048)
		// Go refuses to generate keys below 1024 bits; 1024 is below our floor.
		f.weak = gen(1024)
		var err error
		if f.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if f.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if _, f.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		f.hmac = []byte("0123456789abcdef0123456789abcdef")
		f.set = jwk.NewSet()
		add := func(set jwk.Set, raw any, kv ...any) {
			k, err := jwk.Import(raw)
			if err != nil {
				panic(err)
			}
			for i := 0; i < len(kv); i += 2 {
				if err := k.Set(kv[i].(string), kv[i+1]); err != nil {
					panic(err)
				}
			}
			if err := set.AddKey(k); err != nil {
				panic(err)
			}
		}
		add(f.set, f.rsa.Public(), "kid", "rsa1", "alg", "RS256", "use", "sig")
		add(f.set, f.ps.Public(), "kid", "ps1", "alg", "PS256", "use", "sig")
		add(f.set, f.rs512.Public(), "kid", "rs512only", "alg", "RS512", "use", "sig")
		add(f.set, f.enc.Public(), "kid", "enc1", "alg", "RSA-OAEP", "use", "enc")
		add(f.set, f.opsEnc.Public(), "kid", "ops1", "key_ops", []string{"encrypt"})
		add(f.set, f.ec.Public(), "kid", "ec1", "alg", "ES256", "use", "sig")
		add(f.set, f.ec384.Public(), "kid", "ec384", "use", "sig")
		add(f.set, f.ed.Public(), "kid", "ed1", "alg", "EdDSA", "use", "sig")
		add(f.set, f.hmac, "kid", "hmac1", "alg", "HS256")
		f.set = withWeakKey(f.set, f.weak)
		rot, err := f.set.Clone()
		if err != nil {
			panic(err)
		}
		add(rot, f.rotated.Public(), "kid", "rsa2", "alg", "RS256", "use", "sig")
		f.rotatedTo = rot
		pk, err := jwk.Import(f.rsa.Public())
		if err != nil {
			panic(err)
		}
		if f.pubPEM, err = jwk.EncodePEM(pk); err != nil {
			panic(err)
		}
		fix = f
	})
	return fix
}

// withWeakKey returns set plus the RSA key weak as kid "weak1". jwx
// refuses RSA keys under 2048 bits when it imports or parses them; a key
// set parsed leniently (jwk.WithStrictKeySetParsing(false)) keeps such an
// entry as a placeholder, which is what the validator then sees.
func withWeakKey(set jwk.Set, weak *rsa.PrivateKey) jwk.Set {
	js, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	entry := fmt.Sprintf(`{"kty":"RSA","kid":"weak1","alg":"RS256","use":"sig","n":%q,"e":"AQAB"}`,
		b64url(weak.N.Bytes()))
	js = append(js[:len(js)-2], []byte(","+entry+"]}")...)
	out, err := jwk.Parse(js, jwk.WithStrictKeySetParsing(false))
	if err != nil {
		panic(err)
	}
	return out
}

// memSource is an in-memory keycache.Source.
type memSource struct {
	mu       sync.Mutex
	set      jwk.Set
	afterKID jwk.Set // returned for a MissingKID query when set
	err      error
	stale    bool
	cause    string
	unstored string // Keys.Unstored
	queries  []keycache.Query
	conv     map[jwk.Set]*keycache.KeySet // each set as the cache would serve it
}

func (m *memSource) Keys(_ context.Context, q keycache.Query) (keycache.Keys, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queries = append(m.queries, q)
	if m.err != nil {
		return keycache.Keys{}, m.err
	}
	set := m.set
	if q.MissingKID != "" && m.afterKID != nil {
		set = m.afterKID
	}
	if m.conv == nil {
		m.conv = map[jwk.Set]*keycache.KeySet{}
	}
	ks, ok := m.conv[set]
	if !ok {
		ks = toKeySet(set)
		m.conv[set] = ks
	}
	return keycache.Keys{Set: ks, FetchedAt: testNow.Add(-2 * time.Hour), Stale: m.stale, StaleCause: m.cause, Unstored: m.unstored}, nil
}

// toKeySet turns a set built with jwx into what the key cache serves: its
// JSON, parsed by keycache.ParseKeySet. The tests build keys and sign tokens
// with jwx, and the validator checks them with its own code.
func toKeySet(set jwk.Set) *keycache.KeySet {
	if set == nil {
		return nil
	}
	js, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	ks, err := keycache.ParseKeySet(js)
	if err != nil {
		panic(err)
	}
	return ks
}

// tok describes a token to build.
type tok struct {
	hdr map[string]any
	cl  map[string]any
	alg string // signing algorithm (may differ from hdr["alg"])
	key any    // private key or HMAC secret; nil: empty signature
}

// del marks a member to remove.
type delT struct{}

var del = delT{}

// stdClaims are the claims of a Keycloak-like access token.
func stdClaims() map[string]any {
	return map[string]any{
		"iss":                testIssuer,
		"aud":                []any{testAud, "account"},
		"azp":                "psql",
		"sub":                "8d8b6a2c-alice",
		"preferred_username": "alice",
		"typ":                "Bearer",
		"exp":                testNow.Add(5 * time.Minute).Unix(),
		"iat":                testNow.Add(-10 * time.Second).Unix(),
		"nbf":                testNow.Add(-10 * time.Second).Unix(),
		"scope":              "openid profile db",
		"groups":             []any{"dba", "analysts"},
		"realm_access":       map[string]any{"roles": []any{"offline_access", "reader"}},
	}
}

// rs256 is the standard valid token description.
func (f *fixture) rs256() *tok {
	return &tok{hdr: map[string]any{"alg": "RS256", "typ": "JWT", "kid": "rsa1"}, cl: stdClaims(), alg: "RS256", key: f.rsa}
}

// signedWith switches to another key and algorithm.
func (t *tok) signedWith(alg, kid string, key any) *tok {
	t.alg, t.key = alg, key
	t.hdr["alg"] = alg
	if kid == "" {
		delete(t.hdr, "kid")
	} else {
		t.hdr["kid"] = kid
	}
	return t
}

func (t *tok) h(k string, v any) *tok {
	if v == del {
		delete(t.hdr, k)
	} else {
		t.hdr[k] = v
	}
	return t
}

func (t *tok) c(k string, v any) *tok {
	if v == del {
		delete(t.cl, k)
	} else {
		t.cl[k] = v
	}
	return t
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("marshal: %v", err)
	}
	return b
}

// signRaw signs header and payload JSON as given.
func signRaw(tb testing.TB, hdr, payload []byte, alg string, key any) string {
	tb.Helper()
	input := b64url(hdr) + "." + b64url(payload)
	if key == nil {
		return input + "."
	}
	sig, err := jwsbb.Sign(key, alg, []byte(input), nil)
	if err != nil {
		tb.Fatalf("sign %s: %v", alg, err)
	}
	return input + "." + b64url(sig)
}

// build returns the compact JWS.
func (t *tok) build(tb testing.TB) string {
	tb.Helper()
	return signRaw(tb, mustJSON(tb, t.hdr), mustJSON(tb, t.cl), t.alg, t.key)
}

// baseSettings are the settings of most cases.
func baseSettings() Settings {
	return Settings{"audience": testAud, "server.data_directory": "/nonexistent/data"}
}

// newTestVerifier builds a Verifier over src with extra settings.
func newTestVerifier(tb testing.TB, src keycache.Source, extra Settings) *Verifier {
	tb.Helper()
	s := baseSettings()
	maps.Copy(s, extra)
	v, err := New(s, WithKeySource(src), WithClock(testClock))
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return v
}

// assertNoTokenText fails when a log record or the error contains the
// token or one of its segments.
func assertNoTokenText(tb testing.TB, token string, res Result, err error) {
	tb.Helper()
	var segs []string
	if len(token) >= minScrubLen {
		segs = append(segs, token)
	}
	for _, s := range strings.Split(token, ".") {
		if len(s) >= minScrubLen {
			segs = append(segs, s)
		}
	}
	for _, s := range segs {
		for i, l := range res.Logs {
			if strings.Contains(l.Message, s) || strings.Contains(l.Detail, s) {
				tb.Errorf("log record %d contains token text: %+v", i, l)
			}
		}
		if err != nil && strings.Contains(err.Error(), s) {
			tb.Errorf("error contains token text: %v", err)
		}
	}
}
