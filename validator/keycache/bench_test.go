package keycache

import (
	"bytes"
	"os"
	"testing"
)

// BenchmarkKeysWarm is the key cache's share of a login with a warm cache:
// a new Cache (each backend makes one), then a cache-only Keys call that
// reads the discovery document and the JWKS from disk.
func BenchmarkKeysWarm(b *testing.B) {
	benchKeysWarm(b, newTestIDP(b, false))
}

// BenchmarkKeysWarmKeycloak is BenchmarkKeysWarm with the documents a real
// Keycloak 26 serves (testdata: a 6.6 kB discovery document and a JWKS of
// two RSA keys with certificate chains, 2.9 kB), the issuer rewritten.
func BenchmarkKeysWarmKeycloak(b *testing.B) {
	idp := newTestIDP(b, false)
	for _, d := range []struct {
		file string
		set  func(endpoint)
	}{
		{"testdata/keycloak-26-discovery.json", idp.setDiscovery},
		{"testdata/keycloak-26-jwks.json", idp.setJWKS},
	} {
		body, err := os.ReadFile(d.file)
		if err != nil {
			b.Fatal(err)
		}
		d.set(endpoint{body: bytes.ReplaceAll(body, []byte("ISSUER"), []byte(idp.issuer))})
	}
	benchKeysWarm(b, idp)
}

func benchKeysWarm(b *testing.B, idp *testIDP) {
	cfg := testConfig(b, newFakeClock())
	if _, err := mustNew(b, cfg).Keys(b.Context(), Query{Issuer: idp.issuer}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Keys(b.Context(), Query{Issuer: idp.issuer, CacheOnly: true}); err != nil {
			b.Fatal(err)
		}
	}
}
