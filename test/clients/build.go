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
	cmd := exec.Command(cc, "-Wall", "-Wextra", "-Werror", "-I"+inc,
		filepath.Join(repoRoot(t), TokenHookSource),
		"-L"+lib, "-Wl,-rpath,"+lib, "-lpq", "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compiling %s: %v\n%s", TokenHookSource, err, b)
	}
	return out
}
