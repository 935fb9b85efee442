package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// nobodyUID is a uid that is neither root nor the server's.
const nobodyUID = 65534

// trustEnv is an identity provider and a server whose files the cases
// below break one at a time.
type trustEnv struct {
	*idpEnv
	conf map[string]string
}

func newTrustEnv(t *testing.T) *trustEnv {
	t.Helper()
	e := newIdPEnv(t, "alice")
	return &trustEnv{idpEnv: e, conf: baseConf(map[string]string{"oauth_jwt.role_from_identity": "on"})}
}

// set changes settings ("" removes one) and reloads.
func (e *trustEnv) set(t *testing.T, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		if v == "" {
			delete(e.conf, k)
		} else {
			e.conf[k] = v
		}
	}
	e.PG.SetConf(e.conf)
}

// failedLogin logs in with a valid token, expects a refusal, waits for
// the log to contain every one of wants and returns the login's log and
// how long the client waited for its refusal. The context of the login is
// only a failure detector: a hang shows as a failure after a minute.
func (e *trustEnv) failedLogin(t *testing.T, wants ...string) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok := e.token(t, "alice", nil)
	mark := e.PG.LogMark()
	start := time.Now()
	conn, err := e.PG.ConnectOAuth(ctx, "alice", tok)
	took := time.Since(start)
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("login accepted; want a refusal naming %q", wants)
	}
	if ctx.Err() != nil {
		t.Fatalf("the login did not end within a minute (%v):\n%s", err, e.PG.LogSince(mark))
	}
	log := e.PG.WaitLog(mark, wants[0])
	for _, w := range wants[1:] {
		if !strings.Contains(log, w) {
			t.Errorf("the log does not say %q:\n%s", w, log)
		}
	}
	assertNoTokenInLog(t, log, tok)
	return log, took
}

// okLogin logs in with a valid token and returns the login's log.
func (e *trustEnv) okLogin(t *testing.T) string {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	mark := e.PG.LogMark()
	conn := e.mustLogin(t, ctx, "alice", e.token(t, "alice", nil))
	conn.Close(ctx)
	return e.PG.LogSince(mark)
}

// writeServerFile writes path as the server's OS user would own it.
func writeServerFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	chown(t, path)
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test gives files to other users (chown) and runs the server as another user: run it as root")
	}
}

// issuer_config decides which keys an issuer's tokens are checked with: a
// file that someone else could change is refused at login, and the log
// line names the file and the fix. Put right, the next login succeeds.
func TestIssuerConfigTrustedThroughServer(t *testing.T) {
	needRoot(t)
	e := newTrustEnv(t)
	path := filepath.Join(e.PG.Dir, "issuers.conf")
	text := fmt.Sprintf("[%s]\naudience = %s\n", e.IdP.Issuer(), testAudience)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
		wants []string
	}{
		{"writable by others", func(t *testing.T) { writeServerFile(t, path, text, 0o666) },
			[]string{"issuer configuration file " + path + " is writable by group or others (mode 0666)", "chmod go-w " + path}},
		{"owned by another user", func(t *testing.T) {
			writeServerFile(t, path, text, 0o644)
			if err := os.Chown(path, nobodyUID, nobodyUID); err != nil {
				t.Fatal(err)
			}
		}, []string{"issuer configuration file " + path + " is owned by uid 65534, not by the server's OS user", "give it to the server's OS user"}},
		{"a symbolic link", func(t *testing.T) {
			writeServerFile(t, path+".real", text, 0o600)
			if err := os.Symlink(path+".real", path); err != nil {
				t.Fatal(err)
			}
		}, []string{"issuer configuration file " + path + " is a symbolic link", `set "oauth_jwt.issuer_config" to the path of the regular file itself`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(path)
			tc.setup(t)
			e.set(t, map[string]string{"oauth_jwt.issuer_config": quote(path)})
			log, _ := e.failedLogin(t, tc.wants...)
			if !strings.Contains(log, `Invalid configuration for "oauth_jwt.issuer_config"`) {
				t.Errorf("the log does not name the setting:\n%s", log)
			}
		})
	}
	t.Run("owned by the server's user, mode 0600", func(t *testing.T) {
		os.Remove(path)
		writeServerFile(t, path, text, 0o600)
		e.okLogin(t)
	})
}

// A FIFO (with or without a writer that never writes) or an oversized
// file at issuer_config or ca_file does not hang the login, which runs with
// the backend's signals blocked: it fails at once with a log line naming
// the file, and the backend is gone. Before the fix, the open (no writer)
// or the read (a silent writer) blocked forever and only SIGKILL, which
// restarts the whole server, ended the backend.
func TestFIFOAtTrustedPathsDoesNotHang(t *testing.T) {
	needRoot(t)
	e := newTrustEnv(t)
	e.okLogin(t) // warm: the cases below never need the network
	pidRE := regexp.MustCompile(`\[(\d+)\] [^\n]*oauth_jwt: validator failed`)
	for _, tc := range []struct {
		name, setting string
		writer        bool // a writer holds the FIFO open and never writes
		oversize      bool // a regular file above the size limit instead
		want          string
	}{
		{name: "issuer_config FIFO", setting: "issuer_config", want: "issuer configuration file %s is a FIFO, not a regular file"},
		{name: "issuer_config FIFO with a silent writer", setting: "issuer_config", writer: true, want: "issuer configuration file %s is a FIFO, not a regular file"},
		{name: "ca_file FIFO", setting: "ca_file", want: "CA file %s is a FIFO, not a regular file"},
		{name: "ca_file FIFO with a silent writer", setting: "ca_file", writer: true, want: "CA file %s is a FIFO, not a regular file"},
		{name: "ca_file of 3 MiB", setting: "ca_file", oversize: true, want: "CA file %s is 3145728 bytes long, more than the limit of 2097152 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(e.PG.Dir, "trusted-"+strconv.Itoa(int(time.Now().UnixNano())))
			if tc.oversize {
				writeServerFile(t, path, strings.Repeat("x", 3<<20), 0o600)
			} else {
				if err := syscall.Mkfifo(path, 0o600); err != nil {
					t.Fatal(err)
				}
				chown(t, path)
			}
			defer os.Remove(path)
			if tc.writer {
				w, err := os.OpenFile(path, os.O_RDWR, 0) // O_RDWR: does not wait for a reader
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
			}
			e.set(t, map[string]string{"oauth_jwt." + tc.setting: quote(path)})
			defer e.set(t, map[string]string{"oauth_jwt." + tc.setting: ""})
			log, took := e.failedLogin(t, fmt.Sprintf(tc.want, path))
			m := pidRE.FindStringSubmatch(log)
			if m == nil {
				t.Fatalf("no validator failure line with a pid:\n%s", log)
			}
			pid, _ := strconv.Atoi(m[1])
			// The backend ends by itself; pg_terminate_backend would find
			// nothing to end. The bound only detects a hang.
			gone := processGone(t, pid, 20*time.Second)
			t.Logf("%s: refused after %v; backend %d gone %v after the refusal", tc.name,
				took.Round(time.Millisecond), pid, gone.Round(time.Millisecond))
		})
	}
	e.okLogin(t)
}

// The fetch helper writes the keys every backend trusts: a helper another
// user owns, or one its group may write, is never run. The log line names
// the file and the fix, no request reaches the identity provider, and the
// helper put right fetches at the next login.
func TestFetchHelperTrustedThroughServer(t *testing.T) {
	needRoot(t)
	e := newTrustEnv(t) // cold cache: every login needs the helper
	helper := filepath.Join(e.PG.Dir, "lib", pgtest.FetchHelper)
	restore := func(t *testing.T) {
		t.Helper()
		chown(t, helper)
		if err := os.Chmod(helper, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
		wants []string
	}{
		{"owned by another user", func(t *testing.T) {
			if err := os.Chown(helper, nobodyUID, nobodyUID); err != nil {
				t.Fatal(err)
			}
		}, []string{"key fetch helper " + helper + " is owned by uid 65534, not by the server's OS user"}},
		{"writable by its group", func(t *testing.T) {
			if err := os.Chmod(helper, 0o775); err != nil {
				t.Fatal(err)
			}
		}, []string{"key fetch helper " + helper + " is writable by group or others (mode 0775)", "chmod go-w " + helper}},
		{"in a directory others can write", func(t *testing.T) {
			if err := os.Chmod(filepath.Dir(helper), 0o777); err != nil {
				t.Fatal(err)
			}
		}, []string{"key fetch helper " + helper + " is in directory " + filepath.Dir(helper) + ", which is writable by group or others (mode 0777)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup(t)
			defer restore(t)
			defer os.Chmod(filepath.Dir(helper), 0o755)
			e.IdP.ResetCounts()
			e.failedLogin(t, tc.wants...)
			if n := e.IdP.Requests(testidp.PathDiscovery) + e.IdP.Requests(testidp.PathJWKS); n != 0 {
				t.Errorf("%d requests reached the identity provider through a refused helper", n)
			}
		})
	}
	restore(t)
	e.IdP.ResetCounts()
	e.okLogin(t)
	if n := e.IdP.Requests(testidp.PathJWKS); n != 1 {
		t.Errorf("%d JWKS requests after the helper was put right, want 1", n)
	}
}
