// Package faults puts oauth_jwt under fire through a real PostgreSQL 18
// server (issue 6): an identity provider that is down, hangs, answers 500,
// garbage or a huge body, serves a discovery document naming another
// issuer, or rotates its keys in the middle of a connection storm, and
// comes back; a key cache directory that is deleted, made unwritable,
// filled with corrupt files, or made writable by others; clocks that
// disagree. Each case asserts what the client sees, that nothing is
// accepted that should not be, and what the server log says.
//
// With OJW_FAULTS_OUT set, the outcome of every case is written there as
// JSON (scripts/report.sh turns it into the fault table of
// docs/report.md).
//
//	OJW_PG_CONFIG=... OJW_BUILD_DIR=$PWD/build/<major> go test -count=1 -v ./test/faults/
package faults

import (
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/oauth-jwt/oauth_jwt/test/results"
)

// Outcome is one row of the fault table (OJW_FAULTS_OUT).
type Outcome = results.Outcome

var (
	outMu    sync.Mutex
	outcomes []Outcome
)

func record(o Outcome) {
	outMu.Lock()
	defer outMu.Unlock()
	o.Order = len(outcomes)
	outcomes = append(outcomes, o)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if path := os.Getenv("OJW_FAULTS_OUT"); path != "" {
		sort.SliceStable(outcomes, func(i, j int) bool { return outcomes[i].Order < outcomes[j].Order })
		if err := results.Write(path, outcomes); err != nil {
			os.Stderr.WriteString("OJW_FAULTS_OUT: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
