// Command plot turns the result files of scripts/report.sh into
// docs/report.md (tables) and docs/latency.png (the latency plot). It reads
// from -in: bench.md (BenchmarkConnectionLatency's table), load.json,
// soak.json (test/load), faults.json (test/faults), hostile.json
// (test/hostile) and leak.json (test/zz_confidentiality). A missing file
// leaves its section out with a note.
//
//	go run ./scripts/plot -in build/report -out docs
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// ---------------------------------------------------------------------------
// Result files (the shapes the test packages write)

type machine struct {
	Date      string `json:"date"`
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go"`
	Postgres  string `json:"postgres"`
}

type kindResult struct {
	Name       string    `json:"name"`
	Clients    int       `json:"clients"`
	Logins     int       `json:"logins"`
	Failures   int       `json:"failures"`
	PerSec     float64   `json:"connections_per_s"`
	P50ms      float64   `json:"p50_ms"`
	P90ms      float64   `json:"p90_ms"`
	P99ms      float64   `json:"p99_ms"`
	MaxMs      float64   `json:"max_ms"`
	CDF        []float64 `json:"cdf_ms"`
	FirstError string    `json:"first_error"`
}

type second struct {
	T      int                `json:"t"`
	Logins map[string]int     `json:"logins"`
	P50ms  map[string]float64 `json:"p50_ms"`
}

type loadResult struct {
	Machine         machine      `json:"machine"`
	DurationS       float64      `json:"duration_s"`
	RefreshS        float64      `json:"cache_refresh_interval_s"`
	MaxConnections  int          `json:"max_connections"`
	Kinds           []kindResult `json:"kinds"`
	TotalPerSec     float64      `json:"total_connections_per_s"`
	IdPDiscovery    int          `json:"idp_discovery_requests"`
	IdPJWKS         int          `json:"idp_jwks_requests"`
	IdPBound        int          `json:"idp_bound_per_document"`
	Crashes         int          `json:"crash_lines"`
	PostmasterSame  bool         `json:"postmaster_pid_unchanged"`
	Rejections      int          `json:"oauth_jwt_rejections"`
	Timeline        []second     `json:"timeline"`
	Phases          []kindResult `json:"phases"`
	PhaseSeconds    float64      `json:"phase_s"`
	Rounds          int          `json:"rounds"`
	TotalSeconds    float64      `json:"total_s"`
	IdPDiscoveryAll int          `json:"idp_discovery_requests_total"`
	IdPJWKSAll      int          `json:"idp_jwks_requests_total"`
	IdPBoundAll     int          `json:"idp_bound_total"`
	PeakBackends    int          `json:"peak_backends"`
}

type procSample struct {
	PrivateDirtyKB int `json:"private_dirty_kb"`
	RssKB          int `json:"rss_kb"`
	Threads        int `json:"threads"`
}

type soakResult struct {
	Machine         machine        `json:"machine"`
	DurationS       float64        `json:"duration_s"`
	Sessions        int            `json:"sessions"`
	Controls        int            `json:"controls"`
	Queries         int64          `json:"queries"`
	ChurnLogins     int64          `json:"churn_logins"`
	ChurnFailures   int64          `json:"churn_failures"`
	Refused         int64          `json:"expired_refused"`
	RefusedAccepted int64          `json:"expired_accepted"`
	ToleranceKB     int            `json:"tolerance_kb"`
	Backends        []backendTrace `json:"backends"`
	Postmaster      []procSample   `json:"postmaster"`
	FreshLogin      [2]procSample  `json:"fresh_login_start_end"`
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

type backendTrace struct {
	PID     int          `json:"pid"`
	Control bool         `json:"control"`
	Samples []procSample `json:"samples"`
}

type outcome struct {
	Fault    string  `json:"fault"`
	Cache    string  `json:"cache"`
	Token    string  `json:"token"`
	Result   string  `json:"result"`
	Reason   string  `json:"reason"`
	Evidence string  `json:"evidence"`
	Seconds  float64 `json:"seconds"`
}

type hostileResult struct {
	CorpusCases             int            `json:"corpus_cases"`
	CorpusNegative          int            `json:"corpus_negative"`
	CorpusRefusedByPostgres int            `json:"corpus_refused_by_postgres"`
	CorpusReasons           map[string]int `json:"corpus_reasons"`
	Fuzz                    *struct {
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
	} `json:"fuzz"`
	SASL []struct {
		Name            string `json:"name"`
		Bytes           int    `json:"bytes"`
		Client          string `json:"client"`
		Server          string `json:"server_log"`
		ValidatorCalled bool   `json:"validator_called"`
	} `json:"sasl"`
}

type leakResult struct {
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
	Settings     []string       `json:"settings"`
}

// benchRow is one row of BenchmarkConnectionLatency's table.
type benchRow struct {
	name              string
	p50, p99, ratio   float64
	memory, threads   string
	memoryKB, threadN int
}

func readJSON(dir, name string, v any) bool {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		fmt.Fprintf(os.Stderr, "plot: %s: %v\n", name, err)
		return false
	}
	return true
}

func parseBench(text string) []benchRow {
	var rows []benchRow
	for _, line := range strings.Split(text, "\n") {
		f := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(f) < 6 {
			continue
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		p50, err1 := strconv.ParseFloat(f[1], 64)
		p99, err2 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		ratio, _ := strconv.ParseFloat(strings.TrimSuffix(f[3], "×"), 64)
		r := benchRow{name: f[0], p50: p50, p99: p99, ratio: ratio, memory: f[4], threads: f[5]}
		fmt.Sscanf(f[4], "%d", &r.memoryKB)
		fmt.Sscanf(f[5], "%d", &r.threadN)
		rows = append(rows, r)
	}
	return rows
}

func main() {
	in := flag.String("in", "build/report", "directory of the result files")
	out := flag.String("out", "docs", "directory for report.md and latency.png")
	cmd := flag.String("cmd", "scripts/report.sh", "the command that regenerates the report (named in it)")
	flag.Parse()

	var (
		load    loadResult
		soak    soakResult
		faults  []outcome
		hostile hostileResult
		leak    leakResult
	)
	benchText, _ := os.ReadFile(filepath.Join(*in, "bench.md"))
	bench := parseBench(string(benchText))
	haveLoad := readJSON(*in, "load.json", &load)
	haveSoak := readJSON(*in, "soak.json", &soak)
	haveFaults := readJSON(*in, "faults.json", &faults)
	haveHostile := readJSON(*in, "hostile.json", &hostile)
	haveLeak := readJSON(*in, "leak.json", &leak)

	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	img := drawPlot(bench, load, haveLoad, soak, haveSoak)
	f, err := os.Create(filepath.Join(*out, "latency.png"))
	if err != nil {
		fail(err)
	}
	if err := png.Encode(f, img); err != nil {
		fail(err)
	}
	if err := f.Close(); err != nil {
		fail(err)
	}
	md := report(*cmd, string(benchText), bench, load, haveLoad, soak, haveSoak, faults, haveFaults, hostile, haveHostile, leak, haveLeak)
	if err := os.WriteFile(filepath.Join(*out, "report.md"), []byte(md), 0o644); err != nil {
		fail(err)
	}
	fmt.Printf("wrote %s and %s\n", filepath.Join(*out, "report.md"), filepath.Join(*out, "latency.png"))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "plot:", err)
	os.Exit(1)
}

// ---------------------------------------------------------------------------
// The report

func report(cmd, benchText string, bench []benchRow, load loadResult, haveLoad bool, soak soakResult, haveSoak bool,
	faults []outcome, haveFaults bool, hostile hostileResult, haveHostile bool, leak leakResult, haveLeak bool) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	m := load.Machine
	if !haveLoad {
		m = soak.Machine
	}
	w("# Under load and under fire: load, soak, fault and hostile-input report\n\n")
	w("Generated by `%s` (also `make report`) on %s: %s, %d cores, PostgreSQL %s, %s, loopback only. ",
		cmd, m.Date, m.CPU, m.Cores, m.Postgres, m.GoVersion)
	w("Every figure below comes from a test or benchmark of this repository run on that machine; ")
	w("the tests also run, with the same defaults, in `make test` (the benchmark is `make bench`'s). The machine is shared and has two cores, ")
	w("so the load generator (Go, pgx) competes with the server for CPU: absolute figures are a floor, ")
	w("the comparison between kinds measured in the same run is what carries over.\n\n")
	w("![Connect latency under load, throughput over time, uncontended latency, soak memory](latency.png)\n\n")

	w("## Contents\n\n1. [Login cost, uncontended](#login-cost-uncontended)\n2. [Connection churn under load](#connection-churn-under-load)\n")
	w("3. [Soak](#soak)\n4. [Faults](#faults)\n5. [Hostile input](#hostile-input)\n6. [Confidentiality](#confidentiality)\n7. [What this run found](#what-this-run-found)\n\n")

	w("## Login cost, uncontended\n\n")
	w("`BenchmarkConnectionLatency` (test/integration): one server, the kinds interleaved round-robin, one login at a time, ")
	w("each a new backend (pgx connect until ready); memory is the median Private_Dirty of five warm-cache backends 200 ms after login.\n\n")
	if len(bench) == 0 {
		w("*No benchmark output (bench.md) in this run.*\n\n")
	} else {
		w("%s\n", strings.TrimSpace(benchText))
		w("\n")
	}

	w("## Connection churn under load\n\n")
	if !haveLoad {
		w("*No load results (load.json) in this run.*\n\n")
	} else {
		w("`TestConnectionChurnLoad` (test/load): clients connect, run `select current_user` (checked), disconnect, in a loop. ")
		w("The production build of oauth_jwt (`pgtest.Options{Production: true}`), scram-sha-256 and the C no-op validator run ")
		w("against the same server in the same run, each kind on its own pg_hba line and roles; max_connections = %d. ", load.MaxConnections)
		w("Latency is from the start of the connect to the connection being ready for queries; it includes waiting for a CPU.\n\n")
		w("**Mixed run**: all kinds at once for %.0f s, the oauth_jwt clients starting on a cold key cache.\n\n", load.DurationS)
		kindTable(&b, load.Kinds)
		w("\n%d logins in %.0f s (%.1f/s), peak %d client backends at once. ", sumLogins(load.Kinds), load.DurationS, load.TotalPerSec, load.PeakBackends)
		w("Failed logins: **%d**. oauth_jwt rejections: **%d**. Crash lines in the server log: **%d**; postmaster pid unchanged: **%v**. ",
			sumFailures(load.Kinds), load.Rejections, load.Crashes, load.PostmasterSame)
		w("Identity-provider requests: **%d discovery, %d JWKS** with cache_refresh_interval = %.0f s (bound: the cold start plus one per interval = %d each).\n\n",
			load.IdPDiscovery, load.IdPJWKS, load.RefreshS, load.IdPBound)
		if len(load.Phases) > 0 {
			w("**Each kind alone at saturation**: %d clients of one kind at a time, %d rounds of %.0f s per kind, round-robin.\n\n",
				load.Phases[0].Clients, load.Rounds, load.PhaseSeconds)
			kindTable(&b, load.Phases)
			var jwt, noop, scram kindResult
			for _, k := range load.Phases {
				switch k.Name {
				case "oauth_jwt":
					jwt = k
				case "oauth no-op (C)":
					noop = k
				case "scram-sha-256":
					scram = k
				}
			}
			if noop.PerSec > 0 && scram.PerSec > 0 && jwt.PerSec > 0 {
				w("\nAt saturation oauth_jwt sustains %.0f%% of the no-op validator's and %.0f%% of scram-sha-256's login rate; ",
					100*jwt.PerSec/noop.PerSec, 100*jwt.PerSec/scram.PerSec)
				w("with the server's CPU as the bottleneck, latency there is the queue (Little's law: clients ÷ rate).\n")
			}
			w("\nWhole test (mixed run and phases, %.0f s): %d discovery and %d JWKS requests (bound %d each).\n\n",
				load.TotalSeconds, load.IdPDiscoveryAll, load.IdPJWKSAll, load.IdPBoundAll)
		}
	}

	w("## Soak\n\n")
	if !haveSoak {
		w("*No soak results (soak.json) in this run.*\n\n")
	} else {
		w("`TestSoak` (test/load): %d long-lived oauth_jwt sessions each run a query and a HOT update every 500 ms for %.0f s, ",
			soak.Sessions, soak.DurationS)
		w("beside %d control sessions (trust logins that never load the module) running the same; meanwhile 4 clients log in and out ", soak.Controls)
		w("without pause and one keeps presenting an expired token. /proc is sampled every %.0f s.\n\n", sampleEvery(soak.SampleTimesS))
		w("| figure | value |\n|---|---|\n")
		w("| queries by the long-lived sessions | %d |\n", soak.Queries)
		w("| churn logins (failed) | %d (%d) |\n", soak.ChurnLogins, soak.ChurnFailures)
		w("| expired-token logins refused (accepted) | %d (%d) |\n", soak.Refused, soak.RefusedAccepted)
		w("| oauth_jwt backends, private dirty memory growth, start → end | median %+d kB, max %+d kB |\n", soak.MedianGrowthKB, soak.MaxGrowthKB)
		w("| the same over the second half of the soak | max %+d kB |\n", soak.MaxLateGrowthKB)
		w("| control backends (no module), growth | %s kB |\n", intsString(soak.ControlGrowthKB))
		w("| allowed growth beyond the controls' | %d kB |\n", soak.ToleranceKB)
		w("| threads of the oauth_jwt backends, start → end | %s → %s |\n", countsString(soak.ThreadsStart), countsString(soak.ThreadsEnd))
		if n := len(soak.Postmaster); n > 0 {
			w("| postmaster private dirty, threads, start → end | %d kB, %d → %d kB, %d |\n",
				soak.Postmaster[0].PrivateDirtyKB, soak.Postmaster[0].Threads, soak.Postmaster[n-1].PrivateDirtyKB, soak.Postmaster[n-1].Threads)
		}
		w("| a fresh oauth_jwt login's backend, start → end | %d kB, %d threads → %d kB, %d threads |\n",
			soak.FreshLogin[0].PrivateDirtyKB, soak.FreshLogin[0].Threads, soak.FreshLogin[1].PrivateDirtyKB, soak.FreshLogin[1].Threads)
		w("| key cache files, start → end | %s → %s |\n", strings.Join(soak.CacheFiles[0], " "), strings.Join(soak.CacheFiles[1], " "))
		w("| identity-provider requests (refresh every 30 s) | %d discovery, %d JWKS |\n", soak.IdPDiscovery, soak.IdPJWKS)
		w("| crash lines | %d |\n\n", soak.Crashes)
		w("The oauth_jwt backends carry about 2 MB more than the controls from the start (the Go runtime, see the ")
		w("benchmark); what matters here is that neither grows beyond what PostgreSQL itself does in the same sessions, ")
		w("and that the Go runtime's thread count never changes (the bottom-right panel of the plot shows every sample).\n\n")
	}

	w("## Faults\n\n")
	if !haveFaults {
		w("*No fault results (faults.json) in this run.*\n\n")
	} else {
		w("test/faults, through a real server (test build of the module) with `oauth_jwt.log_accepted = on`. ")
		w("Identity-provider cases use http_timeout = 1 s, cache_refresh_interval = 2 s, cache_max_stale = 6 s; ")
		w("the retry interval after a failed fetch is the key cache's fixed 10 s. *forged signature* is a token signed by a key the ")
		w("provider does not publish, under its kid; *alg none* is unsigned. The last column is the server log line that says why ")
		w("(token claims and long paths shortened).\n\n")
		w("| fault | cache | token | result | reason | the log says |\n|---|---|---|---|---|---|\n")
		rank := func(f string) int {
			switch {
			case strings.HasPrefix(f, "IdP"):
				return 0
			case strings.HasPrefix(f, "keys rotated"), strings.HasPrefix(f, "old key"):
				return 1
			case strings.HasPrefix(f, "cache"):
				return 2
			}
			return 3
		}
		sort.SliceStable(faults, func(i, j int) bool { return rank(faults[i].Fault) < rank(faults[j].Fault) })
		for _, o := range faults {
			w("| %s | %s | %s | %s | %s | %s |\n", esc(o.Fault), esc(o.Cache), esc(o.Token), resultCell(o.Result), esc(o.Reason), esc(shorten(o.Evidence)))
		}
		w("\n")
	}

	w("## Hostile input\n\n")
	if !haveHostile {
		w("*No hostile-input results (hostile.json) in this run.*\n\n")
	} else {
		w("test/hostile, through real connections.\n\n")
		w("**Bad-token corpus**: the validator's corpus (validator/validate_test.go) rebuilt against an identity provider that publishes ")
		w("the corpus's key set (RSA for RS256, PS256 and RS512 only, an encryption key, a key_ops-restricted key, EC P-256 and P-384, ")
		w("Ed25519, an HMAC oct key, a 1024-bit RSA key, a key that appears after a refetch): %d cases, %d of them negative; ",
			hostile.CorpusCases, hostile.CorpusNegative)
		w("every verdict and reason code as in the unit tests, except where PostgreSQL sees the token first: it skips blanks ")
		w("before the token (so that case is accepted, the validator getting the intact token) and refuses %d tokens itself, ", hostile.CorpusRefusedByPostgres)
		w("before the validator (empty, or blanks inside or after: not RFC 6750 b64token text). Reasons logged: %s.\n\n", reasonsString(hostile.CorpusReasons))
		if fz := hostile.Fuzz; fz != nil {
			w("**Fuzzing through the server**: %.0f s, %d concurrent clients (seed %d): **%d mutated tokens, %d accepted**; ",
				fz.Seconds, fz.Workers, fz.Seed, fz.Mutants, fz.MutantsAccepted)
			w("the untouched valid token, sent between them, accepted %d of %d times. ", fz.ValidAccepted, fz.Valid)
			w("Refused by oauth_jwt with a reason: %d (%s); refused by PostgreSQL before the validator: %d (%s). Crash lines: %d.\n\n",
				fz.ByValidator, reasonsString(fz.Reasons), fz.ByPostgres, reasonsString(fz.PostgresMessages), fz.Crashes)
			w("Mutators used: %s.\n\n", reasonsString(fz.Mutators))
		}
		if len(hostile.SASL) > 0 {
			w("**Malformed and oversized SASL messages**, sent by hand (pgproto3) after the server asked for OAUTHBEARER. ")
			w("A control exchange with a valid token succeeds and reaches the validator. In every row below the ")
			w("validator is never called (no oauth_jwt line for the backend, with `log_accepted = on`):\n\n")
			w("| message | bytes | the client gets | PostgreSQL logs | validator called |\n|---|---|---|---|---|\n")
			for _, s := range hostile.SASL {
				w("| %s | %d | %s | %s | %v |\n", esc(s.Name), s.Bytes, esc(shortenClient(s.Client)), esc(s.Server), s.ValidatorCalled)
			}
			w("\n")
		}
	}

	w("## Confidentiality\n\n")
	if !haveLeak {
		w("*No confidentiality results (leak.json) in this run.*\n\n")
	} else {
		w("test/zz_confidentiality (runs last in `go test ./test/...`) replays a mix of the scenarios above on one server with %s. ",
			strings.Join(codeList(leak.Settings), ", "))
		w("The whole server log (%d lines, %d of them DEBUG, %d logged statements) is then searched for every one of the %d tokens ",
			leak.LogLines, leak.DebugLines, leak.Statements, leak.Tokens)
		w("of the run (among them %d that psql received in its device-flow logins, %d accepted and one refused, read from psql's PGOAUTHDEBUG traces), each of their %d distinct segments ",
			leak.DeviceTokens, leak.DeviceFlows, leak.Segments)
		w("and any 16-character piece of one, anything shaped like a JWT (`eyJ…`), the OAuth client secret and the SCRAM password. ")
		w("Leaks found: **%d**. Reasons logged meanwhile: %s.\n\n", leak.Leaks, reasonsString(leak.Reasons))
	}

	w("## What this run found\n\n")
	notes := findings(load, haveLoad, soak, haveSoak, faults, hostile, haveHostile, leak, haveLeak)
	for _, n := range notes {
		w("- %s\n", n)
	}
	w("\n## Regenerating\n\n")
	w("`%s` (after `make test-modules`; `make report` does both) runs everything above and rewrites this page and the plot; ", cmd)
	w("the raw figures stay in `build/report/*.json`, the test output in `build/report/*.log`. Sizes, with their defaults:\n\n")
	w("| variable | default | |\n|---|---|---|\n")
	for _, v := range [][3]string{
		{"OJW_BENCH_CONNECTIONS", "300", "logins per kind in the benchmark"},
		{"OJW_LOAD_CLIENTS", "100", "oauth_jwt clients in the load test (and per kind in the saturation phases)"},
		{"OJW_LOAD_PEER_CLIENTS", "20", "scram-sha-256 and no-op clients each in the mixed run"},
		{"OJW_LOAD_DURATION", "60s", "the mixed run"},
		{"OJW_LOAD_REFRESH", "15s", "oauth_jwt.cache_refresh_interval during the load test"},
		{"OJW_LOAD_ROUNDS, OJW_LOAD_PHASE", "3, 4s", "saturation phases (0 rounds: none)"},
		{"OJW_SOAK_DURATION, OJW_SOAK_SESSIONS, OJW_SOAK_CONTROLS, OJW_SOAK_CHURN, OJW_SOAK_SAMPLE", "3m, 20, 4, 4, 10s", "the soak"},
		{"OJW_FUZZ_DURATION, OJW_FUZZ_WORKERS, OJW_FUZZ_SEED", "20s, 6, random", "the fuzz loop through the server"},
	} {
		w("| `%s` | %s | %s |\n", v[0], v[1], v[2])
	}
	w("\n")
	return b.String()
}

// findings are the data-driven observations of the run.
func findings(load loadResult, haveLoad bool, soak soakResult, haveSoak bool, faults []outcome, hostile hostileResult, haveHostile bool, leak leakResult, haveLeak bool) []string {
	var n []string
	if haveLoad {
		n = append(n, fmt.Sprintf("Load: %d failed logins, %d crash lines, %d+%d identity-provider requests for %d oauth_jwt logins in the mixed run.",
			sumFailures(load.Kinds), load.Crashes, load.IdPDiscovery, load.IdPJWKS, kindByName(load.Kinds, "oauth_jwt").Logins))
	}
	if haveSoak {
		n = append(n, fmt.Sprintf("Soak: long-lived oauth_jwt backends grew at most %+d kB (controls without the module: %s kB); thread counts unchanged.",
			soak.MaxGrowthKB, intsString(soak.ControlGrowthKB)))
	}
	accepted := 0
	var failClosed []string
	for _, o := range faults {
		bad := strings.Contains(o.Token, "forged") || strings.Contains(o.Token, "alg none") || strings.Contains(o.Token, "other role") ||
			strings.Contains(o.Token, "unknown kid") || (o.Token == "old kid" && o.Cache == "refetched")
		if bad && strings.HasPrefix(o.Result, "accepted") {
			accepted++
		}
		if o.Token == "valid" && strings.Contains(o.Result, "internal error") && !strings.Contains(o.Reason, "insecure_cache") {
			failClosed = append(failClosed, o.Fault+" ("+o.Cache+")")
		}
		var ok, refused int
		if n, _ := fmt.Sscanf(o.Result, "%d accepted, %d refused", &ok, &refused); n == 2 && o.Token == "valid" && refused > 0 &&
			!strings.HasPrefix(o.Fault, "IdP") {
			failClosed = append(failClosed, o.Fault+": "+o.Result)
		}
	}
	if len(faults) > 0 {
		n = append(n, fmt.Sprintf("Faults: %d rows; tokens that must be refused were accepted %d times.", len(faults), accepted))
	}
	if len(failClosed) > 0 {
		n = append(n, "Valid tokens refused because of the key cache, not the token (the module fails closed; each refusal is logged with its cause): "+
			strings.Join(failClosed, "; ")+". With the cache directory unwritable, fresh cached keys still serve, but once they are due for refresh "+
			"every login fails with an internal error, even though the identity provider answers and the stale keys are within cache_max_stale.")
	}
	if haveHostile && hostile.Fuzz != nil {
		n = append(n, fmt.Sprintf("Hostile input: %d corpus cases as in the unit tests; %d mutated tokens, %d accepted.",
			hostile.CorpusCases, hostile.Fuzz.Mutants, hostile.Fuzz.MutantsAccepted))
	}
	if haveLeak {
		n = append(n, fmt.Sprintf("Confidentiality: %d leaks in a %d-line debug5 log.", leak.Leaks, leak.LogLines))
	}
	return n
}

func kindTable(b *strings.Builder, ks []kindResult) {
	fmt.Fprintf(b, "| login | clients | logins | failed | conn/s | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, k := range ks {
		fmt.Fprintf(b, "| %s | %d | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f |\n",
			k.Name, k.Clients, k.Logins, k.Failures, k.PerSec, k.P50ms, k.P90ms, k.P99ms, k.MaxMs)
	}
}

func kindByName(ks []kindResult, name string) kindResult {
	for _, k := range ks {
		if k.Name == name {
			return k
		}
	}
	return kindResult{}
}

func sumLogins(ks []kindResult) (n int) {
	for _, k := range ks {
		n += k.Logins
	}
	return n
}

func sumFailures(ks []kindResult) (n int) {
	for _, k := range ks {
		n += k.Failures
	}
	return n
}

func sampleEvery(ts []float64) float64 {
	if len(ts) < 2 {
		return 0
	}
	return math.Round(ts[1] - ts[0])
}

func intsString(v []int) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%+d", x))
	}
	return strings.Join(s, ", ")
}

// countsString summarises a list of small integers: "6 (×18), 7 (×2)".
func countsString(v []int) string {
	m := map[int]int{}
	for _, x := range v {
		m[x]++
	}
	var keys []int
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var s []string
	for _, k := range keys {
		s = append(s, fmt.Sprintf("%d (×%d)", k, m[k]))
	}
	return strings.Join(s, ", ")
}

func reasonsString(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var s []string
	for _, k := range keys {
		s = append(s, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func codeList(v []string) []string {
	var out []string
	for _, s := range v {
		out = append(out, "`"+s+"`")
	}
	return out
}

func esc(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", "\\|"), "\n", " ") }

func resultCell(r string) string {
	if strings.HasPrefix(r, "accepted") {
		return "**" + r + "**"
	}
	return r
}

// shorten keeps the informative part of a log line for the table: the
// reason code is in its own column, issuers and paths are abbreviated, and
// a long text keeps its start and its end (where the cause is).
func shorten(s string) string {
	for _, cut := range []string{" Token claims", " They were fetched at"} {
		if i := strings.Index(s, cut); i > 0 {
			s = s[:i]
		}
	}
	if strings.HasPrefix(s, "Reason: ") {
		if i := strings.Index(s, ". "); i > 0 {
			s = s[i+2:]
		}
	}
	s = issuerRE.ReplaceAllString(s, "$$ISSUER")
	s = shortenPaths(s)
	s = strings.ReplaceAll(s, "$ISSUER/.well-known/openid-configuration", "$ISSUER/.well-known/…")
	s = strings.ReplaceAll(s, "$ISSUER/protocol/openid-connect/certs", "$ISSUER/…/certs")
	s = hexRE.ReplaceAllStringFunc(s, func(h string) string { return h[:8] + "…" })
	if r := []rune(s); len(r) > 300 {
		s = string(r[:110]) + " … " + string(r[len(r)-180:])
	}
	return s
}

var (
	issuerRE = regexp.MustCompile(`http://127\.0\.0\.1:\d+/realms/[a-z]+`)
	hexRE    = regexp.MustCompile(`[0-9a-f]{64}`)
)

func shortenClient(s string) string {
	if i := strings.Index(s, `"openid-configuration"`); i > 0 {
		if j := strings.Index(s[i:], "}"); j > 0 {
			s = s[:i] + "…" + s[i+j:]
		}
	}
	return s
}

// shortenPaths writes the throwaway clusters' data directories as $PGDATA.
func shortenPaths(s string) string {
	for {
		i := strings.Index(s, "/tmp/ojw-pg-")
		if i < 0 {
			return s
		}
		j := strings.Index(s[i:], "/data/")
		if j < 0 {
			return s
		}
		s = s[:i] + "$PGDATA/" + s[i+j+len("/data/"):]
	}
}

// ---------------------------------------------------------------------------
// The plot: four panels, drawn with the standard library and a bitmap font.

var (
	white  = color.RGBA{255, 255, 255, 255}
	black  = color.RGBA{30, 30, 30, 255}
	grey   = color.RGBA{200, 200, 200, 255}
	light  = color.RGBA{236, 236, 236, 255}
	colors = map[string]color.RGBA{
		"oauth_jwt":                  {214, 69, 65, 255},
		"oauth_jwt (warm key cache)": {214, 69, 65, 255},
		"scram-sha-256":              {52, 120, 190, 255},
		"oauth no-op (C)":            {60, 160, 80, 255},
		"oauth no-op (Go runtime)":   {230, 150, 40, 255},
		"trust":                      {130, 130, 130, 255},
		"control":                    {52, 120, 190, 255},
	}
)

func colorOf(name string) color.RGBA {
	if c, ok := colors[name]; ok {
		return c
	}
	return black
}

type canvas struct{ *image.RGBA }

func (c canvas) set(x, y int, col color.RGBA) {
	if image.Pt(x, y).In(c.Bounds()) {
		c.SetRGBA(x, y, col)
	}
}

func (c canvas) rect(x0, y0, x1, y1 int, col color.RGBA) {
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			c.set(x, y, col)
		}
	}
}

// line draws a line of width w.
func (c canvas) line(x0, y0, x1, y1 float64, w int, col color.RGBA) {
	dx, dy := x1-x0, y1-y0
	n := int(math.Max(math.Abs(dx), math.Abs(dy))) + 1
	for i := 0; i <= n; i++ {
		x := x0 + dx*float64(i)/float64(n)
		y := y0 + dy*float64(i)/float64(n)
		for a := -(w / 2); a <= (w-1)/2; a++ {
			for b := -(w / 2); b <= (w-1)/2; b++ {
				c.set(int(math.Round(x))+a, int(math.Round(y))+b, col)
			}
		}
	}
}

func (c canvas) text(x, y int, s string, col color.RGBA) {
	d := font.Drawer{Dst: c.RGBA, Src: image.NewUniform(col), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int { return 7 * len([]rune(s)) }

// panel is a plotting area with data ranges.
type panel struct {
	c                      canvas
	x0, y0, x1, y1         int // pixel box of the plot area
	xmin, xmax, ymin, ymax float64
	logX                   bool
}

func (p panel) px(x float64) float64 {
	if p.logX {
		x, xmin, xmax := math.Log10(math.Max(x, p.xmin)), math.Log10(p.xmin), math.Log10(p.xmax)
		return float64(p.x0) + (x-xmin)/(xmax-xmin)*float64(p.x1-p.x0)
	}
	return float64(p.x0) + (x-p.xmin)/(p.xmax-p.xmin)*float64(p.x1-p.x0)
}

func (p panel) py(y float64) float64 {
	return float64(p.y1) - (y-p.ymin)/(p.ymax-p.ymin)*float64(p.y1-p.y0)
}

// frame draws the title, the axes, grid lines and tick labels.
func (p panel) frame(title, xlabel, ylabel string, xticks, yticks []float64, xfmt, yfmt func(float64) string) {
	c := p.c
	c.text(p.x0, p.y0-22, title, black)
	c.text(p.x0-40, p.y0-6, ylabel, black)
	for _, t := range yticks {
		y := int(p.py(t))
		c.line(float64(p.x0), float64(y), float64(p.x1), float64(y), 1, light)
		l := yfmt(t)
		c.text(p.x0-6-textWidth(l), y+4, l, black)
	}
	for _, t := range xticks {
		x := int(p.px(t))
		c.line(float64(x), float64(p.y0), float64(x), float64(p.y1), 1, light)
		l := xfmt(t)
		c.text(x-textWidth(l)/2, p.y1+16, l, black)
	}
	c.line(float64(p.x0), float64(p.y1), float64(p.x1), float64(p.y1), 1, black)
	c.line(float64(p.x0), float64(p.y0), float64(p.x0), float64(p.y1), 1, black)
	c.text((p.x0+p.x1)/2-textWidth(xlabel)/2, p.y1+34, xlabel, black)
}

func (p panel) legend(names []string, x, y int) {
	for i, n := range names {
		yy := y + 16*i
		p.c.rect(x, yy-8, x+18, yy-4, colorOf(n))
		p.c.text(x+24, yy, n, black)
	}
}

// niceFloor and niceCeil round to 1, 2 or 5 times a power of ten.
func niceFloor(v float64) float64 {
	d := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{5, 2, 1} {
		if d*m <= v {
			return d * m
		}
	}
	return d
}

func niceCeil(v float64) float64 {
	d := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if d*m >= v {
			return d * m
		}
	}
	return 10 * d
}

func niceTicks(lo, hi float64, n int) []float64 {
	span := hi - lo
	if span <= 0 {
		return []float64{lo}
	}
	step := math.Pow(10, math.Floor(math.Log10(span/float64(n))))
	for _, m := range []float64{1, 2, 5, 10} {
		if span/(step*m) <= float64(n) {
			step *= m
			break
		}
	}
	var t []float64
	for v := math.Ceil(lo/step) * step; v <= hi+1e-9; v += step {
		t = append(t, v)
	}
	return t
}

func ff(v float64) string {
	if v == math.Trunc(v) {
		return strconv.Itoa(int(v))
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func drawPlot(bench []benchRow, load loadResult, haveLoad bool, soak soakResult, haveSoak bool) image.Image {
	const W, H = 1400, 980
	img := canvas{image.NewRGBA(image.Rect(0, 0, W, H))}
	img.rect(0, 0, W, H, white)
	m := load.Machine
	if !haveLoad {
		m = soak.Machine
	}
	img.text(40, 24, fmt.Sprintf("oauth_jwt under load - %s, %s, %d cores, PostgreSQL %s", m.Date, m.CPU, m.Cores, m.Postgres), black)

	// A: latency CDF under load.
	a := panel{c: img, x0: 100, y0: 80, x1: 660, y1: 420, ymin: 0, ymax: 100, logX: true}
	if haveLoad {
		maxMs := 1.0
		minMs := math.Inf(1)
		for _, k := range load.Kinds {
			if n := len(k.CDF); n > 0 {
				maxMs = math.Max(maxMs, k.CDF[n-1])
				minMs = math.Min(minMs, k.CDF[0])
			}
		}
		a.xmin, a.xmax = niceFloor(math.Max(minMs, 0.1)), niceCeil(maxMs)
		var xt []float64
		for d := math.Pow(10, math.Floor(math.Log10(a.xmin))); d <= a.xmax; d *= 10 {
			for _, m := range []float64{1, 2, 5} {
				if v := d * m; v >= a.xmin*0.999 && v <= a.xmax*1.001 {
					xt = append(xt, v)
				}
			}
		}
		a.frame(fmt.Sprintf("A. Connect latency, mixed run (%.0f s, all kinds at once)", load.DurationS), "connect latency, ms (log scale)", "percentile",
			xt, []float64{0, 25, 50, 75, 90, 100}, ff, ff)
		var names []string
		for _, k := range load.Kinds {
			names = append(names, fmt.Sprintf("%s (%d clients)", k.Name, k.Clients))
			colors[names[len(names)-1]] = colorOf(k.Name)
			n := len(k.CDF)
			for i := 1; i < n; i++ {
				q0, q1 := 100*float64(i)/float64(n), 100*float64(i+1)/float64(n)
				a.c.line(a.px(k.CDF[i-1]), a.py(q0), a.px(k.CDF[i]), a.py(q1), 2, colorOf(k.Name))
			}
		}
		a.legend(names, a.x0+12, a.y0+16)
	} else {
		img.text(a.x0, a.y0, "no load results", black)
	}

	// B: logins per second during the mixed run.
	bp := panel{c: img, x0: 800, y0: 80, x1: 1360, y1: 420}
	if haveLoad && len(load.Timeline) > 0 {
		bp.xmin, bp.xmax = 0, float64(len(load.Timeline))
		peak := 1.0
		for _, s := range load.Timeline {
			for _, v := range s.Logins {
				peak = math.Max(peak, float64(v))
			}
		}
		bp.ymax = peak * 1.15
		bp.frame("B. Logins per second, mixed run (cache refreshes dotted)", "seconds", "logins/s",
			niceTicks(0, bp.xmax, 8), niceTicks(0, bp.ymax, 6), ff, ff)
		if load.RefreshS > 0 {
			for t := load.RefreshS; t < bp.xmax; t += load.RefreshS {
				x := bp.px(t)
				for y := bp.y0; y < bp.y1; y += 6 {
					bp.c.line(x, float64(y), x, float64(y+2), 1, grey)
				}
			}
		}
		for _, k := range load.Kinds {
			prev := -1.0
			for i, s := range load.Timeline[:len(load.Timeline)-1] { // the last second is partial
				v := float64(s.Logins[k.Name])
				if i > 0 {
					bp.c.line(bp.px(float64(i-1)+0.5), bp.py(prev), bp.px(float64(i)+0.5), bp.py(v), 2, colorOf(k.Name))
				}
				prev = v
			}
		}
		var names []string
		for _, k := range load.Kinds {
			names = append(names, fmt.Sprintf("%s (%d clients)", k.Name, k.Clients))
		}
		bp.legend(names, bp.x0+12, bp.y0+16)
	}

	// C: uncontended latency from the benchmark, p50 and p99 bars.
	cp := panel{c: img, x0: 100, y0: 560, x1: 660, y1: 880}
	if len(bench) > 0 {
		top := 1.0
		for _, r := range bench {
			top = math.Max(top, r.p99)
		}
		cp.xmin, cp.xmax, cp.ymin, cp.ymax = 0, float64(len(bench)), 0, top*1.15
		cp.frame("C. One login at a time (benchmark): p50 solid, p99 light", "", "ms", nil, niceTicks(0, cp.ymax, 6), ff, ff)
		for i, r := range bench {
			col := colorOf(r.name)
			lightCol := color.RGBA{uint8((int(col.R) + 2*255) / 3), uint8((int(col.G) + 2*255) / 3), uint8((int(col.B) + 2*255) / 3), 255}
			xc := cp.px(float64(i) + 0.5)
			bw := float64(cp.x1-cp.x0) / float64(len(bench)) * 0.28
			cp.c.rect(int(xc-bw), int(cp.py(r.p50)), int(xc), cp.y1, col)
			cp.c.rect(int(xc), int(cp.py(r.p99)), int(xc+bw), cp.y1, lightCol)
			l := ff(math.Round(r.p50*10) / 10)
			cp.c.text(int(xc-bw), int(cp.py(r.p50))-4, l, black)
			name := strings.TrimSuffix(strings.TrimPrefix(r.name, "oauth "), " (warm key cache)")
			cp.c.text(int(xc)-textWidth(name)/2, cp.y1+16, name, black)
			ratio := fmt.Sprintf("%.2fx no-op", r.ratio)
			cp.c.text(int(xc)-textWidth(ratio)/2, cp.y1+30, ratio, black)
		}
	}

	// D: soak, private dirty memory of the long-lived backends over time.
	dp := panel{c: img, x0: 800, y0: 560, x1: 1360, y1: 880}
	if haveSoak && len(soak.SampleTimesS) > 1 {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, b := range soak.Backends {
			for _, s := range b.Samples {
				lo, hi = math.Min(lo, float64(s.PrivateDirtyKB)), math.Max(hi, float64(s.PrivateDirtyKB))
			}
		}
		dp.xmin, dp.xmax = 0, soak.SampleTimesS[len(soak.SampleTimesS)-1]
		dp.ymin, dp.ymax = math.Max(0, lo-400), hi+400
		threads := strings.ReplaceAll(countsString(soak.ThreadsEnd), "×", "x")
		dp.frame(fmt.Sprintf("D. Soak: long-lived backends' private dirty memory (threads: %s)", threads), "seconds", "kB",
			niceTicks(0, dp.xmax, 8), niceTicks(dp.ymin, dp.ymax, 6), ff, ff)
		for _, b := range soak.Backends {
			col := colorOf("oauth_jwt")
			if b.Control {
				col = colorOf("control")
			}
			for i := 1; i < len(b.Samples) && i < len(soak.SampleTimesS); i++ {
				dp.c.line(dp.px(soak.SampleTimesS[i-1]), dp.py(float64(b.Samples[i-1].PrivateDirtyKB)),
					dp.px(soak.SampleTimesS[i]), dp.py(float64(b.Samples[i].PrivateDirtyKB)), 1, col)
			}
		}
		colors[fmt.Sprintf("oauth_jwt sessions (%d)", soak.Sessions)] = colorOf("oauth_jwt")
		colors[fmt.Sprintf("trust controls, no module (%d)", soak.Controls)] = colorOf("control")
		dp.legend([]string{fmt.Sprintf("oauth_jwt sessions (%d)", soak.Sessions), fmt.Sprintf("trust controls, no module (%d)", soak.Controls)}, dp.x0+12, dp.y0+16)
	}
	return img.RGBA
}
