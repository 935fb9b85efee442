package keycache

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// testKeyJSON is the public part of one P-256 key as a JWK object without
// kid, shared by all tests (key generation is the slow part).
var testKeyJSON = sync.OnceValue(func() map[string]any {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	k, err := jwk.Import(&priv.PublicKey)
	if err != nil {
		panic(err)
	}
	b, err := json.Marshal(k)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
})

// jwksJSON returns a JWKS with one key per kid (the same public key).
func jwksJSON(kids ...string) []byte {
	keys := make([]map[string]any, 0, len(kids))
	for _, kid := range kids {
		k := map[string]any{"kid": kid, "use": "sig", "alg": "ES256"}
		for name, v := range testKeyJSON() {
			k[name] = v
		}
		keys = append(keys, k)
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	return b
}

// endpoint is how the test identity provider answers one URL.
type endpoint struct {
	status int           // 0 means 200
	body   []byte        // nil means the default document
	hang   bool          // never answer (until the client gives up)
	delay  time.Duration // wait before answering
}

// testIDP is a discovery + JWKS server on loopback that counts requests.
type testIDP struct {
	srv       *httptest.Server
	issuer    string
	discURL   string
	jwksURL   string
	stop      chan struct{}
	discHits  atomic.Int64
	jwksHits  atomic.Int64
	mu        sync.Mutex
	disc      endpoint
	jwks      endpoint
	kids      []string
	extraPath map[string]http.HandlerFunc
}

const testRealm = "/realms/test"

// newTestIDP starts an identity provider (TLS when useTLS) serving a JWKS
// with key "k1".
func newTestIDP(tb testing.TB, useTLS bool) *testIDP {
	tb.Helper()
	p := &testIDP{stop: make(chan struct{}), kids: []string{"k1"}, extraPath: map[string]http.HandlerFunc{}}
	if useTLS {
		p.srv = httptest.NewTLSServer(p)
	} else {
		p.srv = httptest.NewServer(p)
	}
	// Cleanups run last-in first-out: release hanging handlers, then close.
	tb.Cleanup(p.srv.Close)
	tb.Cleanup(func() { close(p.stop) })
	p.issuer = p.srv.URL + testRealm
	p.discURL = p.issuer + "/.well-known/openid-configuration"
	p.jwksURL = p.issuer + "/protocol/openid-connect/certs"
	return p
}

func (p *testIDP) setDiscovery(e endpoint) { p.mu.Lock(); p.disc = e; p.mu.Unlock() }
func (p *testIDP) setJWKS(e endpoint)      { p.mu.Lock(); p.jwks = e; p.mu.Unlock() }
func (p *testIDP) setKIDs(kids ...string)  { p.mu.Lock(); p.kids = kids; p.mu.Unlock() }

// handle serves another path with h.
func (p *testIDP) handle(path string, h http.HandlerFunc) {
	p.mu.Lock()
	p.extraPath[path] = h
	p.mu.Unlock()
}

// down makes both documents answer 500 (or work again).
func (p *testIDP) down(isDown bool) {
	e := endpoint{}
	if isDown {
		e.status = http.StatusInternalServerError
	}
	p.setDiscovery(e)
	p.setJWKS(e)
}

func (p *testIDP) hits() (disc, jwks int64) { return p.discHits.Load(), p.jwksHits.Load() }

func (p *testIDP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var e endpoint
	var def []byte
	p.mu.Lock()
	switch r.URL.Path {
	case testRealm + "/.well-known/openid-configuration":
		p.discHits.Add(1)
		e = p.disc
		def, _ = json.Marshal(map[string]any{
			"issuer":         p.issuer,
			"jwks_uri":       p.jwksURL,
			"token_endpoint": p.issuer + "/protocol/openid-connect/token",
		})
	case testRealm + "/protocol/openid-connect/certs":
		p.jwksHits.Add(1)
		e = p.jwks
		def = jwksJSON(p.kids...)
	default:
		h := p.extraPath[r.URL.Path]
		p.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
		return
	}
	p.mu.Unlock()
	if e.delay > 0 {
		select {
		case <-time.After(e.delay):
		case <-r.Context().Done():
			return
		}
	}
	if e.hang {
		select {
		case <-r.Context().Done():
		case <-p.stop:
		}
		return
	}
	body := e.body
	if body == nil {
		body = def
	}
	w.Header().Set("Content-Type", "application/json")
	if e.status != 0 {
		w.WriteHeader(e.status)
	}
	_, _ = w.Write(body)
}

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testConfig is the configuration the tests start from: a cache directory
// inside a fresh temporary directory, the fake clock, loopback http allowed.
func testConfig(tb testing.TB, clock *fakeClock) Config {
	tb.Helper()
	client, err := NewHTTPClient(5*time.Second, "", "")
	if err != nil {
		tb.Fatal(err)
	}
	return Config{
		Dir:        filepath.Join(tb.TempDir(), "keys"),
		HTTPClient: client,
		Now:        clock.Now,
	}
}

func mustNew(tb testing.TB, cfg Config) *Cache {
	tb.Helper()
	c, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return c
}

// entryPath is the cache file of a document.
func entryPath(dir, kind, issuer, url string) string {
	return filepath.Join(dir, entryName(kind, issuer, url)+entrySuffix)
}

// writeCAFile writes the certificate of a TLS test server as a PEM file.
func writeCAFile(tb testing.TB, srv *httptest.Server) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ca.pem")
	block := &pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// checkHits fails when the identity provider did not see exactly the
// expected numbers of requests.
func checkHits(tb testing.TB, p *testIDP, wantDisc, wantJWKS int64) {
	tb.Helper()
	if d, j := p.hits(); d != wantDisc || j != wantJWKS {
		tb.Errorf("requests: discovery %d, JWKS %d; want %d, %d", d, j, wantDisc, wantJWKS)
	}
}

// kidsOf lists the kids of a key set.
func kidsOf(set *KeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KID)
	}
	return out
}
