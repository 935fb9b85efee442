package keycache

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment of a helper process (see TestHelperProcess).
const (
	helperEnvDir    = "KEYCACHE_HELPER_DIR"
	helperEnvIssuer = "KEYCACHE_HELPER_ISSUER"
)

// TestHelperProcess is not a test: TestCrossProcessSingleFlight runs the
// test binary as a child with this test selected and helperEnvDir set. The
// child says "ready", waits for a line on stdin (so that all children start
// together), asks a fresh Cache for the issuer's keys and prints the result.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnvDir)
	if dir == "" {
		return
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Println("error: no start signal:", err)
		os.Exit(1)
	}
	client, err := NewHTTPClient(20*time.Second, "", "")
	if err == nil {
		var c *Cache
		if c, err = New(Config{Dir: dir, HTTPClient: client}); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			var k Keys
			k, err = c.Keys(ctx, Query{Issuer: os.Getenv(helperEnvIssuer)})
			cancel()
			if err == nil {
				fmt.Printf("ok kids=%s fetched=%v stale=%v\n", strings.Join(kidsOf(k.Set), ","), k.Fetched, k.Stale)
				os.Exit(0)
			}
		}
	}
	fmt.Println("error:", err)
	os.Exit(1)
}

// TestCrossProcessSingleFlight: 100 processes start together on one cold
// cache directory; the identity provider sees one discovery request and one
// JWKS request, and every process gets the keys.
func TestCrossProcessSingleFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 100 processes")
	}
	const n = 100
	idp := newTestIDP(t, false)
	// Slow answers keep the first fetch in flight while the others arrive.
	idp.setDiscovery(endpoint{delay: 100 * time.Millisecond})
	idp.setJWKS(endpoint{delay: 100 * time.Millisecond})
	dir := filepath.Join(t.TempDir(), "keys")

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	children := make([]child, 0, n)
	defer func() {
		for _, c := range children {
			c.stdin.Close()
			if c.cmd.ProcessState == nil {
				_ = c.cmd.Process.Kill()
				_ = c.cmd.Wait()
			}
		}
	}()
	for i := range n {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnvDir+"="+dir, helperEnvIssuer+"="+idp.issuer, "GOMAXPROCS=1")
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting child %d: %v", i, err)
		}
		children = append(children, child{cmd, stdin, bufio.NewReader(stdout)})
	}
	for i, c := range children {
		line, err := c.out.ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("child %d: %q, %v; want ready", i, line, err)
		}
	}
	// Every child is up and waiting: start them all at once.
	for _, c := range children {
		if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
	}

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		fetched int
	)
	for i, c := range children {
		wg.Go(func() {
			rest, _ := io.ReadAll(c.out)
			err := c.cmd.Wait()
			out := strings.TrimSpace(string(rest))
			if err != nil || !strings.HasPrefix(out, "ok kids=k1 ") {
				t.Errorf("child %d: %v: %q", i, err, out)
				return
			}
			if strings.Contains(out, "fetched=true") {
				mu.Lock()
				fetched++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	checkHits(t, idp, 1, 1)
	// One child fetched both documents, or one each.
	if fetched < 1 || fetched > 2 {
		t.Errorf("%d children report a fetch; want 1 or 2", fetched)
	}
	t.Logf("%d children, %d of them fetched", n, fetched)
}
