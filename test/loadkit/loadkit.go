// Package loadkit holds what the load, soak, fault, hostile-input and
// confidentiality suites (test/load, test/faults, test/hostile,
// test/zz_confidentiality) share: a test identity provider plus a cluster
// trusting it, token minting, crash detection (postmaster pid and the
// crash lines PostgreSQL logs), per-process memory and thread samples from
// /proc, waiting for a backend to exit, a login-rate run with concurrent
// clients (also used by the connection benchmark, test/integration),
// latency quantiles, the reason codes a server log names, and the
// JSON result files (the types of test/results) that scripts/report.sh
// turns into docs/report.md.
//
// Everything runs on loopback and is bounded in time; sizes come from
// environment variables with defaults that meet issue 6's minimums (see
// EnvInt and EnvDuration and each suite's package comment).
package loadkit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/results"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// Audience is the audience every test token carries unless a case says
// otherwise, and the one the clusters accept.
const Audience = "postgres-db"

// Realm is the issuer path of the test identity providers.
const Realm = "/realms/test"

// StartIdP starts a test identity provider stopped at cleanup.
func StartIdP(t testing.TB, opts testidp.Options) *testidp.IdP {
	t.Helper()
	if opts.Realm == "" {
		opts.Realm = Realm
	}
	p, err := testidp.Start(opts)
	if err != nil {
		t.Fatalf("test identity provider: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// BaseConf is the oauth_jwt configuration used against a test IdP (plain
// http on loopback), plus extra.
func BaseConf(extra map[string]string) map[string]string {
	kv := map[string]string{
		"oauth_jwt.audience":           Quote(Audience),
		"oauth_jwt.require_https":      "off",
		"oauth_jwt.role_from_identity": "on",
	}
	for k, v := range extra {
		kv[k] = v
	}
	return kv
}

// HBA is a pg_hba line for TCP oauth logins of user (a name, "all", or a
// /regex) against issuer in delegated mode, plus opts.
func HBA(user, issuer string, opts ...string) string {
	return fmt.Sprintf(`host all %s 127.0.0.1/32 oauth issuer="%s" scope="openid" delegate_ident_mapping=1 %s`,
		user, issuer, strings.Join(opts, " "))
}

// Quote makes a postgresql.conf string literal (the configuration file
// parser reads backslash escapes in quoted strings).
func Quote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
}

// Claims are the claims of a valid access token for sub, with overrides
// (a nil value removes a claim, also one of the IdP's defaults).
func Claims(sub string, over map[string]any) map[string]any {
	c := map[string]any{
		"sub":                sub,
		"aud":                Audience,
		"azp":                "psql",
		"scope":              "openid profile",
		"preferred_username": sub,
	}
	for k, v := range over {
		c[k] = v
	}
	return c
}

// Token mints a valid access token for sub with overrides.
func Token(t testing.TB, idp *testidp.IdP, sub string, over map[string]any, opts ...testidp.MintOption) string {
	t.Helper()
	tok, err := idp.Mint(Claims(sub, over), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Ctx is a context cancelled after d or at cleanup.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// PasswordConfig is a password (scram or trust) login over TCP.
func PasswordConfig(t testing.TB, c *pgtest.Cluster, user, password string) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable connect_timeout=60", c.Port, user))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = password
	return cfg
}

// EnvInt is the integer in the environment variable name, or def.
func EnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// EnvDuration is the duration in the environment variable name (Go
// syntax, "90s", "3m"), or def.
func EnvDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// WriteJSON writes v as indented JSON to the path named by the environment
// variable env, when it is set; it is how the suites hand their figures to
// scripts/report.sh.
func WriteJSON(t testing.TB, env string, v any) {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		return
	}
	if err := results.Write(path, v); err != nil {
		t.Fatal(err)
	}
	t.Logf("results written to %s", path)
}

// ---------------------------------------------------------------------------
// Crash detection

// CrashLines are what PostgreSQL logs when a backend dies abnormally and
// the postmaster restarts every session.
var CrashLines = []string{
	"terminating any other active server processes",
	"was terminated by signal",
	"server process (PID",
	"all server processes terminated; reinitializing",
	"terminated by exception",
	"exited with exit code 2",
	"PANIC:",
}

// CrashWatch notices a crash-restart of a cluster: the postmaster pid
// changed, or the log has a crash line.
type CrashWatch struct {
	c   *pgtest.Cluster
	pid int
}

// WatchCrashes records the postmaster's pid now.
func WatchCrashes(t testing.TB, c *pgtest.Cluster) *CrashWatch {
	t.Helper()
	return &CrashWatch{c: c, pid: PostmasterPID(t, c)}
}

// PID is the postmaster pid WatchCrashes recorded.
func (w *CrashWatch) PID() int { return w.pid }

// Check fails the test on a crash since WatchCrashes, and returns the
// number of crash lines found (0 when all is well).
func (w *CrashWatch) Check(t testing.TB) int {
	t.Helper()
	if pid := PostmasterPID(t, w.c); pid != w.pid {
		t.Errorf("postmaster pid changed from %d to %d: the server restarted", w.pid, pid)
	}
	n := 0
	for _, line := range strings.Split(w.c.Log(), "\n") {
		for _, bad := range CrashLines {
			if strings.Contains(line, bad) {
				n++
				if n <= 5 {
					t.Errorf("server log shows a crash: %s", line)
				}
			}
		}
	}
	return n
}

// PostmasterPID is the pid in postmaster.pid.
func PostmasterPID(t testing.TB, c *pgtest.Cluster) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Data, "postmaster.pid"))
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	return pid
}

// ---------------------------------------------------------------------------
// Processes

// ProcSample is what /proc says about one process.
type ProcSample = results.ProcSample

// MinorFaults reads a process's minor page faults from /proc/<pid>/stat
// (field 10; the command name before it may hold spaces, so count from ")").
func MinorFaults(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 8 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return strconv.Atoi(f[7])
}

// SampleProc reads /proc/<pid>/smaps_rollup and /proc/<pid>/status.
func SampleProc(pid int) (ProcSample, error) {
	var s ProcSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Private_Dirty:":
			s.PrivateDirtyKB, _ = strconv.Atoi(f[1])
		case "Rss:":
			s.RssKB, _ = strconv.Atoi(f[1])
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			s.Threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return s, nil
}

// BackendPID is the pid of conn's backend.
func BackendPID(t testing.TB, ctx context.Context, conn *pgx.Conn) int {
	t.Helper()
	var pid int
	if err := conn.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// WaitExit waits until process pid has exited and its parent (for a
// backend, the postmaster) has reaped it: its /proc entry is gone. It polls
// every 100 µs, sleeping in between so as not to take a CPU from the
// exiting process, for at most timeout.
func WaitExit(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	dir := fmt.Sprintf("/proc/%d", pid)
	for {
		_, err := os.Stat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still exists after %v", pid, timeout)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// Logins logs in n times as cfg from clients concurrent clients, each
// connecting, closing at once and connecting again while logins remain,
// then waits until every one of the n backends has exited. The time it
// returns runs from the first connect until the last backend is gone, so
// that a run pays for its own backends' exits and leaves none behind to
// slow what runs next. The first failed login ends the run with its error.
func Logins(ctx context.Context, cfg *pgx.ConnConfig, clients, n int) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		next     int
		pids     = make([]int, 0, n)
		firstErr error
		wg       sync.WaitGroup
	)
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if next >= n || firstErr != nil {
			return false
		}
		next++
		return true
	}
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for take() {
				conn, err := pgx.ConnectConfig(ctx, cfg)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
					return
				}
				pids = append(pids, int(conn.PgConn().PID()))
				mu.Unlock()
				conn.Close(ctx)
			}
		}()
	}
	wg.Wait()
	for _, pid := range pids {
		if err := WaitExit(pid, 30*time.Second); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return time.Since(start), firstErr
}

// ---------------------------------------------------------------------------
// Statistics

// Quantile is the q-quantile (0..1) of sorted (nearest rank).
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// Sorted returns a sorted copy of d.
func Sorted(d []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ---------------------------------------------------------------------------
// Server log

var reasonRE = regexp.MustCompile(`Reason: ([a-z_]+)\.`)

// Reasons counts the reason codes oauth_jwt logged in log.
func Reasons(log string) map[string]int {
	m := map[string]int{}
	for _, r := range reasonRE.FindAllStringSubmatch(log, -1) {
		m[r[1]]++
	}
	return m
}

// ReasonsString formats Reasons as "a=1 b=2" in name order.
func ReasonsString(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// LinesWith returns the log lines containing s.
func LinesWith(log, s string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Files of the server's OS user

// ServerOwned hands path to the server's OS user when the tests run as root
// (pgtest runs the server as pgtest.ServerUser then); otherwise it is
// already the server's.
func ServerOwned(t testing.TB, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	if out, err := exec.Command("chown", "-R", pgtest.ServerUser+":", path).CombinedOutput(); err != nil {
		t.Fatalf("chown %s: %v: %s", path, err, out)
	}
}

// CacheDir is the default key cache directory of c.
func CacheDir(c *pgtest.Cluster) string { return filepath.Join(c.Data, "oauth_jwt_cache") }

// Machine describes the machine for result files.
type Machine = results.Machine

// DescribeMachine fills a Machine (PostgreSQL's version from the cluster).
func DescribeMachine(ctx context.Context, c *pgtest.Cluster) Machine {
	m := Machine{Date: time.Now().UTC().Format("2006-01-02 15:04 MST")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok && m.CPU == "" {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			}
			if strings.HasPrefix(line, "processor") {
				m.Cores++
			}
		}
	}
	m.GoVersion = runtime.Version()
	if conn, err := pgx.ConnectConfig(ctx, c.AdminConfig()); err == nil {
		_ = conn.QueryRow(ctx, "select current_setting('server_version')").Scan(&m.Postgres)
		conn.Close(ctx)
	}
	return m
}
