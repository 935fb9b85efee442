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

// The benchmark's table: latency, throughput and both ratios per kind, and
// how the run was made.
func TestBenchMarkdown(t *testing.T) {
	b := Bench{Connections: 300, MemSamples: 5, IdPRequests: 0, Seed: 42, Clients: 16, ThroughputLogins: 5000, ThroughputRounds: 5,
		Kinds: []BenchKind{
			{Name: KindTrust, P50ms: 2.99, P99ms: 4.38, VsNoop: 0.906, VsGoNoop: 0.55, LoginsPerS: 557.84, RateVsNoop: 1.19, RateVsGoNoop: 1.857,
				PrivateDirtyKB: 1208, Threads: 1},
			{Name: KindJWT, P50ms: 6.35, P99ms: 10.244, VsNoop: 1.92, VsGoNoop: 1.2149, LoginsPerS: 250.7, RateVsNoop: 0.5355, RateVsGoNoop: 0.8347,
				PrivateDirtyKB: 2388, Threads: 5},
		}}
	want := "| login | p50 ms | p99 ms | p50 ÷ C no-op | p50 ÷ Go no-op | logins/s, 16 clients | ÷ C no-op | ÷ Go no-op | backend private dirty (median of 5) | threads |\n" +
		"|---|---|---|---|---|---|---|---|---|---|\n" +
		"| trust | 2.99 | 4.38 | 0.91× | 0.55× | 557.8 | 1.19× | 1.86× | 1208 kB | 1 |\n" +
		"| oauth_jwt | 6.35 | 10.24 | 1.92× | 1.21× | 250.7 | 0.54× | 0.83× | 2388 kB | 5 |\n" +
		"\nLatency: 300 logins per kind one at a time, each round of the kinds in a shuffled order, each login once the previous backend had exited. " +
		"Throughput: 5000 logins per kind from 16 concurrent clients, in 5 rounds of shuffled order, each run until its last backend had exited. " +
		"Shuffle seed (OJW_BENCH_SEED): 42. Identity-provider requests during the timed runs: 0.\n"
	if got := b.Markdown(); got != want {
		t.Errorf("Markdown:\n%s\nwant:\n%s", got, want)
	}
}

func TestBenchSetRatios(t *testing.T) {
	type ratios struct{ vsNoop, vsGoNoop, rateVsNoop, rateVsGoNoop float64 }
	for _, tc := range []struct {
		name  string
		kinds []BenchKind
		want  map[string]ratios
	}{
		{
			name:  "without the no-ops every ratio stays zero",
			kinds: []BenchKind{{Name: KindJWT, P50ms: 6, LoginsPerS: 250}},
			want:  map[string]ratios{KindJWT: {}},
		},
		{
			name: "a no-op measured as zero gives zero, not infinity",
			kinds: []BenchKind{{Name: KindNoop, P50ms: 0, LoginsPerS: 0}, {Name: KindGoNoop, P50ms: 5, LoginsPerS: 300},
				{Name: KindJWT, P50ms: 6, LoginsPerS: 240}},
			want: map[string]ratios{KindNoop: {0, 0, 0, 0}, KindGoNoop: {0, 1, 0, 1}, KindJWT: {0, 1.2, 0, 0.8}},
		},
		{
			name: "every kind against both no-ops, whatever the order",
			kinds: []BenchKind{{Name: KindJWT, P50ms: 6, LoginsPerS: 240}, {Name: KindGoNoop, P50ms: 5, LoginsPerS: 300},
				{Name: KindTrust, P50ms: 2, LoginsPerS: 600}, {Name: KindNoop, P50ms: 3, LoginsPerS: 480}},
			want: map[string]ratios{KindJWT: {2, 1.2, 0.5, 0.8}, KindGoNoop: {5.0 / 3, 1, 0.625, 1},
				KindTrust: {2.0 / 3, 0.4, 1.25, 2}, KindNoop: {1, 0.6, 1, 1.6}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := Bench{Kinds: tc.kinds}
			b.SetRatios()
			if len(b.Kinds) != len(tc.want) {
				t.Fatalf("%d kinds after SetRatios, want %d", len(b.Kinds), len(tc.want))
			}
			near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
			for _, k := range b.Kinds {
				w := tc.want[k.Name]
				if !near(k.VsNoop, w.vsNoop) || !near(k.VsGoNoop, w.vsGoNoop) || !near(k.RateVsNoop, w.rateVsNoop) || !near(k.RateVsGoNoop, w.rateVsGoNoop) {
					t.Errorf("%s: p50 ratios %v, %v, rate ratios %v, %v; want %+v", k.Name, k.VsNoop, k.VsGoNoop, k.RateVsNoop, k.RateVsGoNoop, w)
				}
			}
		})
	}
}
