// Package clients proves docs/clients.md: the three ways a client gets a
// token to PostgreSQL through oauth_jwt, each run for real against a
// throwaway PostgreSQL 18 cluster (test/pgtest) and the in-repository test
// identity provider (test/testidp):
//
//   - psql's device flow (TestPsqlDeviceFlow), including the failed first
//     connection that the server logs;
//   - a libpq application with PQsetAuthDataHook, the C program in
//     examples/libpq_token_hook, compiled here against the PostgreSQL 18
//     build's libpq (TestLibpqTokenHook);
//   - a Go service with pgx's OAuthTokenProvider and a client-credentials
//     token, the code of examples/pgxtoken (TestPgxClientCredentials).
//
// test/e2e runs the last two against Keycloak as well (TestClientExamples).
// Run with `make test`, or:
//
//	make test-modules && OJW_PG_CONFIG=$(scripts/pg18.sh) OJW_BUILD_DIR=$PWD/build go test -count=1 -v ./test/clients/
package clients

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
)

// TokenHookSource is the C example's path relative to the repository root.
const TokenHookSource = "examples/libpq_token_hook/libpq_token_hook.c"

// repoRoot is the repository root, found from this file's location.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository: runtime.Caller failed")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// BuildTokenHook compiles examples/libpq_token_hook with the C compiler ($CC,
// else cc) against the libpq of the PostgreSQL 18 build named by
// OJW_PG_CONFIG, as its header comment says a user would, and returns the
// program's path. It fails the test, saying how to get what is missing,
// when the build has no libpq with the OAuth hook.
func BuildTokenHook(t testing.TB) string {
	t.Helper()
	env := pgtest.LoadEnv(t)
	pgConfig := func(arg string) string {
		out, err := exec.Command(env.PGConfig, arg).Output()
		if err != nil {
			t.Fatalf("%s %s: %v (build PostgreSQL 18 with scripts/pg18.sh)", env.PGConfig, arg, err)
		}
		return strings.TrimSpace(string(out))
	}
	inc, lib := pgConfig("--includedir"), pgConfig("--libdir")
	hdr, err := os.ReadFile(filepath.Join(inc, "libpq-fe.h"))
	if err != nil {
		t.Fatalf("libpq-fe.h not found in %s: %v (build PostgreSQL 18 with scripts/pg18.sh)", inc, err)
	}
	if !strings.Contains(string(hdr), "PQAUTHDATA_OAUTH_BEARER_TOKEN") {
		t.Fatalf("%s declares no PQAUTHDATA_OAUTH_BEARER_TOKEN: OJW_PG_CONFIG must name PostgreSQL 18 or later (scripts/pg18.sh builds one)", filepath.Join(inc, "libpq-fe.h"))
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Fatalf("no C compiler (%s): install gcc (apt-get install gcc) or set CC", cc)
	}
	out := filepath.Join(t.TempDir(), "libpq_token_hook")
	args := []string{"-Wall", "-Wextra", "-Werror", "-I" + inc,
		filepath.Join(repoRoot(t), TokenHookSource),
		"-L" + lib, "-Wl,-rpath," + lib, "-lpq", "-o", out}
	args = append(args, privateLoaderFlags(t, filepath.Join(pgConfig("--bindir"), "psql"))...)
	cmd := exec.Command(cc, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compiling %s: %v\n%s", TokenHookSource, err, b)
	}
	return out
}

// privateLoaderFlags links the example the way the server's own psql is
// linked when that psql runs on a C library of its own: scripts/pg.sh
// unpacks Debian's PostgreSQL 19 binaries with the newer glibc they need
// into its cache and points them at it (interpreter and RUNPATH). A program
// linked against that libpq must use the same loader and libraries; the
// system's older libc cannot resolve the symbols libpq needs at link time,
// which the cache's loader provides at run time. For a psql on the system's
// loader (PostgreSQL 18 built from source) this adds nothing.
func privateLoaderFlags(t testing.TB, psql string) []string {
	t.Helper()
	f, err := elf.Open(psql)
	if err != nil {
		t.Fatalf("reading %s: %v", psql, err)
	}
	defer f.Close()
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				t.Fatalf("reading the interpreter of %s: %v", psql, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	runpath, _ := f.DynString(elf.DT_RUNPATH)
	if interp == "" || strings.HasPrefix(interp, "/lib") || strings.HasPrefix(interp, "/usr/lib/") {
		return nil // the system's loader
	}
	if len(runpath) == 0 {
		t.Fatalf("%s uses its own loader %s but has no RUNPATH: re-provision it with scripts/pg.sh", psql, interp)
	}
	flags := []string{"-Wl,--dynamic-linker=" + interp, "-Wl,--allow-shlib-undefined"}
	for _, dir := range strings.Split(runpath[0], ":") {
		flags = append(flags, "-Wl,-rpath,"+dir)
	}
	return flags
}
