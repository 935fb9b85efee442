package integration

import (
	"debug/elf"
	"fmt"
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

// The constructors run in this order (DESIGN.md §3.2): the shim's
// priority-101 one (cshim/oauth_jwt_start.c) blocks signals and arranges
// for the runtime's threads to start on one CPU, then the Go runtime's
// starts its first thread, which inherits the blocked mask, then the one in
// cshim/oauth_jwt_late.c (linked after the Go archive) gives the loading
// thread its mask back, before the server checks the magic block.
// Read from the .init_array of both builds.
func TestConstructorOrder(t *testing.T) {
	e := pgtest.LoadEnv(t)
	for _, lib := range []string{
		filepath.Join(e.BuildDir, "oauth_jwt.so"),
		filepath.Join(e.ModuleDir, "oauth_jwt.so"),
		filepath.Join(e.ModuleDir, "oauth_jwt_badmagic.so"),
	} {
		order := initArray(t, lib)
		pos := func(prefix string) int {
			for i, name := range order {
				if strings.HasPrefix(name, prefix) {
					return i
				}
			}
			return -1
		}
		block, rt0, late := pos("ojw_block_before_go"), pos("_rt0_"), pos("ojw_after_go_runtime_start")
		if block < 0 || rt0 < 0 || late < 0 || !(block < rt0 && rt0 < late) {
			t.Errorf("%s: constructors run in the order %v; want ojw_block_before_go, then the Go runtime's _rt0_*_lib, then ojw_after_go_runtime_start", lib, order)
		} else {
			t.Logf("%s: %v", filepath.Base(lib), order)
		}
	}
}

// initArray names the functions of lib's .init_array in the order the
// dynamic loader calls them (relative relocations hold their addresses).
func initArray(t *testing.T, lib string) []string {
	t.Helper()
	f, err := elf.Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ia := f.Section(".init_array")
	rela := f.Section(".rela.dyn")
	if ia == nil || rela == nil {
		t.Fatalf("%s has no .init_array or .rela.dyn", lib)
	}
	syms, err := f.Symbols()
	if err != nil {
		t.Fatalf("%s: %v (the test needs an unstripped build)", lib, err)
	}
	byAddr := map[uint64]string{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
			byAddr[s.Value] = s.Name
		}
	}
	data, err := rela.Data()
	if err != nil {
		t.Fatal(err)
	}
	target := map[uint64]uint64{} // slot address -> function address
	for i := 0; i+24 <= len(data); i += 24 {
		off := f.ByteOrder.Uint64(data[i:])
		typ := uint32(f.ByteOrder.Uint64(data[i+8:]))
		if typ == uint32(elf.R_X86_64_RELATIVE) && f.Machine == elf.EM_X86_64 ||
			typ == uint32(elf.R_AARCH64_RELATIVE) && f.Machine == elf.EM_AARCH64 {
			target[off] = f.ByteOrder.Uint64(data[i+16:])
		}
	}
	var order []string
	for slot := ia.Addr; slot < ia.Addr+ia.Size; slot += 8 {
		name := byAddr[target[slot]]
		if name == "" {
			name = fmt.Sprintf("%#x", target[slot])
		}
		order = append(order, name)
	}
	return order
}
