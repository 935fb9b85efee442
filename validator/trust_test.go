package validator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/oauth-jwt/oauth_jwt/internal/trustedfile"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// The issuer_config file decides which keys an issuer's tokens are
// checked against: it gets the trusted-file rule, and a failure names the
// file and the fix in one configuration error.
func TestIssuerConfigTrustedFileRule(t *testing.T) {
	const text = "[https://a]\naudience = x\n"
	cases := []struct {
		name  string
		root  bool
		setup func(t *testing.T, dir string) string
		want  string
	}{
		{"owned by another user", true, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "issuers.conf")
			writeFile(t, p, text, 0o644)
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is owned by uid 65534, not by the server's OS user"},
		{"writable by group", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "issuers.conf")
			writeFile(t, p, text, 0o664)
			return p
		}, "is writable by group or others (mode 0664); make it writable by its owner only (chmod go-w"},
		{"symbolic link", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "issuers.conf")
			writeFile(t, p+".real", text, 0o600)
			if err := os.Symlink(p+".real", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, `is a symbolic link; set "oauth_jwt.issuer_config" to the path of the regular file itself`},
		{"FIFO", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "issuers.conf")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is a FIFO, not a regular file"},
		{"in a directory others can write", false, func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "open")
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(d, "issuers.conf")
			writeFile(t, p, text, 0o600)
			return p
		}, "which is writable by group or others (mode 0777): they can replace the file"},
		{"larger than 1 MiB", false, func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "issuers.conf")
			writeFile(t, p, text+strings.Repeat("#\n", maxIssuerConfigBytes), 0o600)
			return p
		}, "more than the limit of 1048576 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Fatal("this case gives a file to another user (chown): run the tests as root")
			}
			path := tc.setup(t, t.TempDir())
			s := baseSettings()
			s["issuer_config"] = path
			_, err := New(s, WithKeySource(&memSource{}))
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Setting != "oauth_jwt.issuer_config" {
				t.Fatalf("error %v, want a *ConfigError of oauth_jwt.issuer_config", err)
			}
			if !strings.Contains(err.Error(), "issuer configuration file "+path+" ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q; want it to name the file and contain %q", err, tc.want)
			}
		})
	}
	t.Run("mode 0644, owned by the server's user", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "issuers.conf")
		writeFile(t, path, text, 0o644)
		s := baseSettings()
		s["issuer_config"] = path
		if _, err := New(s, WithKeySource(&memSource{})); err != nil {
			t.Fatal(err)
		}
	})
}

// The same for ca_file, read by the default key source at every login.
func TestCAFileTrustedFileRule(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "ca.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	s := baseSettings()
	s["cache_dir"], s["ca_file"] = filepath.Join(dir, "cache"), fifo
	_, err := New(s)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Setting != "oauth_jwt.ca_file" || !errors.Is(err, trustedfile.ErrUntrusted) ||
		!strings.Contains(err.Error(), "CA file "+fifo+" is a FIFO, not a regular file") {
		t.Fatalf("error %v; want a ca_file configuration error naming the FIFO", err)
	}
}

// Keys the cache could not store are used, with a WARNING that says so;
// keys fetched "in the future" are refused with a WARNING about the clock.
func TestKeyCacheWarnings(t *testing.T) {
	f := testFixture(t)
	cases := []struct {
		name    string
		src     func(m *memSource)
		want    Reason
		message string
		detail  string
	}{
		{"cached keys dated in the future", func(m *memSource) {
			m.err = fmt.Errorf("%w: cached JWKS was fetched at 2030-01-01T00:00:00Z", keycache.ErrFutureFetch)
		}, ReasonKeysUnavailable, msgFutureKeys, `"oauth_jwt.cache_max_stale" cannot be enforced`},
		{"keys fetched but not stored", func(m *memSource) {
			m.unstored = "open /c/.x.tmp1: permission denied"
		}, ReasonOK, msgUnstored, "single flight and the failure backoff are degraded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &memSource{set: f.set}
			tc.src(src)
			v := newTestVerifier(t, src, nil)
			res, err := v.Validate(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer})
			if err != nil || res.Reason != tc.want {
				t.Fatalf("Validate = %s, %v; want %s", res.Reason, err, tc.want)
			}
			var found bool
			for _, l := range res.Logs {
				if l.Message == tc.message {
					found = l.Level == LevelWarning && strings.Contains(l.Detail, tc.detail)
				}
			}
			if !found {
				t.Errorf("no WARNING %q with %q in %+v", tc.message, tc.detail, res.Logs)
			}
		})
	}
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
