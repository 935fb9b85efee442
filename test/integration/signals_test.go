package integration

import (
	"context"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
)

type pgxConn = pgx.Conn

// Signal numbers on Linux (x86-64 and arm64 agree for these).
var mustBlockOnGoThreads = map[string]int{
	"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGUSR1": 10, "SIGUSR2": 12,
	"SIGALRM": 14, "SIGTERM": 15, "SIGURG": 23,
}

// threadMasks returns tid → SigBlk (hex) for every thread of pid.
func threadMasks(t *testing.T, pid int) map[int]string {
	t.Helper()
	return threadField(t, pid, "SigBlk")
}

func backendPID(t *testing.T, ctx context.Context, conn *pgx.Conn) int {
	t.Helper()
	var pid int
	if err := conn.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// After a login through Go, the backend's main thread has exactly the mask
// of a backend that never loaded the module, and every Go thread blocks
// PostgreSQL's signals, SIGURG included (DESIGN.md §3.2).
func TestSignalMasks(t *testing.T) {
	e := newIdPEnv(t, "alice")
	ctx := ctxT(t, 60*time.Second)

	trust := e.PG.Admin(ctx) // unix-socket trust: never loads oauth_jwt
	defer trust.Close(ctx)
	trustMasks := threadMasks(t, backendPID(t, ctx, trust))
	trustPID := backendPID(t, ctx, trust)
	if len(trustMasks) != 1 {
		t.Fatalf("trust backend has %d threads, want 1", len(trustMasks))
	}

	conn := e.mustLogin(t, ctx, "alice", e.token(t, "alice", nil))
	// Run a query so the backend has been through the whole login and back
	// to its main loop.
	pid := backendPID(t, ctx, conn)
	masks := threadMasks(t, pid)
	t.Logf("trust backend %d main SigBlk %s; oauth backend %d has %d threads: %v", trustPID, trustMasks[trustPID], pid, len(masks), masks)
	if len(masks) < 2 {
		t.Fatalf("oauth backend has %d thread(s): the Go runtime did not start, so this test proves nothing", len(masks))
	}
	if masks[pid] != trustMasks[trustPID] {
		t.Errorf("main thread SigBlk %s differs from a trust backend's %s", masks[pid], trustMasks[trustPID])
	}
	for tid, hex := range masks {
		if tid == pid {
			continue
		}
		set, ok := new(big.Int).SetString(hex, 16)
		if !ok {
			t.Fatalf("cannot parse SigBlk %q", hex)
		}
		for name, sig := range mustBlockOnGoThreads {
			if set.Bit(sig-1) == 0 {
				t.Errorf("Go thread %d does not block %s (SigBlk %s)", tid, name, hex)
			}
		}
	}
}

// threadField returns tid → the value of field (e.g. "Cpus_allowed_list")
// in /proc/<pid>/task/<tid>/status for every thread of pid.
func threadField(t *testing.T, pid int, field string) map[int]string {
	t.Helper()
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("cannot list threads of %d: %v", pid, err)
	}
	m := map[int]string{}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "status"))
		if err != nil {
			t.Fatal(err)
		}
		var tid int
		fmt.Sscanf(filepath.Base(d), "%d", &tid)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				m[tid] = strings.TrimSpace(v)
			}
		}
	}
	return m
}

// The shim starts each of the Go runtime's threads on one CPU (so that the
// runtime sizes itself for one CPU) and must give every thread its CPUs
// back: after a login, each thread of the backend, the
// runtime's included, may run where a backend that never loaded the module
// may. The first login of the test has a cold cache, so it also goes
// through the goroutine and the fetch helper.
func TestCPUAffinityRestored(t *testing.T) {
	e := newIdPEnv(t, "alice")
	ctx := ctxT(t, 60*time.Second)
	trust := e.PG.Admin(ctx)
	defer trust.Close(ctx)
	trustPID := backendPID(t, ctx, trust)
	want := threadField(t, trustPID, "Cpus_allowed_list")[trustPID]
	if want == "" || !strings.ContainsAny(want, ",-") {
		t.Fatalf("a trust backend may run on CPUs %q: this test needs at least 2 CPUs to show anything", want)
	}
	conn := e.mustLogin(t, ctx, "alice", e.token(t, "alice", nil))
	defer conn.Close(ctx)
	pid := backendPID(t, ctx, conn)
	got := threadField(t, pid, "Cpus_allowed_list")
	if len(got) < 2 {
		t.Fatalf("oauth backend has %d thread(s): the Go runtime did not start, so this test proves nothing", len(got))
	}
	for tid, cpus := range got {
		if cpus != want {
			t.Errorf("thread %d of backend %d may run on CPUs %s, a trust backend on %s", tid, pid, cpus, want)
		}
	}
	if !t.Failed() {
		t.Logf("backend %d: %d threads, all on CPUs %s", pid, len(got), want)
	}
}

// Lock-wait hand-offs between OAuth-authenticated backends: the waiter is
// woken through its latch (SIGURG read from a signalfd). A Go thread that
// accepted SIGURG would swallow the wake-up, and the waiter would then only
// notice at deadlock_timeout. No hand-off may take that long.
func TestLatchWakeups(t *testing.T) {
	const handoffs = 200
	e := newIdPEnv(t, "alice", "bob")
	e.PG.Exec("create table latch_probe(i int)", "grant all on latch_probe to alice, bob")
	ctx := ctxT(t, 5*time.Minute)
	holder := e.mustLogin(t, ctx, "alice", e.token(t, "alice", nil))
	waiter := e.mustLogin(t, ctx, "bob", e.token(t, "bob", nil))
	waiterPID := backendPID(t, ctx, waiter)
	admin := e.PG.Admin(ctx)
	defer admin.Close(ctx)
	var deadlock time.Duration
	var dt string
	if err := admin.QueryRow(ctx, "select setting from pg_settings where name = 'deadlock_timeout'").Scan(&dt); err != nil {
		t.Fatal(err)
	}
	deadlock, _ = time.ParseDuration(dt + "ms")

	var lat []time.Duration
	for i := 0; i < handoffs; i++ {
		if _, err := holder.Exec(ctx, "begin; lock table latch_probe in access exclusive mode"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var acquired time.Time
		var werr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, werr = waiter.Exec(ctx, "begin; lock table latch_probe in access exclusive mode")
			acquired = time.Now()
		}()
		// Commit only once the waiter is really waiting on the lock.
		for {
			var waiting bool
			if err := admin.QueryRow(ctx, "select coalesce(wait_event_type = 'Lock', false) from pg_stat_activity where pid = $1", waiterPID).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if waiting {
				break
			}
			time.Sleep(time.Millisecond)
		}
		committed := time.Now()
		if _, err := holder.Exec(ctx, "commit"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if werr != nil {
			t.Fatal(werr)
		}
		if _, err := waiter.Exec(ctx, "commit"); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, acquired.Sub(committed))
	}
	lat = loadkit.Sorted(lat)
	p50, p99, max := loadkit.Quantile(lat, 0.5), loadkit.Quantile(lat, 0.99), lat[len(lat)-1]
	t.Logf("%d lock hand-offs between OAuth backends: p50 %v, p99 %v, max %v (deadlock_timeout %v)",
		handoffs, p50, p99, max, deadlock)
	lost := 0
	for _, d := range lat {
		if d >= deadlock {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d wake-ups were lost (waited ≥ deadlock_timeout %v)", lost, handoffs, deadlock)
	}
}
