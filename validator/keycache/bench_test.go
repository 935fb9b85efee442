package keycache

import "testing"

// BenchmarkKeysWarm is the key cache's share of a login with a warm cache:
// a new Cache (each backend makes one), then a cache-only Keys call that
// reads the discovery document and the JWKS from disk.
func BenchmarkKeysWarm(b *testing.B) {
	idp := newTestIDP(b, false)
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
