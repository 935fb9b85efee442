package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Go runtime keeps the GOMAXPROCS it started with for the life of a
// session (DESIGN.md §3.7). The shim starts the runtime on one CPU and then
// gives its threads all their CPUs back; Go 1.25+ updates GOMAXPROCS
// periodically from the CPUs a thread may use, so without updatemaxprocs=0
// at link time it would rise to the CPU count (GC workers per P). The test
// build's trigger role records GOMAXPROCS at the first call into Go, after
// the widening, after a forced GC and a few seconds later, with the CPUs
// the runtime could have seen.
func TestGOMAXPROCSStaysForTheSession(t *testing.T) {
	const role = "ojw_test_gomaxprocs"
	e := newIdPEnv(t, role)
	ctx := ctxT(t, 60*time.Second)
	conn := e.mustLogin(t, ctx, role, e.token(t, role, nil))
	pid := backendPID(t, ctx, conn)

	path := filepath.Join(e.PG.Data, "ojw_test_gomaxprocs.txt")
	var got string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		got = string(b)
		if strings.HasSuffix(got, "done\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trigger did not finish its record in %s (backend %d):\n%s\n%s", path, pid, got, e.PG.LogTail(15))
		}
	}
	// The session is still alive: the runtime was observed in it.
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("session ended while the runtime was watched: %v", err)
	}
	t.Logf("backend %d:\n%s", pid, got)

	var first string
	phases := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
		if line == "done" {
			continue
		}
		var phase string
		var procs, cpus int
		if _, err := fmt.Sscanf(line, "%s gomaxprocs=%d cpus=%d", &phase, &procs, &cpus); err != nil {
			t.Fatalf("cannot parse %q: %v", line, err)
		}
		phases[phase] = true
		if first == "" {
			first = line
			if procs < 1 || procs > 2 {
				t.Errorf("GOMAXPROCS at the first call is %d, want 1 or 2 (validator/capi maxProcs)", procs)
			}
			if procs != 1 {
				t.Errorf("GOMAXPROCS at the first call is %d: the runtime did not start on one CPU", procs)
			}
			continue
		}
		if want := strings.Fields(first)[1]; "gomaxprocs="+itoa(procs) != want {
			t.Errorf("%s: GOMAXPROCS changed during the session (first call: %s)", line, first)
		}
		if phase != "first-call" && cpus < 2 {
			t.Errorf("%s: the runtime's thread may run on %d CPU(s); the test needs at least 2 to show that GOMAXPROCS does not follow them (and the shim must have widened the threads)", line, cpus)
		}
	}
	for _, p := range []string{"first-call", "widened", "after-gc", "busy", "later"} {
		if !phases[p] {
			t.Errorf("no record for phase %q", p)
		}
	}
}
