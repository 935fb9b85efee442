package keycache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A cache entry fetched "in the future" (the clock stepped back, a cache
// copied from another host) has no known age: it is refetched, and never
// served as last-known-good, so cache_max_stale holds.
func TestFutureFetchedAt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		back    time.Duration
		down    bool
		wantErr bool
	}{
		{name: "identity provider down, clock stepped back 1 h", back: time.Hour, down: true, wantErr: true},
		{name: "identity provider down, clock stepped back 30 days", back: 30 * 24 * time.Hour, down: true, wantErr: true},
		{name: "identity provider down, clock stepped back 1 s", back: time.Second, down: true, wantErr: true},
		{name: "identity provider up: refetched", back: time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := newTestIDP(t, false)
			clock := newFakeClock()
			c := mustNew(t, testConfig(t, clock))
			q := Query{Issuer: idp.issuer}
			if _, err := c.Keys(t.Context(), q); err != nil {
				t.Fatal(err)
			}
			clock.Advance(-tc.back)
			idp.down(tc.down)
			k, err := c.Keys(t.Context(), q)
			if !tc.wantErr {
				if err != nil || !k.Fetched || k.Stale || !k.FetchedAt.Equal(clock.Now()) {
					t.Fatalf("Keys = fetched %v stale %v at %v, %v; want a refetch at %v", k.Fetched, k.Stale, k.FetchedAt, err, clock.Now())
				}
				checkHits(t, idp, 2, 2)
				return
			}
			if err == nil {
				t.Fatalf("Keys served keys fetched %v after now (stale %v, %q); want an error", tc.back, k.Stale, k.StaleCause)
			}
			if !errors.Is(err, ErrFutureFetch) || !errors.Is(err, ErrUnavailable) {
				t.Errorf("err = %v; want it to match ErrFutureFetch and ErrUnavailable", err)
			}
			if !strings.Contains(err.Error(), "after the current time") || !strings.Contains(err.Error(), "status 500") {
				t.Errorf("err = %q; want it to say the copy is from the future and why the refetch failed", err)
			}
			if WireKind(err) != "future_fetch" || !errors.Is(FromWireKind(err.Error(), WireKind(err)), ErrUnavailable) {
				t.Errorf("WireKind = %q; want future_fetch, rebuilt as matching ErrUnavailable", WireKind(err))
			}
			// A cache-only query (the backend's) refuses it as well.
			if _, err := c.Keys(t.Context(), Query{Issuer: idp.issuer, CacheOnly: true}); !errors.Is(err, ErrFutureFetch) {
				t.Errorf("cache-only Keys: err = %v; want ErrFutureFetch", err)
			}
		})
	}
}

// A cache directory the server can no longer write does not fail logins
// while the identity provider answers: the keys just fetched are served,
// marked Unstored, and nothing is written.
func TestUnwritableDirectoryServesFetchedKeys(t *testing.T) {
	unwritable := func(t *testing.T) {
		t.Helper()
		createTemp = func(dir, pattern string) (*os.File, error) {
			return nil, &fs.PathError{Op: "open", Path: filepath.Join(dir, pattern), Err: syscall.EACCES}
		}
		t.Cleanup(func() { createTemp = os.CreateTemp })
	}
	t.Run("cold cache", func(t *testing.T) {
		idp := newTestIDP(t, false)
		clock := newFakeClock()
		cfg := testConfig(t, clock)
		c := mustNew(t, cfg)
		unwritable(t)
		q := Query{Issuer: idp.issuer}
		k, err := c.Keys(t.Context(), q)
		if err != nil {
			t.Fatalf("Keys: %v", err)
		}
		if !k.Fetched || !strings.Contains(k.Unstored, "permission denied") || !slices.Equal(kidsOf(k.Set), []string{"k1"}) {
			t.Errorf("Keys = fetched %v, unstored %q, kids %v; want k1 fetched, unstored for permission denied", k.Fetched, k.Unstored, kidsOf(k.Set))
		}
		set, err := ParseKeySet(k.JWKS)
		if err != nil || !slices.Equal(kidsOf(set), []string{"k1"}) {
			t.Errorf("Keys.JWKS parses to %v (%v); want the fetched set", set, err)
		}
		if m, _ := filepath.Glob(filepath.Join(cfg.Dir, "*.json")); len(m) != 0 {
			t.Errorf("entries written: %v", m)
		}
		// Nothing stored: the backend's cache-only query still needs the network.
		if _, err := c.Keys(t.Context(), Query{Issuer: idp.issuer, CacheOnly: true}); !errors.Is(err, ErrNeedsNetwork) {
			t.Errorf("cache-only Keys: err = %v; want ErrNeedsNetwork", err)
		}
		checkHits(t, idp, 1, 1)
	})
	t.Run("warm cache due for refresh", func(t *testing.T) {
		idp := newTestIDP(t, false)
		clock := newFakeClock()
		c := mustNew(t, testConfig(t, clock))
		q := Query{Issuer: idp.issuer}
		if _, err := c.Keys(t.Context(), q); err != nil {
			t.Fatal(err)
		}
		unwritable(t)
		idp.setKIDs("k2")
		clock.Advance(DefaultRefreshInterval)
		k, err := c.Keys(t.Context(), q)
		if err != nil || k.Unstored == "" || !slices.Equal(kidsOf(k.Set), []string{"k2"}) {
			t.Fatalf("Keys = unstored %q kids %v, %v; want k2, unstored", k.Unstored, kidsOf(k.Set), err)
		}
	})
	t.Run("identity provider down too", func(t *testing.T) {
		idp := newTestIDP(t, false)
		c := mustNew(t, testConfig(t, newFakeClock()))
		unwritable(t)
		idp.down(true)
		_, err := c.Keys(t.Context(), Query{Issuer: idp.issuer})
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "status 500") {
			t.Errorf("err = %v; want ErrUnavailable saying what the identity provider answered", err)
		}
	})
	t.Run("written and not flagged when writable", func(t *testing.T) {
		idp := newTestIDP(t, false)
		c := mustNew(t, testConfig(t, newFakeClock()))
		k, err := c.Keys(t.Context(), Query{Issuer: idp.issuer})
		if err != nil || k.Unstored != "" || k.JWKS != nil {
			t.Errorf("Keys = unstored %q, JWKS %d bytes, %v; want stored", k.Unstored, len(k.JWKS), err)
		}
	})
}

// The directories above the cache directory are checked as well: one that
// others can write lets them swap the whole cache.
func TestNewRefusesCacheUnderOpenDirectory(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode uint32
		ok   bool
	}{
		{"parent 0777", 0o777, false},
		{"parent 0770", 0o770, false},
		{"parent 1777 (sticky, as /tmp)", 0o1777, true},
		{"parent 0755", 0o755, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, newFakeClock())
			parent := filepath.Dir(cfg.Dir)
			if err := syscall.Chmod(parent, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := New(cfg)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("New: %v", err)
			case !tc.ok && (!errors.Is(err, ErrInsecureCache) || !strings.Contains(err.Error(), "is in directory "+parent)):
				t.Fatalf("New: err = %v; want ErrInsecureCache naming %s", err, parent)
			}
		})
	}
}
