// Package e2e runs oauth_jwt end to end: a real Keycloak 26 (one for the whole package,
// started in TestMain through test/keycloak), throwaway PostgreSQL 18 or 19 clusters with the
// module (test/pgtest), real psql device-flow logins approved by a browserless approver,
// and pgx logins with machine and user tokens. Every refusal is checked against the reason
// code the server logs, and no server log may ever contain a token segment.
//
// Nothing here skips: without PostgreSQL or the cached Keycloak the package fails and
// says which command provides it. Run it with `make test` (once per major), or:
//
//	OJW_PG_CONFIG=$(scripts/pg.sh 19) OJW_BUILD_DIR=$PWD/build/19 go test -count=1 -v ./test/e2e/
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
)

var (
	kc        *keycloak.Server // the package's Keycloak
	kcStartup time.Duration    // how long keycloak.Start took
	kcMu      sync.Mutex       // serialises stopping and resuming kc
	kcDown    bool             // stopped by a test (TestIdentityProviderDown); resumed on demand
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	suiteStart := time.Now()
	runs, err := pgRuns()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	for _, r := range runs {
		os.Setenv("OJW_PG_CONFIG", r.pgConfig)
		os.Setenv("OJW_BUILD_DIR", r.buildDir)
		if msg := checkPostgres(); msg != "" {
			fmt.Fprintln(os.Stderr, "FAIL: "+msg)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if _, err := keycloak.Home(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: Keycloak is not in the cache: run `scripts/keycloak.sh fetch` (or `make test`)\n%v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "oauth_jwt-e2e-keycloak-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	t0 := time.Now()
	kc, err = keycloak.Start(ctx, dir)
	kcStartup = time.Since(t0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: starting Keycloak (after %s): %v\n(run directory kept: %s)\n", kcStartup.Round(100*time.Millisecond), err, dir)
		return 1
	}
	fmt.Printf("e2e: Keycloak started in %s at %s (load average %s)\n", kcStartup.Round(100*time.Millisecond), kc.BaseURL(), loadAvg())

	code := 0
	for i, r := range runs {
		if len(runs) > 1 {
			os.Setenv("OJW_PG_CONFIG", r.pgConfig)
			os.Setenv("OJW_BUILD_DIR", r.buildDir)
			pgtest.ResetEnv()
			fmt.Printf("e2e: run %d of %d: %s (Keycloak shared)\n", i+1, len(runs), r.pgConfig)
		}
		if c := m.Run(); c != 0 {
			code = c
		}
	}

	if err := kc.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: stopping Keycloak:", err)
		code = 1
	}
	if code == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "e2e: Keycloak log kept in %s\n", kc.LogPath())
	}
	fmt.Printf("e2e: suite took %s, of which Keycloak start-up %s (load average %s)\n",
		time.Since(suiteStart).Round(100*time.Millisecond), kcStartup.Round(100*time.Millisecond), loadAvg())
	return code
}

// pgRun is one PostgreSQL major to run the suite against.
type pgRun struct{ pgConfig, buildDir string }

// pgRuns returns the majors to run against: OJW_PG_CONFIGS and
// OJW_BUILD_DIRS (space-separated, in pairs) when set — `make test` runs the
// suite once per major that way, with one Keycloak for all of them, since
// starting Keycloak is the slowest part of the suite — else OJW_PG_CONFIG and
// OJW_BUILD_DIR.
func pgRuns() ([]pgRun, error) {
	pgcs, dirs := strings.Fields(os.Getenv("OJW_PG_CONFIGS")), strings.Fields(os.Getenv("OJW_BUILD_DIRS"))
	if len(pgcs) == 0 && len(dirs) == 0 {
		return []pgRun{{os.Getenv("OJW_PG_CONFIG"), os.Getenv("OJW_BUILD_DIR")}}, nil
	}
	if len(pgcs) != len(dirs) {
		return nil, fmt.Errorf("OJW_PG_CONFIGS names %d servers but OJW_BUILD_DIRS %d build directories", len(pgcs), len(dirs))
	}
	var out []pgRun
	for i := range pgcs {
		out = append(out, pgRun{pgcs[i], dirs[i]})
	}
	return out, nil
}

// checkPostgres says what is missing for the PostgreSQL side, and how to get it ("" if
// nothing). pgtest.LoadEnv checks the same inside tests; this fails before Keycloak starts.
func checkPostgres() string {
	pgc, build := os.Getenv("OJW_PG_CONFIG"), os.Getenv("OJW_BUILD_DIR")
	if pgc == "" || build == "" {
		return "OJW_PG_CONFIG and OJW_BUILD_DIR are not set: run `make test`, or " +
			"`make test-modules PG_MAJOR=19 && OJW_PG_CONFIG=$(scripts/pg.sh 19) OJW_BUILD_DIR=$PWD/build/19 go test -count=1 -v ./test/e2e/`"
	}
	out, err := exec.Command(pgc, "--bindir").Output()
	if err != nil {
		return fmt.Sprintf("%s --bindir: %v: provision PostgreSQL with `scripts/pg.sh 18` or `scripts/pg.sh 19`", pgc, err)
	}
	bin := strings.TrimSpace(string(out))
	for _, p := range []string{"postgres", "initdb", "pg_ctl", "psql"} {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			return fmt.Sprintf("%s is missing: provision PostgreSQL with `scripts/pg.sh 18` or `scripts/pg.sh 19`", filepath.Join(bin, p))
		}
	}
	if out, err := exec.Command(pgc, "--libdir").Output(); err == nil {
		// libpq 18 loads libpq-oauth-18.so; libpq 19 (stable ABI) libpq-oauth.so.
		dir := strings.TrimSpace(string(out))
		lib18, lib := filepath.Join(dir, "libpq-oauth-18.so"), filepath.Join(dir, "libpq-oauth.so")
		_, err18 := os.Stat(lib18)
		if _, err := os.Stat(lib); err != nil && err18 != nil {
			return fmt.Sprintf("%s (or %s) is missing (psql cannot run the device flow): PostgreSQL must be built --with-libcurl, as `scripts/pg.sh` does", lib, lib18)
		}
	}
	if _, err := os.Stat(filepath.Join(build, "test", "oauth_jwt.so")); err != nil {
		return fmt.Sprintf("%s is missing: run `make test-modules`", filepath.Join(build, "test", "oauth_jwt.so"))
	}
	return ""
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// needKeycloak makes sure the package's Keycloak is up: a test that stopped it leaves it
// down, and the next test that needs it resumes it (same port, same database: realms,
// users and keys survive).
func needKeycloak(t *testing.T) {
	t.Helper()
	kcMu.Lock()
	defer kcMu.Unlock()
	if !kcDown {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := kc.Resume(ctx); err != nil {
		t.Fatalf("resuming Keycloak: %v\n%s", err, kc.LogTail(30))
	}
	kcDown = false
	t.Logf("Keycloak resumed in %s", time.Since(t0).Round(100*time.Millisecond))
}

// stopKeycloak stops the package's Keycloak until the next needKeycloak.
func stopKeycloak(t *testing.T) {
	t.Helper()
	kcMu.Lock()
	defer kcMu.Unlock()
	if err := kc.Stop(); err != nil {
		t.Fatalf("stopping Keycloak: %v", err)
	}
	kcDown = true
}

// The start-up time is part of the test output (`make test` shows t.Logf lines).
func TestKeycloakStartup(t *testing.T) {
	needKeycloak(t)
	t.Logf("Keycloak started in %s (TestMain; load average now %s)", kcStartup.Round(100*time.Millisecond), loadAvg())
	doc, err := keycloak.FetchDiscovery(ctxT(t, time.Minute), issuer(), "")
	if err != nil {
		t.Fatal(err)
	}
	if doc["issuer"] != issuer() {
		t.Fatalf("discovery issuer %v, want %s", doc["issuer"], issuer())
	}
}
