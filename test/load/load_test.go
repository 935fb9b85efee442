package load

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/results"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// The three kinds of login measured side by side.
const (
	kindJWT   = results.KindJWT
	kindScram = results.KindScram
	kindNoop  = results.KindNoop
)

var kindOrder = []string{kindJWT, kindScram, kindNoop}

type sample struct {
	at  time.Duration // since the start, when the login finished
	lat time.Duration
}

// TestConnectionChurnLoad: many clients connecting, running a query and
// disconnecting, oauth_jwt beside scram-sha-256 and the no-op validator in
// the same run. See the package documentation.
func TestConnectionChurnLoad(t *testing.T) {
	clients := loadkit.EnvInt("OJW_LOAD_CLIENTS", 100)
	peers := loadkit.EnvInt("OJW_LOAD_PEER_CLIENTS", 20)
	dur := loadkit.EnvDuration("OJW_LOAD_DURATION", 60*time.Second)
	refresh := loadkit.EnvDuration("OJW_LOAD_REFRESH", 15*time.Second)
	maxConn := max(400, 2*(clients+2*peers)+20)

	idp := loadkit.StartIdP(t, testidp.Options{})
	c := pgtest.New(t, pgtest.Options{Production: true, Conf: []string{
		"oauth_validator_libraries = 'oauth_jwt, oauth_noop'",
		fmt.Sprintf("max_connections = %d", maxConn),
		"password_encryption = 'scram-sha-256'",
		"log_connections = ''", // as in the benchmark; crashes are logged regardless
	}})
	c.SetConf(loadkit.BaseConf(map[string]string{
		"oauth_jwt.cache_refresh_interval": fmt.Sprintf("'%dms'", refresh.Milliseconds()),
	}))
	iss := idp.Issuer()
	c.SetHBA(
		"host all load_scram 127.0.0.1/32 scram-sha-256",
		loadkit.HBA("load_noop", iss, "validator=oauth_noop"),
		loadkit.HBA(`/^load_jwt_[0-9]+$`, iss, "validator=oauth_jwt"),
	)
	var sql []string
	sql = append(sql, "create role load_scram login password 'load-password'", "create role load_noop login")
	roles := make([]string, clients)
	toks := make([]string, clients)
	for i := range roles {
		roles[i] = fmt.Sprintf("load_jwt_%03d", i)
		sql = append(sql, "create role "+roles[i]+" login")
		toks[i] = loadkit.Token(t, idp, roles[i], map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
	}
	c.Exec(sql...)
	watch := loadkit.WatchCrashes(t, c)

	var all []client
	for i := range roles {
		all = append(all, client{kindJWT, roles[i], c.OAuthConfig(roles[i], toks[i])})
	}
	for i := 0; i < peers; i++ {
		all = append(all, client{kindScram, "load_scram", loadkit.PasswordConfig(t, c, "load_scram", "load-password")})
		all = append(all, client{kindNoop, "load_noop", c.OAuthConfig("load_noop", "opaque-noop-token")})
	}

	// The identity provider is counted from the cold start: the first
	// oauth_jwt logins of the storm fetch the keys.
	idp.ResetCounts()
	ctx, cancel := context.WithTimeout(context.Background(), dur+2*time.Minute)
	defer cancel()

	// Count backends while the storm runs.
	peak := 0
	stopPeak := make(chan struct{})
	peakDone := make(chan struct{})
	go func() {
		defer close(peakDone)
		admin, err := pgx.ConnectConfig(ctx, c.AdminConfig())
		if err != nil {
			return
		}
		defer admin.Close(context.Background())
		for {
			select {
			case <-stopPeak:
				return
			case <-time.After(500 * time.Millisecond):
			}
			var n int
			if admin.QueryRow(ctx, "select count(*) from pg_stat_activity where backend_type = 'client backend'").Scan(&n) == nil {
				peak = max(peak, n)
			}
		}
	}()

	start := time.Now()
	run := churn(ctx, all, dur)
	close(stopPeak)
	<-peakDone
	samples, failures, firstErr, elapsed := run.samples, run.failures, run.firstErr, run.elapsed

	res := results.Load{
		DurationS: elapsed.Seconds(), RefreshS: refresh.Seconds(), MaxConnections: maxConn,
		IdPDiscovery: idp.Requests(testidp.PathDiscovery), IdPJWKS: idp.Requests(testidp.PathJWKS),
		PeakConnections: peak,
	}
	// Fetches happen at the cold start and then at most once per refresh
	// interval (each entry becomes stale refresh after it was fetched).
	res.IdPBound = 1 + int(elapsed/refresh)
	res.Machine = loadkit.DescribeMachine(context.Background(), c)

	var table strings.Builder
	fmt.Fprintf(&table, "Mixed run, all kinds at once:\n\n")
	tableHead(&table)
	total := 0
	for _, k := range kindOrder {
		n := 0
		for _, cl := range all {
			if cl.kind == k {
				n++
			}
		}
		kr := kindResult(k, n, latencies(samples[k]), failures[k], firstErr[k], elapsed)
		total += kr.Logins
		res.Kinds = append(res.Kinds, kr)
		tableRow(&table, kr)
	}
	res.TotalPerSec = float64(total) / elapsed.Seconds()
	res.Timeline = timeline(samples, elapsed)

	// Alternating phases: each kind alone with the same number of clients,
	// round-robin so that drift of a shared machine hits all alike. This
	// is each kind's throughput at saturation.
	rounds := loadkit.EnvInt("OJW_LOAD_ROUNDS", 3)
	phase := loadkit.EnvDuration("OJW_LOAD_PHASE", 4*time.Second)
	if os.Getenv("OJW_LOAD_ROUNDS") == "0" {
		rounds = 0
	}
	if rounds > 0 {
		phaseLat := map[string][]time.Duration{}
		phaseFail := map[string]int{}
		phaseErr := map[string]string{}
		phaseTime := map[string]time.Duration{}
		for r := 0; r < rounds; r++ {
			for i := range kindOrder {
				k := kindOrder[(i+r)%len(kindOrder)]
				var only []client
				for j := 0; j < clients; j++ {
					switch k {
					case kindJWT:
						only = append(only, client{k, roles[j], c.OAuthConfig(roles[j], toks[j])})
					case kindScram:
						only = append(only, client{k, "load_scram", loadkit.PasswordConfig(t, c, "load_scram", "load-password")})
					case kindNoop:
						only = append(only, client{k, "load_noop", c.OAuthConfig("load_noop", "opaque-noop-token")})
					}
				}
				pr := churn(ctx, only, phase)
				phaseLat[k] = append(phaseLat[k], latencies(pr.samples[k])...)
				phaseFail[k] += pr.failures[k]
				if phaseErr[k] == "" {
					phaseErr[k] = pr.firstErr[k]
				}
				phaseTime[k] += pr.elapsed
				time.Sleep(300 * time.Millisecond) // let the phase's backends exit
			}
		}
		fmt.Fprintf(&table, "\nAlternating phases, %d clients of one kind at a time, %d rounds of %v per kind:\n\n", clients, rounds, phase)
		tableHead(&table)
		for _, k := range kindOrder {
			kr := kindResult(k, clients, phaseLat[k], phaseFail[k], phaseErr[k], phaseTime[k])
			res.Phases = append(res.Phases, kr)
			tableRow(&table, kr)
			failures[k] += phaseFail[k]
			if firstErr[k] == "" {
				firstErr[k] = phaseErr[k]
			}
		}
		res.PhaseSeconds = phase.Seconds()
		res.Rounds = rounds
	}
	whole := time.Since(start)
	res.IdPDiscoveryAll = idp.Requests(testidp.PathDiscovery)
	res.IdPJWKSAll = idp.Requests(testidp.PathJWKS)
	res.IdPBoundAll = 1 + int(whole/refresh)
	res.TotalSeconds = whole.Seconds()

	log := c.Log()
	// Every refusal logs "Reason: <code>." once, on 18 in oauth_jwt's own
	// entry and on 19 in the server's failure entry (error_detail).
	for r, n := range loadkit.Reasons(log) {
		if r != "ok" {
			res.Rejections += n
		}
	}
	res.Crashes = watch.Check(t)
	res.PostmasterSame = loadkit.PostmasterPID(t, c) == watch.PID()
	fmt.Fprintf(&table, "\nMixed run: %.0f s, %d logins (%.1f/s); peak %d client backends; identity provider: %d discovery, %d JWKS requests (bound %d each: cold start + one per %v).\n",
		elapsed.Seconds(), total, res.TotalPerSec, peak, res.IdPDiscovery, res.IdPJWKS, res.IdPBound, refresh)
	fmt.Fprintf(&table, "Whole test: %.0f s; identity provider: %d discovery, %d JWKS requests (bound %d each).\n",
		res.TotalSeconds, res.IdPDiscoveryAll, res.IdPJWKSAll, res.IdPBoundAll)
	t.Logf("\n%s", table.String())
	loadkit.WriteJSON(t, "OJW_LOAD_OUT", res)

	for _, k := range kindOrder {
		if failures[k] > 0 {
			t.Errorf("%s: %d failed logins (first: %s)", k, failures[k], firstErr[k])
		}
		if len(samples[k]) == 0 {
			t.Errorf("%s: no successful login at all", k)
		}
	}
	if res.Rejections > 0 {
		t.Errorf("oauth_jwt rejected %d logins under load: %s", res.Rejections, loadkit.ReasonsString(loadkit.Reasons(log)))
	}
	if bad := loadkit.LinesWith(log, "internal error in OAuth validator module"); len(bad) > 0 {
		t.Errorf("%d internal errors under load, first: %s", len(bad), bad[0])
	}
	if res.IdPDiscovery < 1 || res.IdPDiscovery > res.IdPBound || res.IdPJWKS < 1 || res.IdPJWKS > res.IdPBound {
		t.Errorf("identity provider saw %d discovery and %d JWKS requests in the mixed run (%v), want 1..%d each",
			res.IdPDiscovery, res.IdPJWKS, elapsed.Round(time.Second), res.IdPBound)
	}
	if res.IdPDiscoveryAll > res.IdPBoundAll || res.IdPJWKSAll > res.IdPBoundAll {
		t.Errorf("identity provider saw %d discovery and %d JWKS requests in the whole test (%v), want at most %d each",
			res.IdPDiscoveryAll, res.IdPJWKSAll, whole.Round(time.Second), res.IdPBoundAll)
	}
	if peak < clients {
		t.Logf("note: at most %d client backends were seen at once (%d clients)", peak, clients+2*peers)
	}
}

// latencies are the login latencies of ss.
func latencies(ss []sample) []time.Duration {
	lat := make([]time.Duration, len(ss))
	for i, s := range ss {
		lat[i] = s.lat
	}
	return lat
}

// kindResult summarises the logins of one kind.
func kindResult(name string, clients int, lat []time.Duration, failures int, firstErr string, elapsed time.Duration) results.Kind {
	lat = loadkit.Sorted(lat)
	kr := results.Kind{Name: name, Clients: clients, Logins: len(lat), Failures: failures,
		PerSec: float64(len(lat)) / elapsed.Seconds(),
		P50ms:  loadkit.Ms(loadkit.Quantile(lat, 0.5)), P90ms: loadkit.Ms(loadkit.Quantile(lat, 0.9)),
		P99ms: loadkit.Ms(loadkit.Quantile(lat, 0.99)), MaxMs: loadkit.Ms(loadkit.Quantile(lat, 1)),
		FirstError: firstErr}
	for q := 1; q <= 200; q++ {
		kr.CDF = append(kr.CDF, loadkit.Ms(loadkit.Quantile(lat, float64(q)/200)))
	}
	return kr
}

func tableHead(b *strings.Builder) {
	fmt.Fprintf(b, "| login | clients | logins | failed | conn/s | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|---|\n")
}

func tableRow(b *strings.Builder, kr results.Kind) {
	fmt.Fprintf(b, "| %s | %d | %d | %d | %.1f | %.2f | %.2f | %.2f | %.2f |\n",
		kr.Name, kr.Clients, kr.Logins, kr.Failures, kr.PerSec, kr.P50ms, kr.P90ms, kr.P99ms, kr.MaxMs)
}

// client is one looping client of a kind.
type client struct {
	kind, role string
	cfg        *pgx.ConnConfig
}

// churnRun is what churn measured.
type churnRun struct {
	samples  map[string][]sample
	failures map[string]int
	firstErr map[string]string
	elapsed  time.Duration
}

// churn runs every client in a loop (connect, select current_user,
// disconnect) for dur and records each login.
func churn(ctx context.Context, all []client, dur time.Duration) churnRun {
	var mu sync.Mutex
	r := churnRun{samples: map[string][]sample{}, failures: map[string]int{}, firstErr: map[string]string{}}
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for _, cl := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				conn, err := pgx.ConnectConfig(ctx, cl.cfg)
				lat := time.Since(t0)
				if err == nil {
					var who string
					if err = conn.QueryRow(ctx, "select current_user").Scan(&who); err == nil && who != cl.role {
						err = fmt.Errorf("logged in as %q, want %q", who, cl.role)
					}
					conn.Close(ctx)
				}
				mu.Lock()
				if err != nil {
					r.failures[cl.kind]++
					if r.firstErr[cl.kind] == "" {
						r.firstErr[cl.kind] = err.Error()
					}
				} else {
					r.samples[cl.kind] = append(r.samples[cl.kind], sample{time.Since(start), lat})
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r
}

// timeline buckets the samples by second: logins finished and median
// latency per kind.
func timeline(samples map[string][]sample, elapsed time.Duration) []results.Second {
	n := int(elapsed/time.Second) + 1
	out := make([]results.Second, n)
	lats := make([]map[string][]time.Duration, n)
	for i := range out {
		out[i] = results.Second{T: i, Logins: map[string]int{}, P50ms: map[string]float64{}}
		lats[i] = map[string][]time.Duration{}
	}
	for k, ss := range samples {
		for _, s := range ss {
			i := min(int(s.at/time.Second), n-1)
			out[i].Logins[k]++
			lats[i][k] = append(lats[i][k], s.lat)
		}
	}
	for i := range out {
		for k, l := range lats[i] {
			sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
			out[i].P50ms[k] = loadkit.Ms(loadkit.Quantile(l, 0.5))
		}
	}
	return out
}
