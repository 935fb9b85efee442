package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

// The Go runtime's start in a backend reads none of the /proc files that
// the shim can spare it (docs/benchmarks.md, "What a login costs"): not
// /proc/self/maps, which glibc reads to answer the runtime's question about
// the main thread's stack bounds (cshim/oauth_jwt_start.c answers it), and
// not /proc/self/task, which the shim once listed to give the runtime's
// threads their CPUs back (it now knows their ids from their start). The
// postmaster is traced with strace -f while one oauth_jwt login (cold key
// cache: goroutine and fetch helper included) and one trust login run; the
// trust backend's own file opens show that the trace saw the backends.
func TestRuntimeStartReadsNoProcFiles(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatalf("this test traces the server with strace: apt-get install strace (make test installs it as root)")
	}
	e := newIdPEnv(t, "alice")
	ctx := ctxT(t, 60*time.Second)
	pm, err := os.ReadFile(filepath.Join(e.PG.Data, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pmPID := strings.SplitN(string(pm), "\n", 2)[0]
	out := filepath.Join(t.TempDir(), "strace.out")
	cmd := exec.Command(strace, "-f", "-qq", "-e", "trace=openat,open,clone,clone3,fork,vfork", "-o", out, "-p", pmPID)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	tracer := regexp.MustCompile(`(?m)^TracerPid:\s+(\d+)`)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile("/proc/" + pmPID + "/status")
		if m := tracer.FindSubmatch(b); m != nil && string(m[1]) != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("strace did not attach to the postmaster %s: %s", pmPID, stderr.String())
		}
	}

	conn := e.mustLogin(t, ctx, "alice", e.token(t, "alice", nil))
	pid := backendPID(t, ctx, conn)
	conn.Close(ctx)
	trust := e.PG.Admin(ctx)
	trustPID := backendPID(t, ctx, trust)
	trust.Close(ctx)

	_ = cmd.Process.Signal(os.Interrupt) // strace detaches and exits
	_ = cmd.Wait()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// Each line starts with the thread id; a clone's result is the id of a
	// thread (or process) that the caller's backend owns from then on.
	opens := map[int][]string{}
	owner := map[int]int{pid: pid, trustPID: trustPID}
	cloned := regexp.MustCompile(`^(\d+) (?:clone3?|v?fork)\(.*= (\d+)$`)
	for _, line := range strings.Split(string(b), "\n") {
		var p int
		if _, err := fmt.Sscanf(line, "%d ", &p); err != nil {
			continue
		}
		if m := cloned.FindStringSubmatch(line); m != nil {
			child, _ := strconv.Atoi(m[2])
			if o, ok := owner[p]; ok {
				owner[child] = o
			}
			continue
		}
		if o, ok := owner[p]; ok && strings.Contains(line, "open") {
			opens[o] = append(opens[o], line)
		}
	}
	if len(opens[trustPID]) == 0 {
		t.Fatalf("the trace shows no file opened by the trust backend %d: it did not follow the backends, so it proves nothing\n%s", trustPID, b)
	}
	if len(opens[pid]) == 0 {
		t.Fatalf("the trace shows no file opened by the oauth backend %d\n%s", pid, b)
	}
	for _, line := range opens[pid] {
		for _, f := range []string{`"/proc/self/maps"`, `"/proc/self/task"`, fmt.Sprintf(`"/proc/%d/maps"`, pid), fmt.Sprintf(`"/proc/%d/task"`, pid)} {
			if strings.Contains(line, f) {
				t.Errorf("backend %d opened %s during its login: %s", pid, f, line)
			}
		}
	}
	t.Logf("oauth backend %d opened %d files, the trust backend %d opened %d:\n%s", pid, len(opens[pid]), trustPID, len(opens[trustPID]), strings.Join(opens[pid], "\n"))
}
