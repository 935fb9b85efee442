package main

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/oauth-jwt/oauth_jwt/test/results"
)

// fixture writes a small but complete set of result files for major into
// in/major, with the types the suites write.
func fixture(t *testing.T, in, major string) {
	t.Helper()
	dir := filepath.Join(in, major)
	m := results.Machine{Date: "2026-12-06 12:00 UTC", CPU: "Test CPU", Cores: 2, GoVersion: "go1.26.8", Postgres: major + ".1"}
	cdf := func(base float64) []float64 {
		var v []float64
		for i := 1; i <= 200; i++ {
			v = append(v, base*(1+float64(i)/40))
		}
		return v
	}
	kinds := []results.Kind{
		{Name: results.KindJWT, Clients: 12, Logins: 900, PerSec: 75, P50ms: 40, P90ms: 60, P99ms: 80, MaxMs: 95, CDF: cdf(20)},
		{Name: results.KindScram, Clients: 4, Logins: 300, PerSec: 25, P50ms: 38, P90ms: 55, P99ms: 70, MaxMs: 90, CDF: cdf(18)},
		{Name: results.KindNoop, Clients: 4, Logins: 320, PerSec: 26.5, P50ms: 35, P90ms: 50, P99ms: 66, MaxMs: 88, CDF: cdf(15)},
	}
	var timeline []results.Second
	for s := 0; s < 13; s++ {
		timeline = append(timeline, results.Second{T: s, Logins: map[string]int{results.KindJWT: 70 + s, results.KindScram: 25, results.KindNoop: 26}})
	}
	soak := results.Soak{Machine: m, DurationS: 40, Sessions: 2, Controls: 1, Queries: 480, ChurnLogins: 50, Refused: 10, ToleranceKB: 64,
		SampleTimesS: []float64{0, 4, 8, 12}, MaxGrowthKB: 8, MedianGrowthKB: 4, ControlGrowthKB: []int{12},
		ThreadsStart: []int{5, 5}, ThreadsEnd: []int{5, 5}, CacheFiles: [2][]string{{"a.json"}, {"a.json"}},
		Postmaster: []results.ProcSample{{PrivateDirtyKB: 900, Threads: 1}, {PrivateDirtyKB: 904, Threads: 1}}}
	for i, base := range []int{2400, 2420, 1300} {
		bt := results.BackendTrace{PID: 100 + i, Control: i == 2}
		for j := range soak.SampleTimesS {
			bt.Samples = append(bt.Samples, results.ProcSample{PrivateDirtyKB: base + 2*j, Threads: 5})
		}
		soak.Backends = append(soak.Backends, bt)
	}
	files := map[string]any{
		results.BenchFile: results.Bench{Connections: 30, MemSamples: 5, Seed: 42, Clients: 16, ThroughputLogins: 200, ThroughputRounds: 2,
			Kinds: []results.BenchKind{
				{Name: results.KindTrust, P50ms: 2.99, P99ms: 4.38, VsNoop: 0.91, VsGoNoop: 0.52, LoginsPerS: 560, RateVsNoop: 1.2, RateVsGoNoop: 1.87,
					PrivateDirtyKB: 1208, Threads: 1},
				{Name: results.KindNoop, P50ms: 3.30, P99ms: 5.39, VsNoop: 1, VsGoNoop: 0.57, LoginsPerS: 468, RateVsNoop: 1, RateVsGoNoop: 1.56,
					PrivateDirtyKB: 1228, Threads: 1},
				{Name: results.KindGoNoop, P50ms: 5.72, P99ms: 8.9, VsNoop: 1.73, VsGoNoop: 1, LoginsPerS: 300, RateVsNoop: 0.64, RateVsGoNoop: 1,
					PrivateDirtyKB: 1936, Threads: 5},
				{Name: results.KindJWT, P50ms: 6.35, P99ms: 10.24, VsNoop: 1.92, VsGoNoop: 1.11, LoginsPerS: 250.7, RateVsNoop: 0.54, RateVsGoNoop: 0.84,
					PrivateDirtyKB: 2388, Threads: 5},
			}},
		results.LoadFile: results.Load{Machine: m, DurationS: 12, RefreshS: 5, MaxConnections: 400, Kinds: kinds, TotalPerSec: 126.5,
			IdPDiscovery: 2, IdPJWKS: 2, IdPBound: 3, PostmasterSame: true, Timeline: timeline,
			Phases: kinds, PhaseSeconds: 2, Rounds: 1, TotalSeconds: 20, IdPBoundAll: 5, PeakConnections: 20},
		results.SoakFile: soak,
		results.FaultsFile: []results.Outcome{
			{Fault: "IdP down", Cache: "cold", Token: "valid", Result: "internal error", Reason: "jwks_unavailable", Evidence: "Reason: jwks_unavailable. fetching http://127.0.0.1:4321/realms/test failed"},
			{Fault: "forged signature", Cache: "warm", Token: "forged", Result: "refused", Reason: "bad_signature"},
		},
		results.HostileFile: results.Hostile{CorpusCases: 80, CorpusNegative: 70, CorpusRefusedByPostgres: 3, CorpusReasons: map[string]int{"expired": 2},
			Fuzz: &results.Fuzz{Seconds: 3, Workers: 2, Seed: 7, Mutants: 1234, Valid: 50, ValidAccepted: 50}},
		results.LeakFile: results.Leak{LogLines: 5000, Tokens: 40, Leaks: 0, SettingsUsed: []string{"log_min_messages = debug5"}},
	}
	for name, v := range files {
		if err := results.Write(filepath.Join(dir, name), v); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGenerate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, in string)
		majors  []string
		wantErr string // the error names this, or "" for success
		want    []string
		notWant []string
		figures map[string]bool // the figures written, and whether each has data drawn
	}{
		{
			name:    "no results at all",
			setup:   func(t *testing.T, in string) {},
			wantErr: "no results of any major",
		},
		{
			name: "a result file that is not JSON",
			setup: func(t *testing.T, in string) {
				fixture(t, in, "18")
				if err := os.WriteFile(filepath.Join(in, "18", results.LoadFile), []byte("{not json"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "18/load.json",
		},
		{
			name: "a major whose files are missing: its sections say so",
			setup: func(t *testing.T, in string) {
				fixture(t, in, "18")
				if err := os.MkdirAll(filepath.Join(in, "19"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			majors: []string{"18", "19"},
			want: []string{"## PostgreSQL 19\n", "*No benchmark results (bench.json) in this run.*", "*No load results (load.json) in this run.*",
				"*No soak results (soak.json) in this run.*", "*No fault results (faults.json) in this run.*",
				"| oauth_jwt's p50 login, one at a time, ÷ the no-op validator's (benchmark) | 1.92× | – |",
				"| oauth_jwt's logins/s with concurrent clients (benchmark): ÷ the no-op validator's, ÷ the Go no-op's | 251/s with 16 clients: 0.54×, 0.84× | – |"},
			figures: map[string]bool{"latency-18.png": true, "latency-19.png": false},
		},
		{
			name:  "both majors, found in -in",
			setup: func(t *testing.T, in string) { fixture(t, in, "18"); fixture(t, in, "19") },
			want: []string{
				"on 2026-12-06 12:00 UTC: Test CPU, 2 cores, PostgreSQL 18.1, then 19.1, go1.26.8, loopback only.",
				"## The majors side by side\n",
				"| figure | PostgreSQL 18 | PostgreSQL 19 |\n",
				"| oauth_jwt's p50 login, one at a time, ÷ the no-op validator's (benchmark) | 1.92× | 1.92× |\n",
				"| oauth_jwt's login rate at saturation ÷ the no-op validator's | 283% | 283% |\n",
				"| hostile input: mutated tokens accepted | 0 of 1234 | 0 of 1234 |\n",
				"## PostgreSQL 18\n", "## PostgreSQL 19\n",
				"(latency-18.png)", "(latency-19.png)",
				"### Login cost, uncontended (PostgreSQL 19)\n",
				"| oauth_jwt's p50 login, one at a time, ÷ the Go no-op's (benchmark) | 1.11× | 1.11× |\n",
				"| oauth_jwt's logins/s with concurrent clients (benchmark): ÷ the no-op validator's, ÷ the Go no-op's | 251/s with 16 clients: 0.54×, 0.84× | 251/s with 16 clients: 0.54×, 0.84× |\n",
				"| login | p50 ms | p99 ms | p50 ÷ C no-op | p50 ÷ Go no-op | logins/s, 16 clients | ÷ C no-op | ÷ Go no-op | backend private dirty (median of 5) | threads |\n",
				"| oauth_jwt | 6.35 | 10.24 | 1.92× | 1.11× | 250.7 | 0.54× | 0.84× | 2388 kB | 5 |\n",
				"Throughput: 200 logins per kind from 16 concurrent clients, in 2 rounds of shuffled order",
				"Shuffle seed (OJW_BENCH_SEED): 42. Identity-provider requests during the timed runs: 0.",
				"| `OJW_BENCH_THROUGHPUT_LOGINS, OJW_BENCH_THROUGHPUT_ROUNDS, OJW_BENCH_CLIENTS` | 5000, 5, 16 |",
				"| oauth_jwt | 12 | 900 | 0 | 75.0 | 40.0 | 60.0 | 80.0 | 95.0 |\n",
				"| oauth_jwt backends, private dirty memory growth, start → end | median +4 kB, max +8 kB |\n",
				"| threads of the oauth_jwt backends, start → end | 5 (×2) → 5 (×2) |\n",
				"| IdP down | cold | valid | internal error | jwks_unavailable | fetching $ISSUER failed |\n",
				"- Faults: 2 rows; tokens that must be refused were accepted 0 times.\n",
				"| `TEST_MAJORS` | 18 19 |",
			},
			notWant: []string{"*No ", "latency.png"},
			figures: map[string]bool{"latency-18.png": true, "latency-19.png": true},
		},
		{
			name:    "one major: no side-by-side table",
			setup:   func(t *testing.T, in string) { fixture(t, in, "19") },
			majors:  []string{"19"},
			want:    []string{"PostgreSQL 19.1, go1.26.8", "## PostgreSQL 19\n", "(latency-19.png)"},
			notWant: []string{"side by side", "PostgreSQL 18", ", then"},
			figures: map[string]bool{"latency-19.png": true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, out := t.TempDir(), t.TempDir()
			tc.setup(t, in)
			written, err := generate(in, tc.majors, out, "scripts/report.sh")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			md, err := os.ReadFile(filepath.Join(out, "report.md"))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.want {
				if !strings.Contains(string(md), s) {
					t.Errorf("report.md lacks %q", s)
				}
			}
			for _, s := range tc.notWant {
				if strings.Contains(string(md), s) {
					t.Errorf("report.md has %q", s)
				}
			}
			checkAnchors(t, string(md))
			var figures []string
			for _, p := range written {
				if strings.HasSuffix(p, ".png") {
					figures = append(figures, filepath.Base(p))
				}
			}
			if len(figures) != len(tc.figures) {
				t.Errorf("wrote %v, want %v", figures, tc.figures)
			}
			for name, drawn := range tc.figures {
				checkPNG(t, filepath.Join(out, name), drawn)
			}
		})
	}
}

// checkAnchors: every link of the contents leads to a heading.
func checkAnchors(t *testing.T, md string) {
	t.Helper()
	ids := map[string]bool{}
	for _, h := range regexp.MustCompile(`(?m)^#+ (.*)$`).FindAllStringSubmatch(md, -1) {
		ids[anchor(h[1])] = true
	}
	links := regexp.MustCompile(`\]\(#([^)]*)\)`).FindAllStringSubmatch(md, -1)
	if len(links) < 8 {
		t.Errorf("the contents has %d links", len(links))
	}
	for _, l := range links {
		if !ids[l[1]] {
			t.Errorf("link #%s leads to no heading", l[1])
		}
	}
}

// checkPNG: a PNG of the figure's size with text (dark pixels) and, when
// drawn, the oauth_jwt colour in it (curves and bars), else none.
func checkPNG(t *testing.T, path string, drawn bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() != 1400 || b.Dy() != 980 {
		t.Errorf("%s is %v, want 1400×980", path, b.Size())
	}
	jwt, dark := count(img, colors[results.KindJWT]), count(img, black)
	if dark < 500 {
		t.Errorf("%s: %d dark pixels: no text?", path, dark)
	}
	if drawn && jwt < 500 || !drawn && jwt > 0 {
		t.Errorf("%s: %d pixels of the oauth_jwt colour, want them only if there is data (%v)", path, jwt, drawn)
	}
}

// count counts the pixels close to c.
func count(img image.Image, c color.RGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r, c.R) && near(g, c.G) && near(bl, c.B) {
				n++
			}
		}
	}
	return n
}

func near(v uint32, c uint8) bool { d := int(v>>8) - int(c); return d > -24 && d < 24 }
