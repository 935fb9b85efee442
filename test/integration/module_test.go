package integration

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
)

// The library exports exactly PostgreSQL's three entry points; the Go
// runtime and everything else stay local (DESIGN.md §3.6).
func TestExportedSymbols(t *testing.T) {
	e := pgtest.LoadEnv(t)
	for _, lib := range []string{
		filepath.Join(e.BuildDir, "oauth_jwt.so"),
		filepath.Join(e.ModuleDir, "oauth_jwt.so"),
	} {
		out, err := exec.Command("nm", "-D", "--defined-only", lib).Output()
		if err != nil {
			t.Fatalf("nm -D --defined-only %s: %v (is binutils installed?)", lib, err)
		}
		var syms []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) == 3 {
				syms = append(syms, f[2])
			}
		}
		sort.Strings(syms)
		want := []string{"Pg_magic_func", "_PG_init", "_PG_oauth_validator_module_init"}
		if strings.Join(syms, " ") != strings.Join(want, " ") {
			t.Errorf("%s exports %v, want exactly %v", lib, syms, want)
		}
	}
}

// -z nodelete: dlclose must never unload a library whose Go runtime started.
func TestLinkedNoDelete(t *testing.T) {
	e := pgtest.LoadEnv(t)
	lib := filepath.Join(e.BuildDir, "oauth_jwt.so")
	out, err := exec.Command("readelf", "-d", lib).Output()
	if err != nil {
		t.Fatalf("readelf -d %s: %v", lib, err)
	}
	if !strings.Contains(string(out), "NODELETE") {
		t.Errorf("%s is not linked with -z nodelete:\n%s", lib, out)
	}
}

// The shim is glue: no JSON, HTTP, JWT or claim logic in C. Mentions are
// allowed only in comments and setting names/descriptions.
func TestShimHasNoTokenLogic(t *testing.T) {
	files, _ := filepath.Glob("../../cshim/*.c")
	if len(files) == 0 {
		t.Fatal("no cshim/*.c found")
	}
	for _, f := range files {
		out, _ := exec.Command("grep", "-nEi", "json|http|jwt|claim", f).Output()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line == "" {
				continue
			}
			code := line[strings.Index(line, ":")+1:]
			// The module's own name and prefix are not token logic.
			code = strings.NewReplacer("oauth_jwt", "", "OAuthJwt", "").Replace(code)
			if !regexp.MustCompile(`(?i)json|http|jwt|claim`).MatchString(code) {
				continue
			}
			trimmed := strings.TrimSpace(code)
			isComment := strings.HasPrefix(trimmed, "*") || strings.HasPrefix(trimmed, "/*") || strings.HasPrefix(trimmed, "//")
			isSetting := strings.HasPrefix(trimmed, "{\"")
			if !isComment && !isSetting {
				t.Errorf("%s: token logic in the shim? %s", f, line)
			}
		}
	}
}
