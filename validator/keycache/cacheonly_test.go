package keycache

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// CacheOnly never touches the network: a cold or stale cache answers
// ErrNeedsNetwork at once, a fresh one is served as usual.
func TestCacheOnly(t *testing.T) {
	idp := newTestIDP(t, false)
	clock := newFakeClock()
	c := mustNew(t, Config{Dir: filepath.Join(t.TempDir(), "keys"), Now: clock.Now,
		RefreshInterval: 10 * time.Minute, KIDRefetchInterval: time.Minute})
	ctx := context.Background()
	q := Query{Issuer: idp.issuer, CacheOnly: true}

	if _, err := c.Keys(ctx, q); !errors.Is(err, ErrNeedsNetwork) {
		t.Fatalf("cold cache, CacheOnly: err = %v, want ErrNeedsNetwork", err)
	}
	if d, j := idp.hits(); d != 0 || j != 0 {
		t.Fatalf("CacheOnly made %d discovery and %d JWKS requests", d, j)
	}

	q.CacheOnly = false
	if _, err := c.Keys(ctx, q); err != nil { // warm it
		t.Fatal(err)
	}
	q.CacheOnly = true
	k, err := c.Keys(ctx, q)
	if err != nil || k.Set == nil || k.Fetched {
		t.Fatalf("fresh cache, CacheOnly: keys %+v, err %v; want served from disk", k, err)
	}

	// An unknown kid due for a refetch (last fetch 2 min ago, interval 1 min)
	// needs the network although the entry is fresh.
	clock.Advance(2 * time.Minute)
	d0, j0 := idp.hits()
	if _, err := c.Keys(ctx, Query{Issuer: idp.issuer, CacheOnly: true, MissingKID: "rotated"}); !errors.Is(err, ErrNeedsNetwork) {
		t.Fatalf("unknown kid, CacheOnly: err = %v, want ErrNeedsNetwork", err)
	}

	clock.Advance(10 * time.Minute) // older than RefreshInterval
	if _, err := c.Keys(ctx, q); !errors.Is(err, ErrNeedsNetwork) {
		t.Fatalf("stale cache, CacheOnly: err = %v, want ErrNeedsNetwork", err)
	}
	if d, j := idp.hits(); d != d0 || j != j0 {
		t.Fatalf("CacheOnly made requests")
	}
}
