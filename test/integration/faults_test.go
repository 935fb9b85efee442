package integration

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// Roles that trigger faults in test builds (validator/capi/hooks_on.go).
const (
	rolePanicBegin = "ojw_test_panic_begin"
	rolePanicRun   = "ojw_test_panic"
	roleBlock      = "ojw_test_block"
)

// hookCluster is a cluster with an oauth line whose issuer is never
// contacted: the trigger roles act before any network use.
func hookCluster(t *testing.T, conf ...string) *pgtest.Cluster {
	t.Helper()
	c := pgtest.New(t, pgtest.Options{Conf: conf})
	c.SetConf(map[string]string{"oauth_jwt.audience": "'pg'", "oauth_jwt.require_https": "off"})
	c.SetHBA(`host all all 127.0.0.1/32 oauth issuer="http://127.0.0.1:9/realms/none" scope="openid" delegate_ident_mapping=1`)
	return c
}

// A panic inside Go becomes a logged internal error; the server does not
// restart and other sessions are undisturbed (DESIGN.md §3.4).
func TestPanicBecomesInternalError(t *testing.T) {
	c := hookCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	bystander := c.Admin(ctx)
	defer bystander.Close(ctx)
	var bystanderPID int
	if err := bystander.QueryRow(ctx, "select pg_backend_pid()").Scan(&bystanderPID); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, role, want string }{
		{"in the export", rolePanicBegin, "Panic while starting validation: test trigger"},
		{"in the validation goroutine", rolePanicRun, "Panic during validation: test trigger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := c.LogMark()
			conn, err := c.ConnectOAuth(ctx, tc.role, "not-a-token-"+tc.role)
			if err == nil {
				conn.Close(ctx)
				t.Fatal("login succeeded after a panic in the validator")
			}
			log := c.WaitLog(mark, "internal error in OAuth validator module")
			if !strings.Contains(log, tc.want) {
				t.Errorf("log does not explain the panic (%q):\n%s", tc.want, log)
			}
			if strings.Contains(log, "not-a-token-") {
				t.Errorf("the token reached the server log:\n%s", log)
			}
		})
	}

	// Same backend still answers; no crash-restart happened.
	var pid int
	if err := bystander.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err != nil || pid != bystanderPID {
		t.Fatalf("bystander session disturbed: pid %d err %v", pid, err)
	}
	for _, bad := range []string{"terminating any other active server processes", "server process (PID", "all server processes terminated"} {
		if strings.Contains(c.Log(), bad) {
			t.Errorf("server log shows a crash-restart (%q):\n%s", bad, c.LogTail(40))
		}
	}
}

// blockedLogin starts a login whose validation never finishes and returns
// the backend pid (found by the shim's wait event) and the login's result.
func blockedLogin(t *testing.T, c *pgtest.Cluster) (int, <-chan error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		conn, err := c.ConnectOAuth(ctx, roleBlock, "blocked-login-token")
		if err == nil {
			conn.Close(ctx)
			err = fmt.Errorf("login unexpectedly succeeded")
		} else {
			err = nil
		}
		done <- err
	}()
	return waitForValidatingBackend(t, c), done
}

// waitForValidatingBackend finds the backend waiting in the shim.
func waitForValidatingBackend(t *testing.T, c *pgtest.Cluster) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := c.Admin(ctx)
	defer admin.Close(ctx)
	for ctx.Err() == nil {
		var pid int
		err := admin.QueryRow(ctx, `select pid from pg_stat_activity where wait_event = 'OAuthJwtValidate' limit 1`).Scan(&pid)
		if err == nil {
			return pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no backend waiting on wait event OAuthJwtValidate\n%s", c.LogTail(20))
	return 0
}

// processGone waits up to bound for pid to exit and returns how long it took.
func processGone(t *testing.T, pid int, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < bound {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("backend %d still alive %v after it was told to stop", pid, bound)
	return 0
}

// A backend waiting for Go stays interruptible: terminate, cancel and
// authentication_timeout end it within a second (DESIGN.md §3.5).
func TestWaitingValidationIsInterruptible(t *testing.T) {
	c := hookCluster(t, "authentication_timeout = '3s'")
	ctx := context.Background()

	for _, tc := range []struct {
		name   string
		act    string // SQL with %d for the pid, or "" to wait for authentication_timeout
		bound  time.Duration
		logged string
	}{
		// PostgreSQL's own wording for a die during authentication.
		{"pg_terminate_backend", "select pg_terminate_backend(%d)", time.Second, "FATAL:  canceling authentication due to timeout"},
		{"pg_cancel_backend", "select pg_cancel_backend(%d)", time.Second, "FATAL:  canceling statement due to user request"},
		// The startup-packet timer exits the process without a log line.
		{"authentication_timeout", "", 3*time.Second + time.Second, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := c.LogMark()
			pid, done := blockedLogin(t, c)
			start := time.Now()
			if tc.act != "" {
				admin := c.Admin(ctx)
				if _, err := admin.Exec(ctx, fmt.Sprintf(tc.act, pid)); err != nil {
					t.Fatal(err)
				}
				admin.Close(ctx)
			}
			took := processGone(t, pid, tc.bound)
			if tc.act == "" {
				took = time.Since(start)
			}
			t.Logf("%s: backend %d gone after %v", tc.name, pid, took.Round(time.Millisecond))
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if tc.logged != "" {
				c.WaitLog(mark, fmt.Sprintf("[%d] %s@postgres %s", pid, roleBlock, tc.logged))
			}
		})
	}
}

// pg_ctl stop -m fast completes while a backend is waiting for Go.
func TestFastShutdownDuringValidation(t *testing.T) {
	c := hookCluster(t)
	pid, done := blockedLogin(t, c)
	start := time.Now()
	if err := c.Stop("fast"); err != nil {
		t.Fatal(err)
	}
	t.Logf("pg_ctl stop -m fast took %v with backend %d waiting in validation", time.Since(start).Round(time.Millisecond), pid)
	processGone(t, pid, time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The library refuses shared_preload_libraries: the server does not start
// and the log says what to do instead (DESIGN.md §3.1).
func TestPreloadRefused(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{NoStart: true, Conf: []string{"shared_preload_libraries = 'oauth_jwt'"}})
	if err := c.TryStart(); err == nil {
		t.Fatal("server started with oauth_jwt in shared_preload_libraries")
	}
	log := c.Log()
	for _, want := range []string{
		`oauth_jwt cannot be loaded via "shared_preload_libraries"`,
		`name it in "oauth_validator_libraries" instead`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("server log lacks %q:\n%s", want, log)
		}
	}
}

// A backend whose validation waits on an identity provider that never
// answers (cold key cache) still obeys terminate and cancel at once, well
// before the HTTP timeout or authentication_timeout would end it.
func TestHangingIdentityProviderInterruptible(t *testing.T) {
	e := newIdPEnv(t, "alice")
	e.PG.SetConf(baseConf(map[string]string{
		"oauth_jwt.role_from_identity": "on",
		"oauth_jwt.http_timeout":       "'50s'", // only the signal may end the wait
	}))
	e.IdP.SetMode(testidp.ModeHang)
	tok := e.token(t, "alice", nil)

	for _, tc := range []struct{ name, act, logged string }{
		{"pg_terminate_backend", "select pg_terminate_backend(%d)", "FATAL:  canceling authentication due to timeout"},
		{"pg_cancel_backend", "select pg_cancel_backend(%d)", "FATAL:  canceling statement due to user request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := e.PG.LogMark()
			pid := interruptHangingLogin(t, e, tok, testidp.PathDiscovery, tc.act)
			e.PG.WaitLog(mark, fmt.Sprintf("[%d] alice@postgres %s", pid, tc.logged))
		})
	}
}

// interruptHangingLogin starts a login as alice with tok, waits until its
// backend validates and the identity provider has received a request on
// path (so the backend really waits on it), runs act (an SQL format taking
// the pid) from another session and returns the pid once the backend is
// gone. The login must fail.
func interruptHangingLogin(t *testing.T, e *idpEnv, tok, path, act string) int {
	t.Helper()
	before := e.IdP.Requests(path)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		conn, err := e.PG.ConnectOAuth(ctx, "alice", tok)
		if err == nil {
			conn.Close(ctx)
			done <- fmt.Errorf("login succeeded against an endpoint (%s) that never answers", path)
			return
		}
		done <- nil
	}()
	pid := waitForValidatingBackend(t, e.PG)
	for e.IdP.Requests(path) == before {
		time.Sleep(5 * time.Millisecond)
	}
	admin := e.PG.Admin(context.Background())
	if _, err := admin.Exec(context.Background(), fmt.Sprintf(act, pid)); err != nil {
		t.Fatal(err)
	}
	admin.Close(context.Background())
	took := processGone(t, pid, time.Second)
	t.Logf("backend %d waiting on %s gone after %v", pid, path, took.Round(time.Millisecond))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return pid
}
