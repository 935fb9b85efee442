// Package pgtest runs throwaway PostgreSQL 18 or 19 clusters for the integration
// tests: initdb into a temporary directory, a random loopback port, the
// module under test found through dynamic_library_path, pg_hba.conf and
// oauth_jwt.* settings rewritten per case, and the server log readable from
// a mark so each case can assert what was logged. Clusters are stopped in
// t.Cleanup, also when the test fails.
//
// Environment (set by `make test`, once per major): OJW_PG_CONFIG, the
// pg_config of a PostgreSQL 18 or 19 build; OJW_BUILD_DIR, the build
// directory of that major (build/<major>) holding oauth_jwt.so (the
// installable build), test/oauth_jwt.so and test/oauth_noop.so.
package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env locates the server binaries and the built modules.
type Env struct {
	PGConfig  string // pg_config of PostgreSQL 18 or 19
	BinDir    string // its bindir
	Major     int    // its major version (18, 19)
	BuildDir  string // the build directory of that major: build/<major>
	ModuleDir string // BuildDir/test: oauth_jwt.so (with test triggers), oauth_jwt_badmagic.so, oauth_noop.so, oauth_gonoop.so
}

var (
	envOnce sync.Once
	env     Env
	envErr  error
)

// LoadEnv returns the environment or fails the test saying how to get it.
func LoadEnv(t testing.TB) Env {
	t.Helper()
	envOnce.Do(func() {
		pgc := os.Getenv("OJW_PG_CONFIG")
		build := os.Getenv("OJW_BUILD_DIR")
		if pgc == "" || build == "" {
			envErr = fmt.Errorf("OJW_PG_CONFIG and OJW_BUILD_DIR are not set: run these tests with `make test` (it provisions PostgreSQL 18 and 19 via scripts/pg.sh and builds the test modules per major)")
			return
		}
		out, err := exec.Command(pgc, "--bindir").Output()
		if err != nil {
			envErr = fmt.Errorf("%s --bindir: %v (run scripts/pg.sh 18 or scripts/pg.sh 19 to provision PostgreSQL)", pgc, err)
			return
		}
		major, err := serverMajor(pgc)
		if err != nil {
			envErr = err
			return
		}
		env = Env{PGConfig: pgc, BinDir: strings.TrimSpace(string(out)), Major: major, BuildDir: build,
			ModuleDir: filepath.Join(build, "test")}
		for _, f := range []string{"oauth_jwt.so", "oauth_jwt_badmagic.so", "oauth_noop.so", "oauth_gonoop.so", FetchHelper} {
			if _, err := os.Stat(filepath.Join(env.ModuleDir, f)); err != nil {
				envErr = fmt.Errorf("%s is missing: run `make test-modules PG_MAJOR=%d` (or `make test`)", filepath.Join(env.ModuleDir, f), major)
				return
			}
		}
		if filepath.Base(build) != fmt.Sprint(major) {
			envErr = fmt.Errorf("OJW_BUILD_DIR=%s does not belong to PostgreSQL %d (%s): use build/%d", build, major, pgc, major)
			return
		}
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	return env
}

// serverMajor reads the major version from pg_config --version
// ("PostgreSQL 18.6", "PostgreSQL 19rc1 (Debian 19~rc1-1)").
func serverMajor(pgc string) (int, error) {
	out, err := exec.Command(pgc, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %v", pgc, err)
	}
	var major int
	if _, err := fmt.Sscanf(strings.TrimPrefix(strings.TrimSpace(string(out)), "PostgreSQL "), "%d", &major); err != nil || major < 18 {
		return 0, fmt.Errorf("%s is %q: oauth_jwt needs PostgreSQL 18 or 19", pgc, strings.TrimSpace(string(out)))
	}
	return major, nil
}

// ResetEnv forgets what LoadEnv read, so that the next LoadEnv reads
// OJW_PG_CONFIG and OJW_BUILD_DIR again. For a TestMain that runs its
// tests once per major (test/e2e: one Keycloak for both); never call it
// while tests run.
func ResetEnv() {
	envOnce = sync.Once{}
	env, envErr = Env{}, nil
}

// Bin returns the path of a PostgreSQL program.
func (e Env) Bin(name string) string { return filepath.Join(e.BinDir, name) }

// Cluster is one running PostgreSQL server (18 or 19).
type Cluster struct {
	Env
	Dir     string // scratch directory (data, socket, log)
	Data    string
	Sock    string // unix socket directory
	Port    int
	LogPath string

	t       testing.TB
	hba     []string
	conf    map[string]string
	running bool
}

// FetchHelper is the key fetch helper the module starts from its own
// directory; clusters get it beside their copy of oauth_jwt.so.
const FetchHelper = "oauth_jwt_fetch"

// Options shape a new cluster.
type Options struct {
	// Conf lines appended to postgresql.conf before the first start.
	Conf []string
	// NoStart leaves the cluster initialised but stopped.
	NoStart bool
	// Production loads the installable oauth_jwt.so (no test triggers)
	// instead of the test build; benchmarks use it.
	Production bool
	// Libraries are more validator libraries for the cluster's library
	// directory: file name there → the file to copy (builds to compare).
	Libraries map[string]string
}

// New creates a cluster (initdb) and starts it unless opts.NoStart.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	e := LoadEnv(t)
	dir, err := os.MkdirTemp("", "ojw-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Env: e, Dir: dir, Data: filepath.Join(dir, "data"), Sock: dir,
		Port: FreePort(t), LogPath: filepath.Join(dir, "server.log"), t: t, conf: map[string]string{}}
	// The server loads the modules from a private copy, so it never needs
	// to read the build tree (which may sit where its OS user cannot go).
	libDir := filepath.Join(dir, "lib")
	if err := os.MkdirAll(libDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"oauth_jwt.so", "oauth_jwt_badmagic.so", "oauth_noop.so", "oauth_gonoop.so", FetchHelper} {
		from := filepath.Join(e.ModuleDir, f)
		if opts.Production && (f == "oauth_jwt.so" || f == FetchHelper) {
			from = filepath.Join(e.BuildDir, f)
		}
		copyFile(t, from, filepath.Join(libDir, f))
	}
	for f, from := range opts.Libraries {
		copyFile(t, from, filepath.Join(libDir, f))
	}
	chownToServerUser(t, dir)
	t.Cleanup(func() {
		c.stopQuietly()
		if t.Failed() {
			t.Logf("server log kept at %s", c.LogPath)
			return
		}
		os.RemoveAll(dir)
	})
	c.run("initdb", "-D", c.Data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	base := []string{
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("port = %d", c.Port),
		fmt.Sprintf("unix_socket_directories = '%s'", c.Sock),
		fmt.Sprintf("dynamic_library_path = '%s:$libdir'", libDir),
		"oauth_validator_libraries = 'oauth_jwt'",
		"log_line_prefix = '%m [%p] %q%u@%d '",
		"log_connections = 'authentication'",
		"fsync = off",
		"max_connections = 300",
		"shared_buffers = '32MB'",
		"include_if_exists = 'oauth_jwt_test.conf'",
	}
	appendFile(t, filepath.Join(c.Data, "postgresql.conf"), strings.Join(append(base, opts.Conf...), "\n")+"\n")
	c.SetHBA() // trust over the socket only, until a case writes its lines
	if !opts.NoStart {
		c.Start()
	}
	return c
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start() {
	c.t.Helper()
	if err := c.TryStart(); err != nil {
		c.t.Fatalf("pg_ctl start: %v\n%s", err, c.LogTail(40))
	}
}

// TryStart starts the server and returns pg_ctl's error, if any.
func (c *Cluster) TryStart() error {
	out, err := c.Cmd("pg_ctl", "-D", c.Data, "-l", c.LogPath, "-w", "-t", "60", "start").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	c.running = true
	return nil
}

// Stop stops the server with the given shutdown mode (smart, fast, immediate).
func (c *Cluster) Stop(mode string) error {
	out, err := c.Cmd("pg_ctl", "-D", c.Data, "-m", mode, "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %v: %s", mode, err, out)
	}
	c.running = false
	return nil
}

func (c *Cluster) stopQuietly() {
	if _, err := os.Stat(filepath.Join(c.Data, "postmaster.pid")); err == nil {
		_ = c.Cmd("pg_ctl", "-D", c.Data, "-m", "immediate", "-w", "-t", "30", "stop").Run()
	}
	c.running = false
}

// SetHBA replaces pg_hba.conf with a local trust line for the test's own
// administrative connections followed by lines, then reloads if running.
func (c *Cluster) SetHBA(lines ...string) {
	c.t.Helper()
	c.hba = lines
	all := append([]string{"local all postgres trust"}, lines...)
	writeFile(c.t, filepath.Join(c.Data, "pg_hba.conf"), strings.Join(all, "\n")+"\n")
	chownToServerUser(c.t, filepath.Join(c.Data, "pg_hba.conf"))
	if c.running {
		c.Reload()
	}
}

// SetConf replaces the test settings file (oauth_jwt_test.conf) with kv and
// reloads if running. Values are written as given (quote strings yourself).
func (c *Cluster) SetConf(kv map[string]string) {
	c.t.Helper()
	c.conf = kv
	var b strings.Builder
	for k, v := range kv {
		fmt.Fprintf(&b, "%s = %s\n", k, v)
	}
	writeFile(c.t, filepath.Join(c.Data, "oauth_jwt_test.conf"), b.String())
	chownToServerUser(c.t, filepath.Join(c.Data, "oauth_jwt_test.conf"))
	if c.running {
		c.Reload()
	}
}

// Reload signals the postmaster and waits until new backends see the new
// configuration (pg_conf_load_time advanced).
func (c *Cluster) Reload() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := c.Admin(ctx)
	defer conn.Close(ctx)
	var before time.Time
	if err := conn.QueryRow(ctx, "select pg_conf_load_time()").Scan(&before); err != nil {
		c.t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "select pg_reload_conf()"); err != nil {
		c.t.Fatal(err)
	}
	for ctx.Err() == nil {
		fresh := c.Admin(ctx)
		var after time.Time
		err := fresh.QueryRow(ctx, "select pg_conf_load_time()").Scan(&after)
		fresh.Close(ctx)
		if err == nil && after.After(before) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("configuration reload was not seen within 30 s\n%s", c.LogTail(20))
}

// AdminConfig is a superuser connection over the unix socket (trust).
func (c *Cluster) AdminConfig() *pgx.ConnConfig {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", c.Sock, c.Port))
	if err != nil {
		c.t.Fatal(err)
	}
	return cfg
}

// Admin opens a superuser connection over the unix socket.
func (c *Cluster) Admin(ctx context.Context) *pgx.Conn {
	c.t.Helper()
	conn, err := pgx.ConnectConfig(ctx, c.AdminConfig())
	if err != nil {
		c.t.Fatalf("admin connection: %v\n%s", err, c.LogTail(20))
	}
	return conn
}

// Exec runs SQL statements as the superuser.
func (c *Cluster) Exec(sql ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := c.Admin(ctx)
	defer conn.Close(ctx)
	for _, s := range sql {
		if _, err := conn.Exec(ctx, s); err != nil {
			c.t.Fatalf("%s: %v", s, err)
		}
	}
}

// OAuthConfig is a TCP connection config for user that presents token
// through pgx's OAuthTokenProvider (OAUTHBEARER, no discovery, no device flow).
func (c *Cluster) OAuthConfig(user, token string) *pgx.ConnConfig {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable connect_timeout=30", c.Port, user))
	if err != nil {
		c.t.Fatal(err)
	}
	cfg.OAuthTokenProvider = func(context.Context) (string, error) { return token, nil }
	cfg.DialFunc = DialFinishingSASL // finish a refused exchange as libpq does (sasl.go)
	return cfg
}

// ConnectOAuth connects as user with token.
func (c *Cluster) ConnectOAuth(ctx context.Context, user, token string) (*pgx.Conn, error) {
	return pgx.ConnectConfig(ctx, c.OAuthConfig(user, token))
}

// LogMark returns the current size of the server log, to read from later.
func (c *Cluster) LogMark() int64 {
	st, err := os.Stat(c.LogPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// LogSince returns the server log written after mark.
func (c *Cluster) LogSince(mark int64) string {
	b, err := os.ReadFile(c.LogPath)
	if err != nil || int64(len(b)) < mark {
		return ""
	}
	return string(b[mark:])
}

// Log returns the whole server log.
func (c *Cluster) Log() string { return c.LogSince(0) }

// WaitLog waits until the log after mark contains want, and returns that log.
// The server writes a backend's lines before it exits, so this is quick;
// the bound only guards against a test hanging.
func (c *Cluster) WaitLog(mark int64, want string) string {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := c.LogSince(mark)
		if strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("server log does not contain %q; log since mark:\n%s", want, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LogTail returns the last n lines of the server log.
func (c *Cluster) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(c.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Psql runs the server's psql with extra environment and arguments and
// returns stdout, stderr and the error.
func (c *Cluster) Psql(ctx context.Context, env []string, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, c.Bin("psql"), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (c *Cluster) run(prog string, args ...string) {
	c.t.Helper()
	out, err := c.Cmd(prog, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
}

// ServerUser is the OS user the server runs as when the tests run as root
// (PostgreSQL refuses to run as root). It is created when missing.
const ServerUser = "ojwtest"

var userOnce sync.Once

// Cmd returns a command running a PostgreSQL program as the server's OS
// user: the current user, or ServerUser when running as root.
func (c *Cluster) Cmd(prog string, args ...string) *exec.Cmd {
	if os.Geteuid() != 0 {
		return exec.Command(c.Bin(prog), args...)
	}
	return exec.Command("runuser", append([]string{"-u", ServerUser, "--", c.Bin(prog)}, args...)...)
}

// chownToServerUser hands path (recursively) to ServerUser when root.
func chownToServerUser(t testing.TB, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	userOnce.Do(func() {
		if exec.Command("id", "-u", ServerUser).Run() != nil {
			out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ServerUser).CombinedOutput()
			if err != nil {
				t.Fatalf("useradd %s: %v: %s", ServerUser, err, out)
			}
		}
	})
	if out, err := exec.Command("chown", "-R", ServerUser+":", path).CombinedOutput(); err != nil {
		t.Fatalf("chown %s: %v: %s", path, err, out)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Write and fsync: page-cache pages not yet written back would count
	// as Private_Dirty in every backend that maps the library, and distort
	// memory measurements.
	f, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}
