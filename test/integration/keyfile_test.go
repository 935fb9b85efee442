package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// idpJWKS fetches the test IdP's key set and returns it keyed by kid.
func idpJWKS(t *testing.T, p *testidp.IdP) map[string]json.RawMessage {
	t.Helper()
	resp, err := http.Get(p.JWKSURI())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	out := map[string]json.RawMessage{}
	for _, k := range set.Keys {
		var m struct {
			KID string `json:"kid"`
		}
		if err := json.Unmarshal(k, &m); err != nil {
			t.Fatal(err)
		}
		out[m.KID] = k
	}
	return out
}

// replaceFile puts data at path by rename, mode perm, owned by whoever
// runs the test (root is an allowed owner of a trusted file).
func replaceFile(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	tmp := path + ".new"
	_ = os.Remove(tmp)
	if err := os.WriteFile(tmp, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func keySetOf(keys ...json.RawMessage) []byte {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

// jwks_file through the real server: logins with no request to the
// identity provider (reachable or down), keys replaced by rewriting the
// file, and every unsafe or unusable file refused with a clear log line.
func TestKeyFileThroughServer(t *testing.T) {
	e := newIdPEnv(t, "alice")
	oldKID := e.IdP.ActiveKID()
	newKID, err := e.IdP.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	set := idpJWKS(t, e.IdP)
	oldKey, ok1 := e.IdP.Key(oldKID)
	newKey, ok2 := e.IdP.Key(newKID)
	if !ok1 || !ok2 || set[oldKID] == nil || set[newKID] == nil {
		t.Fatal("the test IdP does not publish both keys")
	}
	path := filepath.Join(e.PG.Dir, "jwks.json")
	replaceFile(t, path, keySetOf(set[oldKID]), 0o644)
	e.PG.SetConf(baseConf(map[string]string{
		"oauth_jwt.role_from_identity": "on",
		"oauth_jwt.jwks_file":          quote(path),
	}))
	e.IdP.ResetCounts()
	ctx := ctxT(t, 120*time.Second)
	oldTok := e.token(t, "alice", nil, testidp.WithKey(oldKey))
	newTok := e.token(t, "alice", nil, testidp.WithKey(newKey))

	requests := func() int { return e.IdP.Requests(testidp.PathDiscovery) + e.IdP.Requests(testidp.PathJWKS) }
	t.Run("identity provider reachable, never asked", func(t *testing.T) {
		e.mustLogin(t, ctx, "alice", oldTok).Close(ctx)
		e.refused(t, "alice", newTok, "unknown_kid")
		if n := requests(); n != 0 {
			t.Errorf("%d requests reached the identity provider", n)
		}
	})
	if err := e.IdP.SetMode(testidp.ModeDown); err != nil {
		t.Fatal(err)
	}
	t.Run("identity provider down", func(t *testing.T) {
		e.mustLogin(t, ctx, "alice", oldTok).Close(ctx)
	})
	t.Run("keys replaced by rewriting the file", func(t *testing.T) {
		replaceFile(t, path, keySetOf(set[newKID]), 0o644)
		e.mustLogin(t, ctx, "alice", newTok).Close(ctx)
		log := e.refused(t, "alice", oldTok, "unknown_kid")
		if !strings.Contains(log, oldKID) {
			t.Errorf("the refusal does not name the kid:\n%s", log)
		}
	})

	// Negatives: the same path, replaced by something unusable each time.
	cases := []struct {
		name   string
		make   func(t *testing.T)
		detail string
	}{
		{name: "writable by others", make: func(t *testing.T) {
			replaceFile(t, path, keySetOf(set[newKID]), 0o666)
		}, detail: "writable by group or others"},
		{name: "symbolic link", make: func(t *testing.T) {
			target := filepath.Join(e.PG.Dir, "real.json")
			replaceFile(t, target, keySetOf(set[newKID]), 0o644)
			_ = os.Remove(path)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, detail: "symbolic link"},
		{name: "FIFO", make: func(t *testing.T) {
			_ = os.Remove(path)
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}, detail: "not a regular file"},
		{name: "garbage", make: func(t *testing.T) {
			_ = os.Remove(path)
			replaceFile(t, path, []byte(`{"keys": [{"kty": "RSA", `), 0o644)
		}, detail: "not a JSON object"},
		{name: "oversized", make: func(t *testing.T) {
			big := `{"keys":[],"x":"` + strings.Repeat("a", 1<<20) + `"}`
			replaceFile(t, path, []byte(big), 0o644)
		}, detail: "more than the limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.make(t)
			start := time.Now()
			log := e.refused(t, "alice", newTok, "keys_unavailable")
			if !strings.Contains(log, path) || !strings.Contains(log, tc.detail) {
				t.Errorf("the log does not name the file and %q:\n%s", tc.detail, log)
			}
			if took := time.Since(start); took > 30*time.Second {
				t.Errorf("refusal took %v", took)
			}
		})
	}
	t.Run("good file again", func(t *testing.T) {
		_ = os.Remove(path)
		replaceFile(t, path, keySetOf(set[newKID]), 0o644)
		e.mustLogin(t, ctx, "alice", newTok).Close(ctx)
	})
	if err := e.IdP.SetMode(testidp.ModeNormal); err != nil {
		t.Fatal(err)
	}
	if n := requests(); n != 0 {
		t.Errorf("%d requests reached the identity provider", n)
	}
	// No cache entry was written for the issuer: nothing was fetched.
	entries, _ := os.ReadDir(filepath.Join(e.PG.Data, "oauth_jwt_cache"))
	for _, en := range entries {
		if strings.HasSuffix(en.Name(), ".json") {
			t.Errorf("key cache entry %s written for an issuer with a key file", en.Name())
		}
	}
}
