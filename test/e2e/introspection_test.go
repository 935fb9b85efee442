package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
)

// introspectionConf turns on introspection = always against Keycloak with
// the realm's pg-introspect client; ttl 0 asks at every login, so a
// revocation is seen by the very next login (the bound of the cache is 0).
func introspectionConf(t *testing.T, e *env, secret string) {
	t.Helper()
	path := filepath.Join(e.Dir, "introspect.secret")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.chownServer(t, path)
	e.setConf(map[string]string{
		"oauth_jwt.introspection":             "always",
		"oauth_jwt.introspection_client_id":   quote(keycloak.IntrospectClient),
		"oauth_jwt.introspection_secret_file": quote(path),
		"oauth_jwt.introspection_cache_ttl":   "0",
		"oauth_jwt.role_from_identity":        "on",
	})
}

// Revocation through a real Keycloak: a token accepted with
// introspection = always is refused token_inactive at the next login after
// RFC 7009 revocation, after the admin API logs the user's sessions out,
// and after the user is disabled. With introspection_cache_ttl = 0 the
// bound is "the next login"; no timing is asserted.
func TestIntrospectionKeycloak(t *testing.T) {
	needKeycloak(t)
	e := newEnv(t, delegatedConf, []string{hbaDelegated(issuer())}, "carol")
	introspectionConf(t, e, keycloak.IntrospectSecret)
	ctx := ctxT(t, 5*time.Minute)
	admin, err := kc.Admin(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("revoked (RFC 7009)", func(t *testing.T) {
		tok := userToken(t, "carol")
		e.loginAs(t, "carol", tok, "oauth:carol")
		if err := keycloak.Revoke(ctx, issuer(), keycloak.DeviceClient, "", tok); err != nil {
			t.Fatal(err)
		}
		e.refused(t, "carol", tok, "token_inactive")
	})
	t.Run("sessions logged out (admin API)", func(t *testing.T) {
		tok := userToken(t, "carol")
		e.loginAs(t, "carol", tok, "oauth:carol")
		if err := admin.LogoutUser(ctx, keycloak.Realm, "carol"); err != nil {
			t.Fatal(err)
		}
		e.refused(t, "carol", tok, "token_inactive")
	})
	t.Run("user disabled", func(t *testing.T) {
		tok := userToken(t, "carol")
		e.loginAs(t, "carol", tok, "oauth:carol")
		if err := admin.SetUserEnabled(ctx, keycloak.Realm, "carol", false); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := admin.SetUserEnabled(context.Background(), keycloak.Realm, "carol", true); err != nil {
				t.Errorf("enabling carol again: %v", err)
			}
		})
		e.refused(t, "carol", tok, "token_inactive")
	})
	t.Run("wrong client secret: introspection_failed", func(t *testing.T) {
		if err := admin.SetUserEnabled(ctx, keycloak.Realm, "carol", true); err != nil {
			t.Fatal(err)
		}
		tok := userToken(t, "carol")
		introspectionConf(t, e, "not-the-secret")
		defer introspectionConf(t, e, keycloak.IntrospectSecret)
		log := e.refused(t, "carol", tok, "introspection_failed")
		if !strings.Contains(log, "401") || strings.Contains(log, "not-the-secret") {
			t.Errorf("the log should name the refused credentials, not the secret:\n%s", scrub(log))
		}
	})
	t.Run("cached answers are bounded by the TTL", func(t *testing.T) {
		// A positive answer may be reused for introspection_cache_ttl: a
		// revocation inside it is seen when the entry expires, never later.
		e.setConf(map[string]string{"oauth_jwt.introspection_cache_ttl": "3600"})
		defer e.setConf(map[string]string{"oauth_jwt.introspection_cache_ttl": "0"})
		tok := userToken(t, "carol")
		e.loginAs(t, "carol", tok, "oauth:carol")
		if err := keycloak.Revoke(ctx, issuer(), keycloak.DeviceClient, "", tok); err != nil {
			t.Fatal(err)
		}
		// Within the TTL (and the token's exp) the cached answer stands...
		e.loginAs(t, "carol", tok, "oauth:carol")
		// ...and lowering the TTL applies to entries already cached.
		e.setConf(map[string]string{"oauth_jwt.introspection_cache_ttl": "0"})
		e.refused(t, "carol", tok, "token_inactive")
	})
}

// chownServer hands path to the server's OS user (when the test runs as
// root), as a DBA installs a secret the server reads.
func (e *env) chownServer(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", pgtest.ServerUser+":", path).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
}

var (
	toolOnce sync.Once
	toolPath string
	toolErr  error
)

// checkTool builds oauth_jwt_check once, where the server's OS user can run it.
func checkTool(t *testing.T) string {
	t.Helper()
	toolOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ojw-check-")
		if err != nil {
			toolErr = err
			return
		}
		os.Chmod(dir, 0o755)
		toolPath = filepath.Join(dir, "oauth_jwt_check")
		root, err := keycloak.RepoRoot()
		if err != nil {
			toolErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", toolPath, "./cmd/oauth_jwt_check")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			toolErr = fmt.Errorf("go build oauth_jwt_check: %v: %s", err, out)
		}
	})
	if toolErr != nil {
		t.Fatal(toolErr)
	}
	return toolPath
}

// compareTool runs oauth_jwt_check token for a login as role, with the
// cluster's settings and the pg_hba.conf line PostgreSQL picks for role,
// as the server's OS user (the trusted files belong to it), and fails when
// its reason differs from the one the server logged. The tool fetches keys
// and asks the introspection endpoint itself, so it is skipped while the
// test has stopped Keycloak (the server then judges from its cache); and it
// cannot read pg_authid, so privileged_role is not compared.
func (e *env) compareTool(t *testing.T, role, tok, logged string) {
	t.Helper()
	kcMu.Lock()
	down := kcDown
	kcMu.Unlock()
	if down || logged == "privileged_role" {
		return
	}
	hba := filepath.Join(e.Data, "pg_hba.conf")
	line := hbaLineFor(t, hba, role)
	args := []string{"token", "--hba", hba, "--hba-line", strconv.Itoa(line), "--role", role, "--json",
		"--cache-dir", e.cacheCopy(t)}
	for k, v := range e.conf {
		name := strings.TrimPrefix(k, "oauth_jwt.")
		if name == k {
			continue
		}
		v = strings.TrimSuffix(strings.TrimPrefix(v, "'"), "'")
		args = append(args, "--set", name+"="+v)
	}
	prog := checkTool(t)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", pgtest.ServerUser, "--", prog}, args...)...)
	} else {
		cmd = exec.Command(prog, args...)
	}
	cmd.Dir = "/"
	cmd.Stdin = strings.NewReader(tok)
	out, _ := cmd.Output()
	var rep struct {
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Errorf("oauth_jwt_check printed no JSON report: %v\n%s", err, scrub(string(out)))
		return
	}
	if rep.Reason != logged {
		t.Errorf("oauth_jwt_check says %q, the server logged %q", rep.Reason, logged)
	}
	assertNoToken(t, string(out), tok)
}

// cacheCopy copies the server's key cache into a directory of the server's
// OS user, so that the tool judges with the same keys and the same refetch
// history (an unknown kid within kid_refetch_interval is refused without a
// fetch) without changing what the server will do next.
func (e *env) cacheCopy(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ojw-check-cache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dst := filepath.Join(dir, "cache")
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	e.chownServer(t, dir)
	e.chownServer(t, dst)
	src := filepath.Join(e.Data, "oauth_jwt_cache")
	if _, err := os.Stat(src); err == nil {
		cp := exec.Command("cp", "-a", src+"/.", dst)
		if os.Geteuid() == 0 {
			cp = exec.Command("runuser", "-u", pgtest.ServerUser, "--", "cp", "-a", src+"/.", dst)
		}
		if out, err := cp.CombinedOutput(); err != nil {
			t.Fatalf("copying the key cache: %v: %s", err, out)
		}
	}
	return dst
}

// hbaLineFor is the number of the first host oauth line of path whose
// user field is role or all: the one PostgreSQL uses for a TCP login as
// role from 127.0.0.1 (every line of these tests has that address).
func hbaLineFor(t *testing.T, path, role string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && (f[0] == "host" || f[0] == "hostssl") && f[4] == "oauth" && (f[2] == "all" || f[2] == role) {
			return i + 1
		}
	}
	t.Fatalf("no oauth line for %s in %s", role, path)
	return 0
}
