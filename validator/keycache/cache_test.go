package keycache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestFreshHitMakesNoRequest(t *testing.T) {
	idp := newTestIDP(t, false)
	clock := newFakeClock()
	cfg := testConfig(t, clock)
	q := Query{Issuer: idp.issuer}

	first := mustNew(t, cfg)
	k, err := first.Keys(t.Context(), q)
	if err != nil {
		t.Fatalf("cold Keys: %v", err)
	}
	if !k.Fetched || k.Stale || k.Set.Len() != 1 || !k.FetchedAt.Equal(clock.Now()) {
		t.Fatalf("cold Keys = fetched %v stale %v len %d at %v", k.Fetched, k.Stale, k.Set.Len(), k.FetchedAt)
	}
	checkHits(t, idp, 1, 1)

	clock.Advance(DefaultRefreshInterval - time.Second)
	for _, tc := range []struct {
		name string
		c    *Cache
	}{
		{"same cache", first},
		{"another backend on the same directory", mustNew(t, cfg)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := tc.c.Keys(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			if k.Fetched || k.Stale || !slices.Equal(kidsOf(k.Set), []string{"k1"}) {
				t.Errorf("warm Keys = fetched %v stale %v kids %v", k.Fetched, k.Stale, kidsOf(k.Set))
			}
			checkHits(t, idp, 1, 1)
		})
	}
}

func TestStaleEntryIsRefreshed(t *testing.T) {
	idp := newTestIDP(t, false)
	clock := newFakeClock()
	c := mustNew(t, testConfig(t, clock))
	q := Query{Issuer: idp.issuer}
	if _, err := c.Keys(t.Context(), q); err != nil {
		t.Fatal(err)
	}
	idp.setKIDs("k2")
	clock.Advance(DefaultRefreshInterval)
	k, err := c.Keys(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Fetched || k.Stale || !slices.Equal(kidsOf(k.Set), []string{"k2"}) {
		t.Errorf("Keys = fetched %v stale %v kids %v; want a refetch with k2", k.Fetched, k.Stale, kidsOf(k.Set))
	}
	checkHits(t, idp, 2, 2)
}

// TestIdentityProviderDown walks one cache through an outage with the
// injected clock (refresh 5 min, max stale 1 h, retry 10 s).
func TestIdentityProviderDown(t *testing.T) {
	idp := newTestIDP(t, false)
	clock := newFakeClock()
	cfg := testConfig(t, clock)
	c := mustNew(t, cfg)
	q := Query{Issuer: idp.issuer}

	steps := []struct {
		name              string
		advance           time.Duration
		down              bool
		wantErr           error
		wantStale         bool
		wantCause         string
		wantDisc, wantJWK int64
	}{
		{name: "warm", wantDisc: 1, wantJWK: 1},
		{name: "down but fresh: no request", advance: time.Minute, down: true, wantDisc: 1, wantJWK: 1},
		{name: "down and stale: last-known-good", advance: 5 * time.Minute, down: true,
			wantStale: true, wantCause: "status 500", wantDisc: 2, wantJWK: 2},
		{name: "retry backoff: no request", advance: time.Second, down: true,
			wantStale: true, wantCause: "status 500", wantDisc: 2, wantJWK: 2},
		{name: "retry after backoff", advance: DefaultRetryInterval, down: true,
			wantStale: true, wantCause: "status 500", wantDisc: 3, wantJWK: 3},
		{name: "beyond max stale", advance: DefaultMaxStale, down: true,
			wantErr: ErrUnavailable, wantCause: "maximum staleness", wantDisc: 4, wantJWK: 3},
		{name: "up again, within the backoff", advance: time.Second,
			wantErr: ErrUnavailable, wantCause: "status 500", wantDisc: 4, wantJWK: 3},
		{name: "up again, after the backoff", advance: DefaultRetryInterval, wantDisc: 5, wantJWK: 4},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clock.Advance(st.advance)
			idp.down(st.down)
			k, err := c.Keys(t.Context(), q)
			switch {
			case st.wantErr != nil:
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("err = %v; want %v", err, st.wantErr)
				}
				if !strings.Contains(err.Error(), st.wantCause) {
					t.Errorf("err = %q; want it to contain %q", err, st.wantCause)
				}
			case err != nil:
				t.Fatalf("err = %v", err)
			default:
				if k.Stale != st.wantStale || !strings.Contains(k.StaleCause, st.wantCause) {
					t.Errorf("Stale = %v, StaleCause = %q; want %v, %q", k.Stale, k.StaleCause, st.wantStale, st.wantCause)
				}
				if k.Set == nil || k.Set.Len() != 1 {
					t.Errorf("no keys served")
				}
			}
			checkHits(t, idp, st.wantDisc, st.wantJWK)
		})
	}
}

func TestColdCacheIdentityProviderDown(t *testing.T) {
	tests := []struct {
		name      string
		disc      endpoint
		jwks      endpoint
		wantCause string
		wantJWKS  int64
	}{
		{"discovery 500", endpoint{status: 500}, endpoint{}, "status 500", 0},
		{"discovery 404", endpoint{status: 404}, endpoint{}, "status 404", 0},
		{"JWKS 500", endpoint{}, endpoint{status: 500}, "status 500", 1},
		{"JWKS 503", endpoint{}, endpoint{status: 503}, "status 503", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idp := newTestIDP(t, false)
			idp.setDiscovery(tc.disc)
			idp.setJWKS(tc.jwks)
			clock := newFakeClock()
			cfg := testConfig(t, clock)
			q := Query{Issuer: idp.issuer}
			_, err := mustNew(t, cfg).Keys(t.Context(), q)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.wantCause) {
				t.Fatalf("err = %v; want ErrUnavailable with %q", err, tc.wantCause)
			}
			checkHits(t, idp, 1, tc.wantJWKS)

			// Another backend inside RetryInterval gets the recorded cause
			// without asking the identity provider again.
			idp.down(false)
			_, err = mustNew(t, cfg).Keys(t.Context(), q)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.wantCause) {
				t.Fatalf("second backend: err = %v; want ErrUnavailable with %q", err, tc.wantCause)
			}
			checkHits(t, idp, 1, tc.wantJWKS)

			clock.Advance(DefaultRetryInterval)
			if _, err := mustNew(t, cfg).Keys(t.Context(), q); err != nil {
				t.Fatalf("after the backoff, with the provider up: %v", err)
			}
		})
	}
}

// TestHangingIdentityProvider: a provider that never answers costs at most
// the client timeout or the caller's deadline, whichever is shorter.
func TestHangingIdentityProvider(t *testing.T) {
	const short = 300 * time.Millisecond
	tests := []struct {
		name          string
		clientTimeout time.Duration
		ctxTimeout    time.Duration
		hangDiscovery bool
		wantErr       error
		// wantRecorded: the failure is recorded (client timeout) and the
		// next call returns at once without a request; a caller's own
		// deadline is not the provider's fault and is not recorded.
		wantRecorded bool
	}{
		{"JWKS hangs, client timeout", short, time.Minute, false, ErrUnavailable, true},
		{"discovery hangs, client timeout", short, time.Minute, true, ErrUnavailable, true},
		{"JWKS hangs, context deadline", time.Minute, short, false, context.DeadlineExceeded, false},
		{"discovery hangs, context deadline", time.Minute, short, true, context.DeadlineExceeded, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idp := newTestIDP(t, false)
			if tc.hangDiscovery {
				idp.setDiscovery(endpoint{hang: true})
			} else {
				idp.setJWKS(endpoint{hang: true})
			}
			cfg := testConfig(t, newFakeClock())
			client, err := NewHTTPClient(tc.clientTimeout, "", "")
			if err != nil {
				t.Fatal(err)
			}
			cfg.HTTPClient = client
			c := mustNew(t, cfg)
			limit := 10 * min(tc.clientTimeout, tc.ctxTimeout)

			ctx, cancel := context.WithTimeout(t.Context(), tc.ctxTimeout)
			defer cancel()
			start := time.Now()
			_, err = c.Keys(ctx, Query{Issuer: idp.issuer})
			if elapsed := time.Since(start); elapsed > limit {
				t.Errorf("Keys took %v; want well under %v", elapsed, limit)
			}
			if !errors.Is(err, ErrUnavailable) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v; want ErrUnavailable and %v", err, tc.wantErr)
			}

			beforeD, beforeJ := idp.hits()
			ctx2, cancel2 := context.WithTimeout(t.Context(), tc.ctxTimeout)
			defer cancel2()
			start = time.Now()
			_, err = c.Keys(ctx2, Query{Issuer: idp.issuer})
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("second call: err = %v; want ErrUnavailable", err)
			}
			if elapsed := time.Since(start); elapsed > limit {
				t.Errorf("second call took %v; want well under %v", elapsed, limit)
			}
			d, j := idp.hits()
			if asked := d != beforeD || j != beforeJ; asked == tc.wantRecorded {
				t.Errorf("second call asked the provider again = %v; want %v", asked, !tc.wantRecorded)
			}
		})
	}
}

// TestBadResponses: each malformed or oversized answer is refused; on a cold
// cache that is ErrUnavailable, on a warm but stale cache the last-known-good
// keys are served with the cause.
func TestBadResponses(t *testing.T) {
	const maxBody = 64 << 10
	many := make([]string, MaxKeys+1)
	for i := range many {
		many[i] = fmt.Sprintf("k%d", i)
	}
	discovery := func(issuer, jwks any) func(p *testIDP) []byte {
		return func(p *testIDP) []byte {
			m := map[string]any{}
			if issuer != nil {
				m["issuer"] = issuer
			}
			if jwks != nil {
				m["jwks_uri"] = jwks
			}
			if s, ok := issuer.(string); ok && strings.HasPrefix(s, "ISSUER") {
				m["issuer"] = p.issuer + strings.TrimPrefix(s, "ISSUER")
			}
			if jwks == "JWKS" {
				m["jwks_uri"] = p.jwksURL
			}
			b, _ := json.Marshal(m)
			return b
		}
	}
	fixed := func(b []byte) func(*testIDP) []byte { return func(*testIDP) []byte { return b } }

	tests := []struct {
		name      string
		discovery func(*testIDP) []byte // nil: the good document
		jwks      func(*testIDP) []byte // nil: the good JWKS
		wantErr   []error
		wantCause string
	}{
		{name: "JWKS larger than MaxBodyBytes", jwks: fixed([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", maxBody) + `"}`)),
			wantErr: []error{ErrUnavailable, ErrTooLarge}, wantCause: "response too large"},
		{name: "discovery larger than MaxBodyBytes", discovery: fixed([]byte(strings.Repeat(" ", maxBody+1) + "{}")),
			wantErr: []error{ErrUnavailable, ErrTooLarge}, wantCause: "response too large"},
		{name: "JWKS with more than 100 keys", jwks: fixed(jwksJSON(many...)),
			wantErr: []error{ErrUnavailable}, wantCause: "101 keys, more than 100"},
		{name: "JWKS with no keys", jwks: fixed([]byte(`{"keys":[]}`)),
			wantErr: []error{ErrUnavailable}, wantCause: "contains no keys"},
		{name: "JWKS without keys member", jwks: fixed([]byte(`{"kty":"EC"}`)),
			wantErr: []error{ErrUnavailable}, wantCause: `no "keys" array`},
		{name: "JWKS garbage", jwks: fixed([]byte("<html>oops</html>")),
			wantErr: []error{ErrUnavailable}, wantCause: "not a JSON object"},
		{name: "JWKS with a broken key", jwks: fixed([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"!!"}]}`)),
			wantErr: []error{ErrUnavailable}, wantCause: "JWKS at"},
		{name: "discovery garbage", discovery: fixed([]byte("not json at all")),
			wantErr: []error{ErrUnavailable}, wantCause: "not a JSON object"},
		{name: "discovery JSON array", discovery: fixed([]byte(`[1,2]`)),
			wantErr: []error{ErrUnavailable}, wantCause: "not a JSON object"},
		{name: "discovery without jwks_uri", discovery: discovery("ISSUER", nil),
			wantErr: []error{ErrUnavailable}, wantCause: `no string "jwks_uri"`},
		{name: "discovery with numeric jwks_uri", discovery: discovery("ISSUER", 42),
			wantErr: []error{ErrUnavailable}, wantCause: `no string "jwks_uri"`},
		{name: "discovery jwks_uri on a remote http host", discovery: discovery("ISSUER", "http://idp.example.com/certs"),
			wantErr: []error{ErrUnavailable, ErrInsecureURL}, wantCause: "https is required"},
		{name: "discovery names another issuer", discovery: discovery("https://evil.example.com/realms/test", "JWKS"),
			wantErr: []error{ErrUnavailable, ErrDiscoveryMismatch}, wantCause: `names issuer "https://evil.example.com/realms/test"`},
		{name: "discovery issuer with a trailing slash", discovery: discovery("ISSUER/", "JWKS"),
			wantErr: []error{ErrUnavailable, ErrDiscoveryMismatch}, wantCause: "differ only by a trailing slash"},
		{name: "discovery without issuer", discovery: discovery(nil, "JWKS"),
			wantErr: []error{ErrUnavailable, ErrDiscoveryMismatch}, wantCause: `no "issuer" member`},
		{name: "discovery with numeric issuer", discovery: discovery(7, "JWKS"),
			wantErr: []error{ErrUnavailable, ErrDiscoveryMismatch}, wantCause: `non-string "issuer"`},
	}
	for _, tc := range tests {
		apply := func(p *testIDP) {
			if tc.discovery != nil {
				p.setDiscovery(endpoint{body: tc.discovery(p)})
			}
			if tc.jwks != nil {
				p.setJWKS(endpoint{body: tc.jwks(p)})
			}
		}
		check := func(t *testing.T, err error, text string) {
			t.Helper()
			for _, want := range tc.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v; want it to match %v", err, want)
				}
			}
			if !strings.Contains(text, tc.wantCause) {
				t.Errorf("message %q does not contain %q", text, tc.wantCause)
			}
		}
		t.Run(tc.name+"/cold", func(t *testing.T) {
			idp := newTestIDP(t, false)
			apply(idp)
			cfg := testConfig(t, newFakeClock())
			cfg.MaxBodyBytes = maxBody
			_, err := mustNew(t, cfg).Keys(t.Context(), Query{Issuer: idp.issuer})
			if err == nil {
				t.Fatal("Keys succeeded")
			}
			check(t, err, err.Error())
			// A second backend reads the recorded failure: same sentinels.
			_, err = mustNew(t, cfg).Keys(t.Context(), Query{Issuer: idp.issuer})
			if err == nil {
				t.Fatal("second Keys succeeded")
			}
			check(t, err, err.Error())
		})
		t.Run(tc.name+"/warm", func(t *testing.T) {
			idp := newTestIDP(t, false)
			clock := newFakeClock()
			cfg := testConfig(t, clock)
			cfg.MaxBodyBytes = maxBody
			c := mustNew(t, cfg)
			if _, err := c.Keys(t.Context(), Query{Issuer: idp.issuer}); err != nil {
				t.Fatal(err)
			}
			apply(idp)
			clock.Advance(DefaultRefreshInterval)
			k, err := c.Keys(t.Context(), Query{Issuer: idp.issuer})
			if err != nil {
				t.Fatalf("err = %v; want the last-known-good keys", err)
			}
			if !k.Stale || k.Set.Len() != 1 {
				t.Errorf("Stale = %v, %d keys; want stale last-known-good", k.Stale, k.Set.Len())
			}
			if !strings.Contains(k.StaleCause, tc.wantCause) {
				t.Errorf("StaleCause %q does not contain %q", k.StaleCause, tc.wantCause)
			}
		})
	}
}

func TestHundredKeysAccepted(t *testing.T) {
	idp := newTestIDP(t, false)
	kids := make([]string, MaxKeys)
	for i := range kids {
		kids[i] = fmt.Sprintf("k%d", i)
	}
	idp.setKIDs(kids...)
	k, err := mustNew(t, testConfig(t, newFakeClock())).Keys(t.Context(), Query{Issuer: idp.issuer})
	if err != nil {
		t.Fatal(err)
	}
	if k.Set.Len() != MaxKeys {
		t.Errorf("%d keys; want %d", k.Set.Len(), MaxKeys)
	}
}

func TestInsecureCache(t *testing.T) {
	const otherUID = 65534
	rootOnly := func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("changing a file's owner needs root")
		}
	}
	type setup struct {
		dir, jwksEntry, jwksLock string
	}
	tests := []struct {
		name    string
		only    func(*testing.T)
		stale   bool // advance past the refresh interval before the call (the lock is used)
		corrupt func(t *testing.T, s setup)
	}{
		{name: "directory mode 0777", corrupt: func(t *testing.T, s setup) { chmod(t, s.dir, 0o777) }},
		{name: "directory group-writable", corrupt: func(t *testing.T, s setup) { chmod(t, s.dir, 0o770) }},
		{name: "directory is a symbolic link", corrupt: func(t *testing.T, s setup) {
			moved := s.dir + ".real"
			if err := os.Rename(s.dir, moved); err != nil {
				t.Fatal(err)
			}
			symlink(t, moved, s.dir)
		}},
		{name: "directory owned by another user", only: rootOnly, corrupt: func(t *testing.T, s setup) { chown(t, s.dir, otherUID) }},
		{name: "file group-writable", corrupt: func(t *testing.T, s setup) { chmod(t, s.jwksEntry, 0o660) }},
		{name: "file world-writable", corrupt: func(t *testing.T, s setup) { chmod(t, s.jwksEntry, 0o602) }},
		{name: "file owned by another user", only: rootOnly, corrupt: func(t *testing.T, s setup) { chown(t, s.jwksEntry, otherUID) }},
		{name: "file is a symbolic link", corrupt: func(t *testing.T, s setup) {
			copyPath := filepath.Join(t.TempDir(), "copy.json")
			data, err := os.ReadFile(s.jwksEntry)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(copyPath, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(s.jwksEntry); err != nil {
				t.Fatal(err)
			}
			symlink(t, copyPath, s.jwksEntry)
		}},
		{name: "file is a directory", corrupt: func(t *testing.T, s setup) {
			if err := os.Remove(s.jwksEntry); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(s.jwksEntry, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "lock file is a symbolic link", stale: true, corrupt: func(t *testing.T, s setup) {
			target := filepath.Join(t.TempDir(), "lock")
			if err := os.WriteFile(target, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(s.jwksLock); err != nil {
				t.Fatal(err)
			}
			symlink(t, target, s.jwksLock)
		}},
		{name: "lock file group-writable", stale: true, corrupt: func(t *testing.T, s setup) { chmod(t, s.jwksLock, 0o620) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.only != nil {
				tc.only(t)
			}
			idp := newTestIDP(t, false)
			clock := newFakeClock()
			cfg := testConfig(t, clock)
			// A JWKS URI query makes the JWKS the only document.
			q := Query{Issuer: idp.issuer, JWKSURI: idp.jwksURL}
			c := mustNew(t, cfg)
			if _, err := c.Keys(t.Context(), q); err != nil {
				t.Fatal(err)
			}
			name := entryName(kindJWKS, idp.issuer, idp.jwksURL)
			tc.corrupt(t, setup{
				dir:       cfg.Dir,
				jwksEntry: filepath.Join(cfg.Dir, name+entrySuffix),
				jwksLock:  filepath.Join(cfg.Dir, name+lockSuffix),
			})
			if tc.stale {
				clock.Advance(DefaultRefreshInterval)
			}
			_, err := c.Keys(t.Context(), q)
			if !errors.Is(err, ErrInsecureCache) {
				t.Fatalf("Keys: err = %v; want ErrInsecureCache", err)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("Keys: err = %v also matches ErrUnavailable", err)
			}
			// Never silently bypassed: no fetch that would hide the problem.
			checkHits(t, idp, 0, 1)
		})
	}
}

func TestNewRefusesInsecureDirectory(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, dir string)
	}{
		{"mode 0777", func(t *testing.T, dir string) { mkdir(t, dir); chmod(t, dir, 0o777) }},
		{"mode 0722", func(t *testing.T, dir string) { mkdir(t, dir); chmod(t, dir, 0o722) }},
		{"symbolic link", func(t *testing.T, dir string) { real := dir + ".real"; mkdir(t, real); symlink(t, real, dir) }},
		{"regular file", func(t *testing.T, dir string) {
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, newFakeClock())
			tc.make(t, cfg.Dir)
			if _, err := New(cfg); !errors.Is(err, ErrInsecureCache) {
				t.Errorf("New: err = %v; want ErrInsecureCache", err)
			}
		})
	}
	t.Run("missing directory is created 0700", func(t *testing.T) {
		cfg := testConfig(t, newFakeClock())
		cfg.Dir = filepath.Join(cfg.Dir, "a", "b")
		mustNew(t, cfg)
		fi, err := os.Stat(cfg.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("mode %04o; want 0700", fi.Mode().Perm())
		}
	})
}

func TestCorruptCacheFileIsRewritten(t *testing.T) {
	tests := []struct {
		name    string
		content func(idp *testIDP) []byte
	}{
		{"garbage", func(*testIDP) []byte { return []byte("\x00\x01garbage{") }},
		{"empty", func(*testIDP) []byte { return nil }},
		{"truncated JSON", func(*testIDP) []byte { return []byte(`{"version":1,"kind":"jwks","body":{"keys":[`) }},
		{"body that is not a JWKS", func(idp *testIDP) []byte {
			b, _ := json.Marshal(entryFile{Version: entryVersion, Kind: kindJWKS, Issuer: idp.issuer, URL: idp.jwksURL,
				FetchedAt: time.Now(), AttemptedAt: time.Now(), Body: json.RawMessage(`{"keys":"no"}`)})
			return b
		}},
		{"entry of another issuer", func(idp *testIDP) []byte {
			b, _ := json.Marshal(entryFile{Version: entryVersion, Kind: kindJWKS, Issuer: "https://other.example.com", URL: idp.jwksURL,
				FetchedAt: time.Now(), AttemptedAt: time.Now(), Body: jwksJSON("evil")})
			return b
		}},
		{"future version", func(idp *testIDP) []byte {
			b, _ := json.Marshal(entryFile{Version: 99, Kind: kindJWKS, Issuer: idp.issuer, URL: idp.jwksURL,
				FetchedAt: time.Now(), AttemptedAt: time.Now(), Body: jwksJSON("evil")})
			return b
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idp := newTestIDP(t, false)
			clock := newFakeClock()
			cfg := testConfig(t, clock)
			c := mustNew(t, cfg)
			q := Query{Issuer: idp.issuer}
			if _, err := c.Keys(t.Context(), q); err != nil {
				t.Fatal(err)
			}
			path := entryPath(cfg.Dir, kindJWKS, idp.issuer, idp.jwksURL)
			if err := os.WriteFile(path, tc.content(idp), 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := c.Keys(t.Context(), q)
			if err != nil {
				t.Fatalf("Keys: %v", err)
			}
			if !k.Fetched || !slices.Equal(kidsOf(k.Set), []string{"k1"}) {
				t.Errorf("Keys = fetched %v kids %v; want a refetch of k1", k.Fetched, kidsOf(k.Set))
			}
			checkHits(t, idp, 1, 2)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var e entryFile
			if err := json.Unmarshal(data, &e); err != nil || e.Issuer != idp.issuer || e.URL != idp.jwksURL || len(e.Body) == 0 {
				t.Errorf("cache file not rewritten: %v, %s", err, data)
			}
		})
	}
}

// TestUnknownKID walks the unknown-kid refetch rule with the injected clock
// (KIDRefetchInterval 60 s), with two caches on one directory standing for
// two backends: the rate limit is server-wide.
func TestUnknownKID(t *testing.T) {
	idp := newTestIDP(t, false)
	clock := newFakeClock()
	cfg := testConfig(t, clock)
	backends := []*Cache{mustNew(t, cfg), mustNew(t, cfg)}
	steps := []struct {
		name     string
		advance  time.Duration
		backend  int
		serve    []string // kids the provider serves from now on
		missing  string
		wantKIDs []string
		wantJWKS int64
		fetched  bool
	}{
		{name: "warm", serve: []string{"k1"}, wantKIDs: []string{"k1"}, wantJWKS: 1, fetched: true},
		{name: "unknown kid right after a fetch: rate-limited", advance: 30 * time.Second, missing: "k9",
			wantKIDs: []string{"k1"}, wantJWKS: 1},
		{name: "unknown kid after the interval: one refetch", advance: 31 * time.Second, missing: "k9",
			wantKIDs: []string{"k1"}, wantJWKS: 2, fetched: true},
		{name: "again at once, other backend: rate-limited", backend: 1, advance: time.Second, missing: "k9",
			wantKIDs: []string{"k1"}, wantJWKS: 2},
		{name: "rotation published, still within the interval", serve: []string{"k1", "k2"}, advance: 20 * time.Second,
			missing: "k2", wantKIDs: []string{"k1"}, wantJWKS: 2},
		{name: "rotated key picked up after the interval", backend: 1, advance: 40 * time.Second, missing: "k2",
			wantKIDs: []string{"k1", "k2"}, wantJWKS: 3, fetched: true},
		{name: "kid now known: no refetch", advance: 2 * time.Minute, missing: "k2",
			wantKIDs: []string{"k1", "k2"}, wantJWKS: 3},
		{name: "old key removed, provider drops k1", serve: []string{"k2"}, advance: 5 * time.Minute,
			wantKIDs: []string{"k2"}, wantJWKS: 4, fetched: true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clock.Advance(st.advance)
			if st.serve != nil {
				idp.setKIDs(st.serve...)
			}
			k, err := backends[st.backend].Keys(t.Context(), Query{Issuer: idp.issuer, MissingKID: st.missing})
			if err != nil {
				t.Fatal(err)
			}
			if got := kidsOf(k.Set); !slices.Equal(got, st.wantKIDs) || k.Fetched != st.fetched || k.Stale {
				t.Errorf("Keys = kids %v fetched %v stale %v; want %v fetched %v", got, k.Fetched, k.Stale, st.wantKIDs, st.fetched)
			}
			if _, j := idp.hits(); j != st.wantJWKS {
				t.Errorf("JWKS requests %d; want %d", j, st.wantJWKS)
			}
		})
	}
}

func TestUnknownKIDRefetchFails(t *testing.T) {
	idp := newTestIDP(t, false)
	clock := newFakeClock()
	c := mustNew(t, testConfig(t, clock))
	q := Query{Issuer: idp.issuer, JWKSURI: idp.jwksURL}
	if _, err := c.Keys(t.Context(), q); err != nil {
		t.Fatal(err)
	}
	idp.setJWKS(endpoint{status: http.StatusBadGateway})
	clock.Advance(DefaultKIDRefetchInterval)
	q.MissingKID = "k2"
	k, err := c.Keys(t.Context(), q)
	if err != nil {
		t.Fatalf("err = %v; want the cached keys", err)
	}
	if !k.Stale || !strings.Contains(k.StaleCause, "status 502") || k.Set.Len() != 1 {
		t.Errorf("Keys = stale %v cause %q len %d; want the cached set marked stale", k.Stale, k.StaleCause, k.Set.Len())
	}
	checkHits(t, idp, 0, 2)
}

func TestExplicitJWKSURISkipsDiscovery(t *testing.T) {
	idp := newTestIDP(t, false)
	idp.setDiscovery(endpoint{status: http.StatusInternalServerError})
	k, err := mustNew(t, testConfig(t, newFakeClock())).Keys(t.Context(), Query{Issuer: idp.issuer, JWKSURI: idp.jwksURL})
	if err != nil {
		t.Fatal(err)
	}
	if k.Set.Len() != 1 {
		t.Errorf("%d keys; want 1", k.Set.Len())
	}
	checkHits(t, idp, 0, 1)
}

func TestDiscoveryURLOverride(t *testing.T) {
	idp := newTestIDP(t, false)
	// An internal discovery URL that differs from the public issuer; the
	// document must still name the configured issuer.
	internal := idp.srv.URL + "/internal/oidc"
	idp.handle("/internal/oidc", func(w http.ResponseWriter, r *http.Request) {
		b, _ := json.Marshal(map[string]string{"issuer": "https://public.example.com/realms/test", "jwks_uri": idp.jwksURL})
		w.Write(b)
	})
	c := mustNew(t, testConfig(t, newFakeClock()))
	k, err := c.Keys(t.Context(), Query{Issuer: "https://public.example.com/realms/test", DiscoveryURL: internal})
	if err != nil {
		t.Fatal(err)
	}
	if k.Set.Len() != 1 {
		t.Errorf("%d keys; want 1", k.Set.Len())
	}
	_, err = c.Keys(t.Context(), Query{Issuer: "https://public.example.com/realms/other", DiscoveryURL: internal})
	if !errors.Is(err, ErrDiscoveryMismatch) {
		t.Errorf("err = %v; want ErrDiscoveryMismatch", err)
	}
	checkHits(t, idp, 0, 1)
}

func TestInsecureURLs(t *testing.T) {
	idp := newTestIDP(t, false)
	tests := []struct {
		name         string
		requireHTTPS bool
		q            Query
	}{
		{"loopback http issuer when https is required", true, Query{Issuer: idp.issuer}},
		{"loopback http JWKS URI when https is required", true, Query{Issuer: "https://idp.example.com", JWKSURI: idp.jwksURL}},
		{"loopback http discovery URL when https is required", true, Query{Issuer: "https://idp.example.com", DiscoveryURL: idp.discURL}},
		{"remote http issuer", false, Query{Issuer: "http://idp.example.com/realms/test"}},
		{"remote http JWKS URI", false, Query{Issuer: "https://idp.example.com", JWKSURI: "http://idp.example.com/certs"}},
		{"remote host named like loopback", false, Query{Issuer: "http://127.0.0.1.example.com/realms/test"}},
		{"ftp scheme", false, Query{Issuer: "ftp://127.0.0.1/realms/test"}},
		{"relative URL", false, Query{Issuer: "/realms/test"}},
		{"file URL", false, Query{Issuer: "https://idp.example.com", JWKSURI: "file:///etc/passwd"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, newFakeClock())
			cfg.RequireHTTPS = tc.requireHTTPS
			_, err := mustNew(t, cfg).Keys(t.Context(), tc.q)
			if !errors.Is(err, ErrInsecureURL) {
				t.Errorf("err = %v; want ErrInsecureURL", err)
			}
		})
	}
	checkHits(t, idp, 0, 0)
	for _, host := range []string{"127.0.0.1", "127.8.9.10", "[::1]", "localhost", "LocalHost"} {
		t.Run("loopback allowed: "+host, func(t *testing.T) {
			c := mustNew(t, testConfig(t, newFakeClock()))
			if err := c.checkURL("http://" + host + ":8080/x"); err != nil {
				t.Errorf("checkURL: %v", err)
			}
		})
	}
}

// TestRequireHTTPSWithCAFile is the production shape: https only, the
// provider's certificate trusted through a CA file.
func TestRequireHTTPSWithCAFile(t *testing.T) {
	idp := newTestIDP(t, true)
	client, err := NewHTTPClient(5*time.Second, writeCAFile(t, idp.srv), "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, newFakeClock())
	cfg.HTTPClient = client
	cfg.RequireHTTPS = true
	k, err := mustNew(t, cfg).Keys(t.Context(), Query{Issuer: idp.issuer})
	if err != nil {
		t.Fatal(err)
	}
	if k.Set.Len() != 1 || !k.Fetched {
		t.Errorf("Keys = %d keys fetched %v", k.Set.Len(), k.Fetched)
	}
	checkHits(t, idp, 1, 1)
}

func TestRedirectToHTTPRefusedByCache(t *testing.T) {
	// The cache's own redirect rule applies even with a caller's client
	// that would follow anything.
	idp := newTestIDP(t, false)
	idp.handle("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://idp.example.com/certs", http.StatusFound)
	})
	cfg := testConfig(t, newFakeClock())
	cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	_, err := mustNew(t, cfg).Keys(t.Context(), Query{Issuer: idp.issuer, JWKSURI: idp.srv.URL + "/redirect"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "redirect refused") {
		t.Errorf("err = %v; want ErrUnavailable with the redirect refused", err)
	}
}

// TestConcurrentColdCache: many goroutines, each with its own Cache (its own
// lock file descriptors, as separate backends would have) or sharing one, on
// a cold directory: one discovery and one JWKS request in all.
func TestConcurrentColdCache(t *testing.T) {
	const n = 40
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared cache %v", shared), func(t *testing.T) {
			idp := newTestIDP(t, false)
			idp.setDiscovery(endpoint{delay: 20 * time.Millisecond})
			idp.setJWKS(endpoint{delay: 20 * time.Millisecond})
			cfg := testConfig(t, newFakeClock())
			one := mustNew(t, cfg)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range n {
				c := one
				if !shared {
					c = mustNew(t, cfg)
				}
				wg.Go(func() {
					k, err := c.Keys(t.Context(), Query{Issuer: idp.issuer})
					if err == nil && k.Set.Len() != 1 {
						err = fmt.Errorf("%d keys", k.Set.Len())
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			checkHits(t, idp, 1, 1)

			// An unknown-kid storm after the interval: one refetch.
			idp.setKIDs("k1", "k2")
			cfg.Now = func() time.Time { return newFakeClock().Now().Add(DefaultKIDRefetchInterval) }
			for range n {
				c := mustNew(t, cfg)
				wg.Go(func() {
					k, err := c.Keys(t.Context(), Query{Issuer: idp.issuer, MissingKID: "k2"})
					if err != nil {
						t.Error(err)
					} else if !k.Set.HasKID("k2") {
						t.Error("k2 not served")
					}
				})
			}
			wg.Wait()
			checkHits(t, idp, 1, 2)
		})
	}
}

// TestLockWaitRespectsContext: while another process holds the lock (here
// the test, with flock), a caller gives up at its deadline.
func TestLockWaitRespectsContext(t *testing.T) {
	idp := newTestIDP(t, false)
	cfg := testConfig(t, newFakeClock())
	c := mustNew(t, cfg)
	q := Query{Issuer: idp.issuer, JWKSURI: idp.jwksURL}
	lock := filepath.Join(cfg.Dir, entryName(kindJWKS, idp.issuer, idp.jwksURL)+lockSuffix)
	f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	const timeout = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	_, err = c.Keys(ctx, q)
	if elapsed := time.Since(start); elapsed > 10*timeout {
		t.Errorf("Keys took %v; want well under %v", elapsed, 10*timeout)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("err = %v; want ErrUnavailable and DeadlineExceeded", err)
	}
	checkHits(t, idp, 0, 0)

	// Released: the next caller proceeds.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Keys(t.Context(), q); err != nil {
		t.Fatal(err)
	}
	checkHits(t, idp, 0, 1)
}

// TestRecheckUnderLock: a process that gets the lock after another one
// fetched must use what it wrote, not fetch again (the window between a
// waiter's last read and its lock is too short to hit by chance).
func TestRecheckUnderLock(t *testing.T) {
	idp := newTestIDP(t, false)
	clock := newFakeClock()
	cfg := testConfig(t, clock)
	waiter := mustNew(t, cfg)
	q := Query{Issuer: idp.issuer, JWKSURI: idp.jwksURL}
	name := entryName(kindJWKS, idp.issuer, idp.jwksURL)
	s := spec{kind: kindJWKS, issuer: idp.issuer, url: idp.jwksURL,
		parse: func(b []byte, object bool) (any, error) { return parseJWKS(idp.jwksURL, b, object) }}

	// The waiter saw a cold cache ...
	if cur, err := waiter.load(name, s); err != nil || !waiter.needFetch(cur, s, clock.Now()) {
		t.Fatalf("cold cache: needFetch false (err %v)", err)
	}
	// ... then another backend fetched and released the lock ...
	if _, err := mustNew(t, cfg).Keys(t.Context(), q); err != nil {
		t.Fatal(err)
	}
	// ... and now the waiter holds the lock.
	res, err := waiter.fetchLocked(t.Context(), name, s)
	if err != nil {
		t.Fatal(err)
	}
	if res.fetched {
		t.Error("fetched again under the lock")
	}
	checkHits(t, idp, 0, 1)
}

func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no directory", func(c *Config) { c.Dir = "" }},
		{"relative directory", func(c *Config) { c.Dir = "keys" }},
		{"negative refresh interval", func(c *Config) { c.RefreshInterval = -time.Second }},
		{"negative max stale", func(c *Config) { c.MaxStale = -time.Second }},
		{"negative kid refetch interval", func(c *Config) { c.KIDRefetchInterval = -time.Second }},
		{"negative retry interval", func(c *Config) { c.RetryInterval = -time.Second }},
		{"negative body bound", func(c *Config) { c.MaxBodyBytes = -1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, newFakeClock())
			tc.mod(&cfg)
			if _, err := New(cfg); err == nil {
				t.Error("New succeeded")
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		c, err := New(Config{Dir: filepath.Join(t.TempDir(), "keys")})
		if err != nil {
			t.Fatal(err)
		}
		if c.refresh != 5*time.Minute || c.maxStale != time.Hour || c.kidInterval != 60*time.Second ||
			c.retry != 10*time.Second || c.maxBody != 1<<20 || c.now == nil || c.client.Timeout != DefaultHTTPTimeout {
			t.Errorf("defaults: %+v", c)
		}
	})
	t.Run("no issuer", func(t *testing.T) {
		_, err := mustNew(t, testConfig(t, newFakeClock())).Keys(t.Context(), Query{JWKSURI: "https://idp.example.com/certs"})
		if err == nil {
			t.Error("Keys without an issuer succeeded")
		}
	})
}

func FuzzParseJWKS(f *testing.F) {
	for _, seed := range [][]byte{
		jwksJSON("k1"), jwksJSON("a", "b"), []byte(`{"keys":[]}`), []byte(`{"kty":"EC"}`),
		[]byte("<html>"), []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"!!"}]}`), []byte(`{"keys":null}`),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		set, err := parseJWKS("https://idp.example.com/certs", body, IsJSONObject(body))
		if err == nil && (set.Len() == 0 || set.Len() > MaxKeys) {
			t.Errorf("accepted a set of %d keys", set.Len())
		}
	})
}

func FuzzParseDiscovery(f *testing.F) {
	f.Add([]byte(`{"issuer":"https://idp.example.com","jwks_uri":"https://idp.example.com/certs"}`))
	f.Add([]byte(`{"issuer":"https://idp.example.com/","jwks_uri":"https://idp.example.com/certs"}`))
	f.Add([]byte(`{"issuer":"https://idp.example.com","jwks_uri":"http://idp.example.com/certs"}`))
	f.Add([]byte(`[]`))
	c := &Cache{requireHTTPS: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		uri, err := c.parseDiscovery("https://idp.example.com", "https://idp.example.com/.well-known/openid-configuration", body)
		if err == nil && !strings.HasPrefix(strings.ToLower(uri), "https://") {
			t.Errorf("accepted jwks_uri %q", uri)
		}
	})
}

func chmod(t testing.TB, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func chown(t testing.TB, path string, uid int) {
	t.Helper()
	if err := os.Chown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}
