// Package results declares, once, the figures that the report suites write
// and scripts/plot reads (scripts/report.sh, docs/report.md): the tests
// fill these types and write them with Write, scripts/plot reads them with
// Read. It depends on the standard library only, so that scripts/plot
// does not pull in the test harness.
//
// The files, one set per PostgreSQL major (scripts/report.sh names them by
// the environment variable in parentheses):
//
//	bench.json    Bench    BenchmarkConnectionLatency, test/integration (OJW_BENCH_OUT)
//	load.json     Load     TestConnectionChurnLoad, test/load (OJW_LOAD_OUT)
//	soak.json     Soak     TestSoak, test/load (OJW_SOAK_OUT)
//	faults.json   []Outcome  test/faults (OJW_FAULTS_OUT)
//	hostile.json  Hostile  test/hostile (OJW_HOSTILE_OUT)
//	leak.json     Leak     test/zz_confidentiality (OJW_LEAK_OUT)
package results

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The file names scripts/report.sh gives the results of one major.
const (
	BenchFile   = "bench.json"
	LoadFile    = "load.json"
	SoakFile    = "soak.json"
	FaultsFile  = "faults.json"
	HostileFile = "hostile.json"
	LeakFile    = "leak.json"
)

// Write writes v as indented JSON to path, creating its directory.
func Write(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Read reads the JSON file path into v. A missing file is reported as
// such (os.ErrNotExist), so that the report can leave its section out.
func Read(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Machine describes the machine and server of a run.
type Machine struct {
	Date      string `json:"date"`
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go"`
	Postgres  string `json:"postgres"` // server_version
}

// ProcSample is what /proc says about one process.
type ProcSample struct {
	PrivateDirtyKB int `json:"private_dirty_kb"` // smaps_rollup Private_Dirty
	RssKB          int `json:"rss_kb"`           // smaps_rollup Rss
	Threads        int `json:"threads"`          // status Threads
}

// The login kinds by name, as the suites call them (and the plot colours them).
const (
	KindTrust  = "trust"
	KindScram  = "scram-sha-256"
	KindNoop   = "oauth no-op (C)"
	KindGoNoop = "oauth no-op (Go runtime)"
	KindJWT    = "oauth_jwt"
)

// Bench is what BenchmarkConnectionLatency measured: latency one login at
// a time, each round of the kinds in a shuffled order and each login after
// the previous backend exited, and throughput with Clients concurrent
// clients of one kind, ThroughputLogins per kind in ThroughputRounds
// rounds of shuffled order.
type Bench struct {
	Connections      int         `json:"connections_per_kind"`
	MemSamples       int         `json:"memory_samples"`
	IdPRequests      int         `json:"idp_requests"`
	Seed             uint64      `json:"seed"` // of the shuffles (OJW_BENCH_SEED)
	Clients          int         `json:"throughput_clients"`
	ThroughputLogins int         `json:"throughput_logins_per_kind"`
	ThroughputRounds int         `json:"throughput_rounds"`
	Kinds            []BenchKind `json:"kinds"`
}

// BenchKind is one kind of login in the benchmark.
type BenchKind struct {
	Name           string  `json:"name"`
	P50ms          float64 `json:"p50_ms"`
	P99ms          float64 `json:"p99_ms"`
	VsNoop         float64 `json:"p50_vs_noop"`   // p50 ÷ the C no-op validator's p50
	VsGoNoop       float64 `json:"p50_vs_gonoop"` // p50 ÷ the Go no-op validator's p50
	LoginsPerS     float64 `json:"logins_per_s"`  // with Bench.Clients concurrent clients
	RateVsNoop     float64 `json:"logins_per_s_vs_noop"`
	RateVsGoNoop   float64 `json:"logins_per_s_vs_gonoop"`
	PrivateDirtyKB int     `json:"private_dirty_kb"`
	Threads        int     `json:"threads"`
}

// SetRatios fills every kind's ratios to the C no-op (KindNoop) and the Go
// no-op (KindGoNoop) from the p50s and login rates; a ratio to a kind the
// benchmark lacks, or measured as zero, stays zero.
func (b *Bench) SetRatios() {
	var noop, gonoop BenchKind
	for _, k := range b.Kinds {
		switch k.Name {
		case KindNoop:
			noop = k
		case KindGoNoop:
			gonoop = k
		}
	}
	ratio := func(v, base float64) float64 {
		if base == 0 {
			return 0
		}
		return v / base
	}
	for i := range b.Kinds {
		k := &b.Kinds[i]
		k.VsNoop, k.VsGoNoop = ratio(k.P50ms, noop.P50ms), ratio(k.P50ms, gonoop.P50ms)
		k.RateVsNoop, k.RateVsGoNoop = ratio(k.LoginsPerS, noop.LoginsPerS), ratio(k.LoginsPerS, gonoop.LoginsPerS)
	}
}

// Markdown is the benchmark's table, as the benchmark logs it and the
// report shows it.
func (b Bench) Markdown() string {
	var s strings.Builder
	fmt.Fprintf(&s, "| login | p50 ms | p99 ms | p50 ÷ C no-op | p50 ÷ Go no-op | logins/s, %d clients | ÷ C no-op | ÷ Go no-op | backend private dirty (median of %d) | threads |\n", b.Clients, b.MemSamples)
	s.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, k := range b.Kinds {
		fmt.Fprintf(&s, "| %s | %.2f | %.2f | %.2f× | %.2f× | %.1f | %.2f× | %.2f× | %d kB | %d |\n", k.Name, k.P50ms, k.P99ms, k.VsNoop, k.VsGoNoop,
			k.LoginsPerS, k.RateVsNoop, k.RateVsGoNoop, k.PrivateDirtyKB, k.Threads)
	}
	fmt.Fprintf(&s, "\nLatency: %d logins per kind one at a time, each round of the kinds in a shuffled order, each login once the previous backend had exited. ", b.Connections)
	fmt.Fprintf(&s, "Throughput: %d logins per kind from %d concurrent clients, in %d rounds of shuffled order, each run until its last backend had exited. ",
		b.ThroughputLogins, b.Clients, b.ThroughputRounds)
	fmt.Fprintf(&s, "Shuffle seed (OJW_BENCH_SEED): %d. Identity-provider requests during the timed runs: %d.\n", b.Seed, b.IdPRequests)
	return s.String()
}

// Load is what TestConnectionChurnLoad measured.
type Load struct {
	Machine         Machine  `json:"machine"`
	DurationS       float64  `json:"duration_s"`
	RefreshS        float64  `json:"cache_refresh_interval_s"`
	MaxConnections  int      `json:"max_connections"`
	Kinds           []Kind   `json:"kinds"`
	TotalPerSec     float64  `json:"total_connections_per_s"`
	IdPDiscovery    int      `json:"idp_discovery_requests"`
	IdPJWKS         int      `json:"idp_jwks_requests"`
	IdPBound        int      `json:"idp_bound_per_document"`
	Crashes         int      `json:"crash_lines"`
	PostmasterSame  bool     `json:"postmaster_pid_unchanged"`
	Rejections      int      `json:"oauth_jwt_rejections"`
	Timeline        []Second `json:"timeline"`
	Phases          []Kind   `json:"phases,omitempty"`
	PhaseSeconds    float64  `json:"phase_s,omitempty"`
	Rounds          int      `json:"rounds,omitempty"`
	TotalSeconds    float64  `json:"total_s"`
	IdPDiscoveryAll int      `json:"idp_discovery_requests_total"`
	IdPJWKSAll      int      `json:"idp_jwks_requests_total"`
	IdPBoundAll     int      `json:"idp_bound_total"`
	PeakConnections int      `json:"peak_backends"`
}

// Kind is one kind of login under load.
type Kind struct {
	Name       string    `json:"name"`
	Clients    int       `json:"clients"`
	Logins     int       `json:"logins"`
	Failures   int       `json:"failures"`
	PerSec     float64   `json:"connections_per_s"`
	P50ms      float64   `json:"p50_ms"`
	P90ms      float64   `json:"p90_ms"`
	P99ms      float64   `json:"p99_ms"`
	MaxMs      float64   `json:"max_ms"`
	CDF        []float64 `json:"cdf_ms"` // latency at quantiles 0.5%, 1%, ..., 100% (200 points)
	FirstError string    `json:"first_error,omitempty"`
}

// Second is one second of the load test's mixed run.
type Second struct {
	T      int                `json:"t"`
	Logins map[string]int     `json:"logins"` // by kind name
	P50ms  map[string]float64 `json:"p50_ms"`
}

// Soak is what TestSoak measured.
type Soak struct {
	Machine         Machine        `json:"machine"`
	DurationS       float64        `json:"duration_s"`
	Sessions        int            `json:"sessions"`
	Controls        int            `json:"controls"`
	Queries         int64          `json:"queries"`
	ChurnLogins     int64          `json:"churn_logins"`
	ChurnFailures   int64          `json:"churn_failures"`
	Refused         int64          `json:"expired_refused"`
	RefusedAccepted int64          `json:"expired_accepted"`
	ToleranceKB     int            `json:"tolerance_kb"`
	Backends        []BackendTrace `json:"backends"`
	Postmaster      []ProcSample   `json:"postmaster"`
	FreshLogin      [2]ProcSample  `json:"fresh_login_start_end"` // median of 5 fresh logins, start and end
	SampleTimesS    []float64      `json:"sample_times_s"`
	MaxGrowthKB     int            `json:"max_growth_kb"`
	MedianGrowthKB  int            `json:"median_growth_kb"`
	MaxLateGrowthKB int            `json:"max_second_half_growth_kb"`
	ControlGrowthKB []int          `json:"control_growth_kb"`
	ThreadsStart    []int          `json:"threads_start"`
	ThreadsEnd      []int          `json:"threads_end"`
	CacheFiles      [2][]string    `json:"cache_files_start_end"`
	Crashes         int            `json:"crash_lines"`
	IdPDiscovery    int            `json:"idp_discovery_requests"`
	IdPJWKS         int            `json:"idp_jwks_requests"`
}

// BackendTrace is one long-lived backend's samples over the soak.
type BackendTrace struct {
	PID     int          `json:"pid"`
	Control bool         `json:"control"` // trust login, no oauth_jwt
	Samples []ProcSample `json:"samples"`
}

// Outcome is one row of the fault table (test/faults).
type Outcome struct {
	Fault    string  `json:"fault"`
	Cache    string  `json:"cache"`  // cold, warm, stale, ...
	Token    string  `json:"token"`  // valid, forged, ...
	Result   string  `json:"result"` // accepted, refused, internal error
	Reason   string  `json:"reason,omitempty"`
	Evidence string  `json:"evidence,omitempty"` // the log line that says why
	Seconds  float64 `json:"seconds"`            // client-side time of the login
	Order    int     `json:"order"`
}

// Hostile are the figures of test/hostile.
type Hostile struct {
	CorpusCases             int            `json:"corpus_cases"`
	CorpusNegative          int            `json:"corpus_negative"`
	CorpusRefusedByPostgres int            `json:"corpus_refused_by_postgres"`
	CorpusReasons           map[string]int `json:"corpus_reasons"`
	Fuzz                    *Fuzz          `json:"fuzz,omitempty"`
	SASL                    []SASL         `json:"sasl,omitempty"`
}

// Fuzz is what TestFuzzThroughServer did.
type Fuzz struct {
	Seconds          float64        `json:"seconds"`
	Workers          int            `json:"workers"`
	Seed             uint64         `json:"seed"`
	Mutants          int64          `json:"mutants"`
	MutantsAccepted  int64          `json:"mutants_accepted"`
	Valid            int64          `json:"valid_sent"`
	ValidAccepted    int64          `json:"valid_accepted"`
	ByValidator      int            `json:"refused_by_oauth_jwt"`
	ByPostgres       int            `json:"refused_by_postgres"`
	Reasons          map[string]int `json:"reasons"`
	PostgresMessages map[string]int `json:"postgres_messages"`
	Mutators         map[string]int `json:"mutators"`
	Crashes          int            `json:"crash_lines"`
}

// SASL is one raw SASL exchange of TestMalformedSASL.
type SASL struct {
	Name            string `json:"name"`
	Bytes           int    `json:"bytes"`
	Client          string `json:"client"`     // what the client got
	Server          string `json:"server_log"` // PostgreSQL's own message
	ValidatorCalled bool   `json:"validator_called"`
}

// Leak is the summary of test/zz_confidentiality.
type Leak struct {
	LogBytes     int            `json:"log_bytes"`
	LogLines     int            `json:"log_lines"`
	Tokens       int            `json:"tokens_checked"`
	Segments     int            `json:"segments_checked"`
	Logins       map[string]int `json:"logins"`
	Reasons      map[string]int `json:"reasons"`
	DebugLines   int            `json:"debug_lines"`
	Statements   int            `json:"statements_logged"`
	DeviceFlows  int            `json:"psql_device_flow_logins"`
	DeviceTokens int            `json:"psql_device_flow_tokens"`
	Leaks        int            `json:"leaks"`
	SettingsUsed []string       `json:"settings"`
}
