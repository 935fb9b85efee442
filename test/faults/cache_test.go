package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// cacheEnv is a cluster with a warm key cache for one identity provider.
type cacheEnv struct {
	c   *cluster
	idp *testidp.IdP
	dir string
}

func newCacheEnv(t *testing.T) *cacheEnv {
	t.Helper()
	c := newCluster(t, nil)
	e := &cacheEnv{c: c, idp: c.use(t, testidp.Options{}), dir: loadkit.CacheDir(c.Cluster)}
	if a := c.login(t, "alice", e.valid(t)); !a.accepted {
		t.Fatalf("warm-up login refused:\n%s", a.log)
	}
	return e
}

func (e *cacheEnv) valid(t *testing.T) string { return token(t, e.idp, "alice", nil) }

// entries are the cached documents (discovery and JWKS).
func (e *cacheEnv) entries(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(e.dir, "*.json"))
	if err != nil || len(m) != 2 {
		t.Fatalf("cache entries %v (%v), want 2", m, err)
	}
	return m
}

// check runs the valid and the forged token and records both rows;
// validOK says whether the valid one must be accepted; why is the reason
// (or log text) of the refusals.
func (e *cacheEnv) check(t *testing.T, fault, state string, validOK bool, why string) {
	t.Helper()
	row := Outcome{Fault: fault, Cache: state, Token: "valid"}
	e.c.expect(t, row, "alice", e.valid(t), validOK, why)
	row.Token = "forged signature"
	forgedWhy := "bad_signature"
	if !validOK {
		forgedWhy = why
	}
	e.c.expect(t, row, "alice", forged(t, e.idp), false, forgedWhy)
}

// dirNames lists the names in dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func perm(t *testing.T, path string) (os.FileMode, int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode(), int(fi.Sys().(*syscall.Stat_t).Uid)
}

// serverUID is the uid the server runs as.
func serverUID(t *testing.T, e *cacheEnv) int {
	t.Helper()
	_, uid := perm(t, e.c.Data)
	return uid
}

// The key cache directory deleted, made unwritable, filled with corrupt
// files, made writable by others, or holding files it must not trust.
func TestKeyCacheDirectory(t *testing.T) {
	e := newCacheEnv(t)
	const insecure = "insecure key cache"

	t.Run("deleted", func(t *testing.T) {
		if err := os.RemoveAll(e.dir); err != nil {
			t.Fatal(err)
		}
		e.idp.ResetCounts()
		e.check(t, "cache directory deleted", "recreated on the next login", true, "")
		mode, uid := perm(t, e.dir)
		if mode.Perm() != 0o700 || !mode.IsDir() || uid != serverUID(t, e) {
			t.Errorf("recreated cache directory: mode %v, uid %d; want a 0700 directory of the server's uid %d", mode, uid, serverUID(t, e))
		}
		if d, j := e.idp.Requests(testidp.PathDiscovery), e.idp.Requests(testidp.PathJWKS); d != 1 || j != 1 {
			t.Errorf("refetch after deletion: %d discovery, %d JWKS requests, want 1 and 1", d, j)
		}
	})

	t.Run("deleted during a storm", func(t *testing.T) {
		const clients = 20
		tok := e.valid(t)
		mark := e.c.LogMark()
		var ok, fail atomic.Int64
		deadline := time.Now().Add(4 * time.Second)
		var wg sync.WaitGroup
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					conn, err := e.c.ConnectOAuth(ctx, "alice", tok)
					if err == nil {
						ok.Add(1)
						conn.Close(ctx)
					} else {
						fail.Add(1)
					}
					cancel()
				}
			}()
		}
		for i := 0; i < 6; i++ {
			time.Sleep(500 * time.Millisecond)
			// Backends may be writing into it: retry until it is gone.
			for try := 0; ; try++ {
				err := os.RemoveAll(e.dir)
				if err == nil {
					break
				}
				if try == 100 {
					t.Fatal(err)
				}
			}
		}
		wg.Wait()
		log := e.c.LogSince(mark)
		failed := loadkit.LinesWith(log, "oauth_jwt: validator failed")
		ev := fmt.Sprintf("%d validator failures", len(failed))
		if len(failed) > 0 {
			l := strings.Split(log[strings.Index(log, failed[0]):], "\n")
			ev += ", first: " + trimPrefix(l[1])
		}
		record(Outcome{Fault: fmt.Sprintf("cache directory deleted 6 times during a storm (%d clients)", clients), Cache: "warm", Token: "valid",
			Result: fmt.Sprintf("%d accepted, %d refused", ok.Load(), fail.Load()), Reason: loadkit.ReasonsString(loadkit.Reasons(log)), Evidence: ev})
		t.Logf("deleted 6 times during a storm: %d accepted, %d refused; %s", ok.Load(), fail.Load(), ev)
		if ok.Load() == 0 {
			t.Errorf("no login succeeded")
		}
		if int(fail.Load()) != len(failed) {
			t.Errorf("%d logins refused but %d validator failures logged: every refusal must say why", fail.Load(), len(failed))
		}
		// After the storm the cache works again.
		e.check(t, "cache directory deleted during a storm", "after the storm", true, "")
	})

	t.Run("unwritable", func(t *testing.T) {
		chmod(t, e.dir, 0o500)
		defer chmod(t, e.dir, 0o700)
		const warning = "WARNING:  oauth_jwt: key cache directory is not writable"
		before := dirNames(t, e.dir)
		// Fresh entries are read without writing anything.
		e.check(t, "cache directory unwritable (0500)", "warm, fresh", true, "")
		// A cold issuer: the helper fetches, cannot store, and hands the
		// keys to the backend for this login, with a WARNING.
		other := loadkit.StartIdP(t, testidp.Options{})
		e.c.SetHBA(loadkit.HBA("all", other.Issuer()))
		row := Outcome{Fault: "cache directory unwritable (0500)", Cache: "cold (another issuer)", Token: "valid"}
		a := e.c.expect(t, row, "alice", token(t, other, "alice", nil), true, "")
		if !strings.Contains(a.log, warning) || !strings.Contains(a.log, "single flight and the failure backoff are degraded") {
			t.Errorf("cold issuer, unwritable cache: no WARNING that the cache is not writable:\n%s", a.log)
		}
		row.Token = "forged signature"
		e.c.expect(t, row, "alice", forged(t, other), false, "bad_signature")
		// An unknown kid is judged with the keys fetched for the login.
		row.Token = "unknown kid"
		e.c.expect(t, row, "alice", token(t, other, "alice", nil, testidp.WithKID("no-such-kid")), false, "unknown_kid")
		// Never persisted: every such login fetches again.
		if d, j := other.Requests(testidp.PathDiscovery), other.Requests(testidp.PathJWKS); d != 3 || j != 3 {
			t.Errorf("three logins with an unwritable cache made %d discovery and %d JWKS requests, want 3 and 3 (nothing stored)", d, j)
		}
		e.c.SetHBA(loadkit.HBA("all", e.idp.Issuer()))
		// Stale entries: the refetch cannot be written, the keys it
		// fetched serve the login.
		e.c.setConf(t, map[string]string{"oauth_jwt.cache_refresh_interval": "1"})
		defer e.c.setConf(t, map[string]string{"oauth_jwt.cache_refresh_interval": "'5min'"})
		time.Sleep(1100 * time.Millisecond)
		row = Outcome{Fault: "cache directory unwritable (0500)", Cache: "warm, due for refresh", Token: "valid"}
		a = e.c.expect(t, row, "alice", e.valid(t), true, "")
		if !strings.Contains(a.log, warning) {
			t.Errorf("due for refresh, unwritable cache: no WARNING that the cache is not writable:\n%s", a.log)
		}
		if after := dirNames(t, e.dir); !slices.Equal(before, after) {
			t.Errorf("files in the unwritable cache directory changed: %v, then %v", before, after)
		}
	})
	// Back to normal once writable again.
	e.check(t, "cache directory writable again", "warm", true, "")

	t.Run("entries dated in the future", func(t *testing.T) {
		// fetched_at an hour ahead: the clock was stepped back, or the
		// cache was copied from another host. Its age is unknown, so it is
		// never served as last-known-good; a refetch replaces it.
		for _, p := range e.entries(t) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			m["fetched_at"] = time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
			m["attempted_at"] = m["fetched_at"]
			if b, err = json.Marshal(m); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o600); err != nil { // in place: owner and mode kept
				t.Fatal(err)
			}
		}
		if err := e.idp.SetMode(testidp.ModeDown); err != nil {
			t.Fatal(err)
		}
		row := Outcome{Fault: "cache entries dated 1 h in the future, identity provider down", Cache: "warm", Token: "valid"}
		a := e.c.expect(t, row, "alice", e.valid(t), false, "keys_unavailable")
		if !strings.Contains(a.log, "WARNING:  oauth_jwt: cached signing keys are dated in the future") {
			t.Errorf("no WARNING about keys dated in the future:\n%s", a.log)
		}
		if err := e.idp.SetMode(testidp.ModeNormal); err != nil {
			t.Fatal(err)
		}
		// Past the retry interval (10 s) the failure recorded above allows
		// a refetch, which replaces the entries.
		time.Sleep(11 * time.Second)
		e.check(t, "cache entries dated in the future, identity provider up", "refetched", true, "")
	})

	corrupt := []struct {
		name string
		data func(path string, all []string) []byte
	}{
		{"garbage bytes", func(string, []string) []byte { return []byte("\x00\xff<html>not json at all\x01\x02") }},
		{"empty file", func(string, []string) []byte { return nil }},
		{"truncated JSON", func(p string, _ []string) []byte { b, _ := os.ReadFile(p); return b[:len(b)/2] }},
		{"the other entry's content", func(p string, all []string) []byte {
			for _, o := range all {
				if o != p {
					b, _ := os.ReadFile(o)
					return b
				}
			}
			return nil
		}},
		{"2 MiB of JSON", func(string, []string) []byte {
			return []byte(`{"version":1,"pad":"` + strings.Repeat("A", 2<<20) + `"}`)
		}},
	}
	for _, cc := range corrupt {
		t.Run("corrupt: "+cc.name, func(t *testing.T) {
			all := e.entries(t)
			datas := map[string][]byte{}
			for _, p := range all {
				datas[p] = cc.data(p, all)
			}
			for p, b := range datas {
				// Rewriting in place keeps the owner and mode.
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			e.idp.ResetCounts()
			e.check(t, "cache entries corrupt: "+cc.name, "refetched", true, "")
			if d, j := e.idp.Requests(testidp.PathDiscovery), e.idp.Requests(testidp.PathJWKS); d != 1 || j != 1 {
				t.Errorf("after corruption: %d discovery, %d JWKS requests, want 1 and 1 (one refetch each)", d, j)
			}
			for _, p := range e.entries(t) {
				b, _ := os.ReadFile(p)
				if !strings.HasPrefix(string(b), `{"version":1,`) || len(b) > 1<<20 {
					t.Errorf("%s was not rewritten: %.60q", filepath.Base(p), b)
				}
			}
		})
	}

	t.Run("entry replaced by a symbolic link", func(t *testing.T) {
		p := e.entries(t)[0]
		target := p + ".real"
		if err := os.Rename(p, target); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		e.check(t, "cache entry replaced by a symbolic link", "warm", false, insecure)
		os.Remove(p)
		if err := os.Rename(target, p); err != nil {
			t.Fatal(err)
		}
		e.check(t, "cache entry symbolic link removed", "warm", true, "")
	})

	t.Run("writable by others", func(t *testing.T) {
		chmod(t, e.dir, 0o777)
		e.check(t, "cache directory writable by others (0777)", "warm", false, insecure)
		chmod(t, e.dir, 0o770)
		e.check(t, "cache directory writable by its group (0770)", "warm", false, insecure)
		chmod(t, e.dir, 0o700)
		e.check(t, "cache directory 0700 again", "warm", true, "")
		p := e.entries(t)[0]
		chmod(t, p, 0o666)
		e.check(t, "cache entry writable by others (0666)", "warm", false, insecure)
		chmod(t, p, 0o600)
		e.check(t, "cache entry 0600 again", "warm", true, "")
	})

	t.Run("owned by another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Log("not root: cannot give a file to another user; case left out")
			return
		}
		p := e.entries(t)[1]
		if err := os.Chown(p, 0, 0); err != nil {
			t.Fatal(err)
		}
		e.check(t, "cache entry owned by root", "warm", false, insecure)
		loadkit.ServerOwned(t, p)
		if err := os.Chown(e.dir, 0, 0); err != nil {
			t.Fatal(err)
		}
		chmod(t, e.dir, 0o755) // the server can still read it
		e.check(t, "cache directory owned by root", "warm", false, insecure)
		loadkit.ServerOwned(t, e.dir)
		chmod(t, e.dir, 0o700)
		e.check(t, "cache owned by the server again", "warm", true, "")
	})

	t.Run("directory is a symbolic link", func(t *testing.T) {
		real := e.dir + ".real"
		if err := os.Rename(e.dir, real); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(real, e.dir); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			// The link itself is the server's, as an attacker's would not be.
			if out, err := exec.Command("chown", "-h", "ojwtest:", e.dir).CombinedOutput(); err != nil {
				t.Fatalf("chown -h: %v: %s", err, out)
			}
		}
		e.check(t, "cache directory is a symbolic link", "warm", false, insecure)
		os.Remove(e.dir)
		if err := os.Rename(real, e.dir); err != nil {
			t.Fatal(err)
		}
		e.check(t, "cache directory restored", "warm", true, "")
	})
}
