// Package keycloak runs a real Keycloak 26 for tests (through scripts/keycloak.sh, no
// Docker) and talks to it: tokens by client credentials, password and device grants, a
// browserless approver for the device flow, and admin REST helpers (key rotation, users,
// realms).
//
// The realms come from realm-postgres.json and realm-other.json in this directory; see
// FINDINGS.md for what was observed on a running Keycloak 26.7.3.
package keycloak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Names used by the realm files.
const (
	Realm         = "postgres"    // the main realm
	OtherRealm    = "other"       // a second realm, for "token from another issuer" tests
	Audience      = "postgres-db" // added to access tokens by the audience mappers
	AdminUser     = "admin"       // bootstrap admin of the master realm
	AdminPassword = "admin"

	DeviceClient  = "psql"              // public, device grant, audience + groups mappers
	ServiceClient = "pg-service"        // confidential, client_credentials
	ServiceSecret = "pg-service-secret" // its secret
	// IntrospectClient is the database server as a confidential client; it
	// only authenticates to the introspection endpoint. Keycloak 26 answers
	// an introspection request only from a client in the token's aud
	// ("Client ... is not in the token audience", active false), so it is
	// named after the audience the mappers add.
	IntrospectClient   = Audience
	IntrospectSecret   = "postgres-db-introspect-secret" // its secret
	NoAudienceClient   = "no-audience"                   // public, device + password grants, no audience mapper
	ShortLivedClient   = "short-lived"                   // public, device + password grants, 5 s access tokens
	ShortLivedLifespan = 5 * time.Second
)

// Users of realm postgres (realm other has only alice, same password).
var Passwords = map[string]string{
	"alice": "alice-password", // group dba, role pg_admin
	"bob":   "bob-password",   // group analysts, role pg_reader
	"carol": "carol-password", // no group, no role
}

// Server is a Keycloak started by Start. Its methods are safe for concurrent use.
type Server struct {
	Port     int    // HTTP port on 127.0.0.1
	MgmtPort int    // management interface (health) port on 127.0.0.1
	Dir      string // run directory: keycloak.log, keycloak.pid, keycloak-home/

	script string
	opts   StartOptions
	mu     sync.Mutex
	live   bool
}

// StartOptions tunes StartWithOptions. The zero value is what Start uses.
type StartOptions struct {
	// Realms are the realm files to import (default: realm-postgres.json and
	// realm-other.json from this directory). The first one's realm is waited for.
	Realms []string
	// Port to listen on (0: a free one; the management interface uses Port+1).
	Port int
	// KeepData keeps the H2 database of an earlier run in the same Dir (realms, users and
	// signing keys survive; realm files whose realm exists are not imported again).
	KeepData bool
	// Timeout for start-up in seconds (0: the script's default, 240).
	TimeoutSeconds int
}

// RepoRoot returns the repository root (the directory holding go.mod above this file).
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("keycloak: cannot find the source directory")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("keycloak: no go.mod above %s", filepath.Dir(file))
		}
		dir = parent
	}
}

// Script returns the path of scripts/keycloak.sh.
func Script() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	s := filepath.Join(root, "scripts", "keycloak.sh")
	if _, err := os.Stat(s); err != nil {
		return "", fmt.Errorf("keycloak: %w", err)
	}
	return s, nil
}

// RealmFile returns the path of a realm file in this directory (e.g. "realm-postgres.json").
func RealmFile(name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "test", "keycloak", name), nil
}

// runScript runs scripts/keycloak.sh and returns its stdout (trimmed). The error carries
// the script's stderr.
func runScript(ctx context.Context, args ...string) (string, error) {
	script, err := Script()
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("keycloak.sh %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Home returns the cached Keycloak distribution. It never downloads: when the cache is
// empty the error says to run scripts/keycloak.sh fetch.
func Home(ctx context.Context) (string, error) {
	return runScript(ctx, "path")
}

// Fetch downloads, unpacks and builds Keycloak into the cache if needed (scripts/keycloak.sh
// fetch) and returns its home directory. A no-op taking milliseconds once done.
func Fetch(ctx context.Context) (string, error) {
	return runScript(ctx, "fetch")
}

// Start fetches Keycloak if needed and starts it on a free loopback port with the realm
// files of this directory, its run directory being dir. Call Stop when done.
func Start(ctx context.Context, dir string) (*Server, error) {
	return StartWithOptions(ctx, dir, StartOptions{})
}

// StartWithOptions is Start with options.
func StartWithOptions(ctx context.Context, dir string, opts StartOptions) (*Server, error) {
	if _, err := Fetch(ctx); err != nil {
		return nil, err
	}
	script, err := Script()
	if err != nil {
		return nil, err
	}
	if len(opts.Realms) == 0 {
		for _, n := range []string{"realm-postgres.json", "realm-other.json"} {
			f, err := RealmFile(n)
			if err != nil {
				return nil, err
			}
			opts.Realms = append(opts.Realms, f)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: abs, script: script, opts: opts}
	port := opts.Port
	if port == 0 {
		if port, err = freePortPair(); err != nil {
			return nil, err
		}
	}
	if err := s.start(ctx, port, opts.KeepData); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, port int, keep bool) error {
	args := []string{"start", "--port", strconv.Itoa(port), "--dir", s.Dir,
		"--watch-pid", strconv.Itoa(os.Getpid())}
	for _, r := range s.opts.Realms {
		args = append(args, "--realm", r)
	}
	if keep {
		args = append(args, "--keep-data")
	}
	if s.opts.TimeoutSeconds > 0 {
		args = append(args, "--timeout", strconv.Itoa(s.opts.TimeoutSeconds))
	}
	out, err := runScript(ctx, args...)
	if err != nil {
		// The script stops what it started on its own failures, but not when ctx killed it.
		_, _ = runScript(context.Background(), "stop", "--dir", s.Dir)
		return err
	}
	s.mu.Lock()
	s.Port, s.MgmtPort, s.live = port, port+1, true
	s.mu.Unlock()
	if want := s.Issuer(realmOf(s.opts.Realms[0])); out != want && realmOf(s.opts.Realms[0]) != "" {
		return fmt.Errorf("keycloak.sh start printed issuer %q, want %q", out, want)
	}
	return nil
}

// realmOf guesses a realm name from a realm file name "realm-NAME.json" ("" if not).
func realmOf(file string) string {
	b := filepath.Base(file)
	if strings.HasPrefix(b, "realm-") && strings.HasSuffix(b, ".json") {
		return strings.TrimSuffix(strings.TrimPrefix(b, "realm-"), ".json")
	}
	return ""
}

// freePortPair finds a free loopback port p such that p+1 is free too (management port).
func freePortPair() (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1)))
		l.Close()
		if err != nil || p+1 > 65535 {
			continue
		}
		l2.Close()
		return p, nil
	}
	return 0, errors.New("keycloak: no free pair of loopback ports")
}

// Stop stops Keycloak and waits until its ports are closed. Safe to call more than once.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.live {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := runScript(ctx, "stop", "--dir", s.Dir); err != nil {
		return err
	}
	s.live = false
	return nil
}

// Restart stops Keycloak and starts it again on the same ports with the same database
// (realms, users, sessions in the database and signing keys survive). For "identity
// provider down, then back" tests: between Stop and Restart the issuer does not answer.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Resume(ctx)
}

// Resume starts a stopped Server again on the same ports with the same database.
func (s *Server) Resume(ctx context.Context) error {
	s.mu.Lock()
	port, live := s.Port, s.live
	s.mu.Unlock()
	if live {
		return errors.New("keycloak: already running")
	}
	return s.start(ctx, port, true)
}

// BaseURL is http://127.0.0.1:PORT.
func (s *Server) BaseURL() string { return "http://127.0.0.1:" + strconv.Itoa(s.Port) }

// ManagementURL is the management interface (GET /health/ready, /health/live).
func (s *Server) ManagementURL() string { return "http://127.0.0.1:" + strconv.Itoa(s.MgmtPort) }

// Issuer returns the pinned issuer of a realm: http://127.0.0.1:PORT/realms/REALM (no
// trailing slash). It is the exact iss of the realm's tokens.
func (s *Server) Issuer(realm string) string { return s.BaseURL() + "/realms/" + realm }

// LogPath is the Keycloak log file.
func (s *Server) LogPath() string { return filepath.Join(s.Dir, "keycloak.log") }

// LogTail returns the last n lines of the Keycloak log (for test failure messages).
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.LogPath())
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
