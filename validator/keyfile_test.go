package validator

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// failSource fails the test when asked: with jwks_file set, the key cache
// (and so the network) must never be consulted.
type failSource struct{ tb testing.TB }

func (f failSource) Keys(context.Context, keycache.Query) (keycache.Keys, error) {
	f.tb.Errorf("the key cache was asked for keys of an issuer with a key file")
	return keycache.Keys{}, errors.New("not allowed")
}

// writeKeyFile writes set as JSON into path with mode perm.
func writeKeyFile(tb testing.TB, path string, set jwk.Set, perm os.FileMode) {
	tb.Helper()
	js, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	// Replace by rename, as an administrator's tool would; the new inode
	// changes the stamp even within one mtime tick.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, js, perm); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(tmp, perm); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

func keyFileVerifier(tb testing.TB, path string) *Verifier {
	tb.Helper()
	return newTestVerifier(tb, failSource{tb}, Settings{"jwks_file": path})
}

// Refusals first: each bad file refuses the token with keys_unavailable
// and a detail that names the file and what is wrong with it.
func TestKeyFileRefusals(t *testing.T) {
	f := testFixture(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeKeyFile(t, good, f.set, 0o600)
	cases := []struct {
		name   string
		make   func(t *testing.T) string // returns the path to configure
		detail string
	}{
		{name: "missing", make: func(t *testing.T) string { return filepath.Join(dir, "nope.json") }, detail: "no such file"},
		{name: "writable by others", make: func(t *testing.T) string {
			p := filepath.Join(dir, "ww.json")
			writeKeyFile(t, p, f.set, 0o666)
			return p
		}, detail: "writable by group or others"},
		{name: "writable by group", make: func(t *testing.T) string {
			p := filepath.Join(dir, "gw.json")
			writeKeyFile(t, p, f.set, 0o620)
			return p
		}, detail: "writable by group or others"},
		{name: "symbolic link", make: func(t *testing.T) string {
			p := filepath.Join(dir, "link.json")
			if err := os.Symlink(good, p); err != nil {
				t.Fatal(err)
			}
			return p
		}, detail: "symbolic link"},
		{name: "FIFO", make: func(t *testing.T) string {
			p := filepath.Join(dir, "fifo.json")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, detail: "not a regular file"},
		{name: "directory", make: func(t *testing.T) string {
			p := filepath.Join(dir, "d.json")
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			return p
		}, detail: "not a regular file"},
		{name: "garbage", make: func(t *testing.T) string {
			p := filepath.Join(dir, "garbage.json")
			if err := os.WriteFile(p, []byte("{\"keys\": [ not json"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, detail: "not a JSON object"},
		{name: "no keys array", make: func(t *testing.T) string {
			p := filepath.Join(dir, "nokeys.json")
			if err := os.WriteFile(p, []byte(`{"kty":"RSA"}`), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, detail: `no "keys" array`},
		{name: "oversized", make: func(t *testing.T) string {
			p := filepath.Join(dir, "big.json")
			big := `{"keys":[],"pad":"` + strings.Repeat("x", MaxKeyFileBytes) + `"}`
			if err := os.WriteFile(p, []byte(big), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, detail: "more than the limit"},
		{name: "directory writable by others", make: func(t *testing.T) string {
			d := filepath.Join(dir, "open")
			if err := os.Mkdir(d, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(d, "keys.json")
			writeKeyFile(t, p, f.set, 0o600)
			return p
		}, detail: "writable by group or others"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.make(t)
			v := keyFileVerifier(t, path)
			tok := f.rs256().build(t)
			done := make(chan struct{})
			var res Result
			var err error
			go func() {
				defer close(done)
				res, err = v.Validate(context.Background(), Request{Token: tok, Issuer: testIssuer})
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("validation did not return (a FIFO must not block)")
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if res.Authorized || res.Reason != ReasonKeysUnavailable {
				t.Fatalf("verdict %v %s, want refused keys_unavailable", res.Authorized, res.Reason)
			}
			d := res.Err().(*RejectionError).Detail
			if !strings.Contains(d, path) || !strings.Contains(d, tc.detail) || !strings.Contains(d, `"oauth_jwt.jwks_file"`) {
				t.Errorf("detail %q does not name the file and %q", d, tc.detail)
			}
			assertNoTokenText(t, tok, res, err)
		})
	}
}

// Keys are replaced by rewriting the file: the old kid is refused, the new
// one accepted, with no network and no restart.
func TestKeyFileRotation(t *testing.T) {
	f := testFixture(t)
	path := filepath.Join(t.TempDir(), "keys.json")
	writeKeyFile(t, path, f.set, 0o600)
	v := keyFileVerifier(t, path)
	judge := func(tok string) Result {
		t.Helper()
		res, err := v.Validate(context.Background(), Request{Token: tok, Issuer: testIssuer})
		if err != nil {
			t.Fatalf("Validate: %v", err)
		}
		return res
	}
	oldTok := f.rs256().build(t)
	newTok := f.rs256().signedWith("RS256", "rsa2", f.rotated).build(t)
	if res := judge(newTok); res.Reason != ReasonUnknownKID {
		t.Fatalf("token of a key not yet in the file: %s, want unknown_kid", res.Reason)
	}
	if res := judge(oldTok); !res.Authorized {
		t.Fatalf("token of the file's key refused: %s %v", res.Reason, res.Err())
	}
	// The new file holds only the new key.
	only := jwk.NewSet()
	k, ok := f.rotatedTo.LookupKeyID("rsa2")
	if !ok {
		t.Fatal("fixture lacks rsa2")
	}
	if err := only.AddKey(k); err != nil {
		t.Fatal(err)
	}
	writeKeyFile(t, path, only, 0o600)
	if res := judge(oldTok); res.Reason != ReasonUnknownKID {
		t.Errorf("token of the removed key: %s, want unknown_kid", res.Reason)
	}
	if res := judge(newTok); !res.Authorized {
		t.Errorf("token of the new key refused: %s %v", res.Reason, res.Err())
	}
	// Made writable by others afterwards, the same contents are refused.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if res := judge(newTok); res.Reason != ReasonKeysUnavailable {
		t.Errorf("token after chmod 666: %s, want keys_unavailable", res.Reason)
	}
}

// A section of issuer_config may give one issuer a key file while the
// others keep fetching.
func TestKeyFileInIssuerConfig(t *testing.T) {
	f := testFixture(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	writeKeyFile(t, keys, f.set, 0o600)
	conf := filepath.Join(dir, "issuers.conf")
	body := "[" + testIssuer + "]\naudience = pg\njwks_file = " + keys + "\n" +
		"[https://other.example.com]\naudience = pg\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	v := newTestVerifier(t, failSource{t}, Settings{"issuer_config": conf})
	if p := v.Config().PolicyFor("https://other.example.com"); p.JWKSFile != "" {
		t.Errorf("the other issuer inherited jwks_file %q", p.JWKSFile)
	}
	res, err := v.Validate(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer})
	if err != nil || !res.Authorized {
		t.Fatalf("refused: %v %s %v", err, res.Reason, res.Err())
	}
}
