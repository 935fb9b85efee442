package results

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"kinds": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	want := Load{DurationS: 61, Kinds: []Kind{{Name: KindJWT, Clients: 100, CDF: []float64{1, 2}}},
		Timeline: []Second{{T: 0, Logins: map[string]int{KindJWT: 3}, P50ms: map[string]float64{KindJWT: 4.5}}}}
	good := filepath.Join(dir, "sub", LoadFile)
	if err := Write(good, want); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		path    string
		wantErr func(error) bool
	}{
		{"a missing file is fs.ErrNotExist", filepath.Join(dir, "none.json"), func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
		{"a file of another shape names its path", bad, func(err error) bool { return err != nil && strings.Contains(err.Error(), bad) }},
		{"what Write wrote reads back", good, func(err error) bool { return err == nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Load
			err := Read(tc.path, &got)
			if !tc.wantErr(err) {
				t.Fatalf("Read: %v", err)
			}
			if err == nil && !reflect.DeepEqual(got, want) {
				t.Errorf("read %+v, want %+v", got, want)
			}
		})
	}
}

// The benchmark's table is the one the report has always shown.
func TestBenchMarkdown(t *testing.T) {
	b := Bench{Connections: 300, MemSamples: 5, IdPRequests: 0, Kinds: []BenchKind{
		{Name: KindTrust, P50ms: 2.99, P99ms: 4.38, VsNoop: 0.906, PrivateDirtyKB: 1208, Threads: 1},
		{Name: KindJWT, P50ms: 6.35, P99ms: 10.244, VsNoop: 1.92, PrivateDirtyKB: 2388, Threads: 5},
	}}
	want := "| login | p50 ms | p99 ms | p50 vs no-op | backend private dirty (median of 5) | threads |\n|---|---|---|---|---|---|\n" +
		"| trust | 2.99 | 4.38 | 0.91× | 1208 kB | 1 |\n" +
		"| oauth_jwt | 6.35 | 10.24 | 1.92× | 2388 kB | 5 |\n" +
		"\n300 logins per kind, interleaved; identity-provider requests during the timed run: 0.\n"
	if got := b.Markdown(); got != want {
		t.Errorf("Markdown:\n%s\nwant:\n%s", got, want)
	}
}
