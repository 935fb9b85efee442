package loadkit

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// WaitExit returns only once the process is gone and reaped: a process
// that runs, or has exited but is not yet reaped by its parent (a zombie,
// as a backend is until the postmaster collects it), still counts.
func TestWaitExit(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatalf("sleep: %v", err)
	}
	pid := cmd.Process.Pid
	reaped := false
	t.Cleanup(func() {
		if !reaped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for _, tc := range []struct {
		name    string
		before  func(t *testing.T)
		wantErr string // "" for success
	}{
		{"a running process is waited for until the timeout", func(t *testing.T) {}, "still exists"},
		{"a killed process its parent has not reaped is still there", func(t *testing.T) {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}, "still exists"},
		{"once reaped it is gone", func(t *testing.T) {
			cmd.Wait() // the error is the kill's signal
			reaped = true
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.before(t)
			err := WaitExit(pid, 50*time.Millisecond)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("WaitExit: %v, want %q", err, tc.wantErr)
			}
		})
	}
}
