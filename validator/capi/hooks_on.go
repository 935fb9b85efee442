//go:build ojw_testhooks

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/oauth-jwt/oauth_jwt/validator"
	"golang.org/x/sys/unix"
)

// Test builds only (go build -tags ojw_testhooks, used by `make test`):
// the requested role name triggers a fault, so the integration tests can
// prove that a panic inside Go becomes a logged internal error and that the
// shim's wait stays interruptible. Production builds never contain these.
const (
	rolePanicBegin = "ojw_test_panic_begin" // panic in the export itself
	rolePanicRun   = "ojw_test_panic"       // panic in the validation goroutine
	roleBlockRun   = "ojw_test_block"       // validation never finishes
	// roleGOMAXPROCS starts a goroutine that records the runtime's
	// GOMAXPROCS for the rest of the session (see watchGOMAXPROCS); the
	// login itself is judged as usual.
	roleGOMAXPROCS = "ojw_test_gomaxprocs"
)

// GOMAXPROCSFile is the file, in the data directory, where the
// roleGOMAXPROCS trigger writes what it saw.
const GOMAXPROCSFile = "ojw_test_gomaxprocs.txt"

func testHookBegin(req validator.Request, s validator.Settings) {
	switch req.Role {
	case rolePanicBegin:
		panic("test trigger: panic in OjwBegin")
	case roleGOMAXPROCS:
		watchOnce.Do(func() {
			first := runtime.GOMAXPROCS(0)
			go watchGOMAXPROCS(filepath.Join(s["server.data_directory"], GOMAXPROCSFile), first)
		})
	}
}

var watchOnce sync.Once

// watchGOMAXPROCS writes one line per phase of a session: what GOMAXPROCS
// was at the first call into Go, once the shim has given the runtime's
// threads their CPUs back, after a forced garbage collection, after seconds
// of work and after a few idle seconds (Go's periodic GOMAXPROCS update
// runs about once a second, from a monitor thread that sleeps while Go is idle).
// Each line also says how many CPUs the thread may run on, so a reader can
// tell whether the runtime could have seen more. The last line is "done".
func watchGOMAXPROCS(path string, first int) {
	defer func() { _ = recover() }()
	var b strings.Builder
	record := func(phase string, procs int) {
		var set unix.CPUSet
		cpus := -1
		if unix.SchedGetaffinity(0, &set) == nil {
			cpus = set.Count()
		}
		fmt.Fprintf(&b, "%s gomaxprocs=%d cpus=%d\n", phase, procs, cpus)
		tmp := path + ".tmp"
		if os.WriteFile(tmp, []byte(b.String()), 0o644) == nil {
			_ = os.Rename(tmp, path)
		}
	}
	record("first-call", first)
	time.Sleep(500 * time.Millisecond) // the shim widens the threads once OjwBegin returns
	record("widened", runtime.GOMAXPROCS(0))
	runtime.GC()
	record("after-gc", runtime.GOMAXPROCS(0))
	// The runtime's monitor thread, which makes the periodic update,
	// sleeps while every P is idle: keep one busy for a while.
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); {
		spinSink += len(fmt.Sprint(end.UnixNano()))
	}
	record("busy", runtime.GOMAXPROCS(0))
	time.Sleep(3 * time.Second)
	runtime.GC()
	time.Sleep(time.Second)
	record("later", runtime.GOMAXPROCS(0))
	b.WriteString("done\n")
	_ = os.WriteFile(path+".tmp", []byte(b.String()), 0o644)
	_ = os.Rename(path+".tmp", path)
}

var spinSink int

// testHookForceAsync sends the goroutine triggers down the asynchronous
// path even when the token could be judged from the cache.
func testHookForceAsync(req validator.Request) bool {
	return req.Role == rolePanicRun || req.Role == roleBlockRun
}

func testHookRun(req validator.Request) {
	switch req.Role {
	case rolePanicRun:
		panic("test trigger: panic in the validation goroutine")
	case roleBlockRun:
		select {}
	}
}
