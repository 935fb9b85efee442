package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/results"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// BenchmarkConnectionLatency measures the cost of a login, in one run so
// that machine drift hits every kind alike: trust, scram-sha-256, OAuth
// with the no-op C validator (the floor), OAuth with the same C shim over a
// Go archive that judges nothing (what the Go runtime alone costs), and
// OAuth with oauth_jwt (production build, warm key cache). It reports, per
// kind: the p50 and p99 latency one login at a time (n rounds of one login
// of each kind, each round in its own shuffled order); the throughput, in
// logins per second with OJW_BENCH_CLIENTS (16) concurrent clients of that
// kind (rounds of a fixed number of logins per kind, each round in its own
// shuffled order); the ratios of both to the C no-op's and to the Go
// no-op's; and the backend's private dirty memory and thread count (a
// warm-cache login, 200 ms after it settled). It also reports how many
// requests reached the identity provider during the timed runs.
//
//	make bench   (or: go test -run '^$' -bench ConnectionLatency -benchtime 1x -v ./test/integration/)
//
// Environment: OJW_BENCH_CONNECTIONS, the logins per kind one at a time
// (default 200; make bench: 300); OJW_BENCH_THROUGHPUT_LOGINS, the logins
// per kind in the throughput runs (default 5000), split into
// OJW_BENCH_THROUGHPUT_ROUNDS rounds (default 5); OJW_BENCH_CLIENTS, the
// concurrent clients of the throughput runs (default 16); OJW_BENCH_SEED,
// the seed of the shuffles (default: from the clock; the benchmark logs it,
// so that a run's order can be repeated). With OJW_BENCH_OUT set, the
// figures are written there as JSON (results.Bench, for scripts/report.sh).
//
// Fairness. A backend's exit costs CPU after the client has closed the
// connection (a Go backend's was measured to add 60–80 µs to whichever
// login starts next), so in a fixed order the kind after the Go kinds paid
// for them. Each login one at a time therefore starts only once the
// previous login's backend has exited and been reaped by the postmaster
// (loadkit.WaitExit): its /proc entry, found from the pid the server sends
// at login (pgconn's PID, no query needed), is gone. Polling /proc is a
// stat every 100 µs from the client, next to nothing for the server, while
// polling pg_stat_activity would itself be a query on a backend, and a
// pidfd only says the process exited, not that the postmaster has reaped
// it. (The memory samples read the backends' /proc entries first, so a
// /proc that hid the server's processes would fail the benchmark rather
// than turn the wait into a no-op.) The wait is outside the timed part.
// Shuffling each round as well removes what an order may still favour
// (caches warmed by the kind before); shuffling alone would not be enough, since with two Go kinds
// among five a non-Go kind follows a Go kind more often than a Go kind
// does. A throughput run likewise ends when its last backend has exited
// (loadkit.Logins), so that it pays for its own exits and the next run
// starts on an idle server.
func BenchmarkConnectionLatency(b *testing.B) {
	n := loadkit.EnvInt("OJW_BENCH_CONNECTIONS", 200)
	tpLogins := loadkit.EnvInt("OJW_BENCH_THROUGHPUT_LOGINS", 5000)
	tpRounds := min(loadkit.EnvInt("OJW_BENCH_THROUGHPUT_ROUNDS", 5), tpLogins)
	clients := loadkit.EnvInt("OJW_BENCH_CLIENTS", 16)
	seed, rng := benchSeed(b, "OJW_BENCH_SEED")

	idp := startIdP(b, testidp.Options{})
	c := pgtest.New(b, pgtest.Options{Production: true, Conf: []string{
		"oauth_validator_libraries = 'oauth_jwt, oauth_noop, oauth_gonoop'",
		"log_connections = ''",
		"password_encryption = 'scram-sha-256'",
		// Each client's backend may still be exiting while its next one
		// starts: room for a few generations of every client.
		fmt.Sprintf("max_connections = %d", max(300, 4*clients+20)),
	}})
	c.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on"}))
	iss := idp.Issuer()
	// pg_hba matches by user: give each kind its own line.
	c.SetHBA(
		"host all bench_trust 127.0.0.1/32 trust",
		"host all bench_scram 127.0.0.1/32 scram-sha-256",
		fmt.Sprintf(`host all bench_noop 127.0.0.1/32 oauth issuer="%s" scope="openid" validator=oauth_noop delegate_ident_mapping=1`, iss),
		fmt.Sprintf(`host all bench_gonoop 127.0.0.1/32 oauth issuer="%s" scope="openid" validator=oauth_gonoop delegate_ident_mapping=1`, iss),
		fmt.Sprintf(`host all bench_jwt 127.0.0.1/32 oauth issuer="%s" scope="openid" validator=oauth_jwt delegate_ident_mapping=1`, iss),
	)
	c.Exec("create role bench_trust login", "create role bench_scram login password 'bench-password'",
		"create role bench_noop login", "create role bench_gonoop login", "create role bench_jwt login")

	tok, err := idp.Mint(map[string]any{"sub": "bench_jwt", "aud": testAudience, "azp": "psql", "scope": "openid",
		"exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		b.Fatal(err)
	}
	kinds := []struct {
		name string
		cfg  *pgx.ConnConfig
	}{
		{results.KindTrust, tcpConfig(b, c, "bench_trust", "")},
		{results.KindScram, tcpConfig(b, c, "bench_scram", "bench-password")},
		{results.KindNoop, c.OAuthConfig("bench_noop", "opaque-token")},
		{results.KindGoNoop, c.OAuthConfig("bench_gonoop", "opaque-token")},
		{results.KindJWT, c.OAuthConfig("bench_jwt", tok)},
	}
	ctx := context.Background()

	// Warm up every kind once (this fills oauth_jwt's key cache), then hold
	// memSamples more connections of each kind open (warm-cache logins, the
	// normal case) and report the median backend's memory once settled.
	const memSamples = 5
	mem := map[string]results.ProcSample{}
	for _, k := range kinds {
		warm, err := pgx.ConnectConfig(ctx, k.cfg)
		if err != nil {
			b.Fatalf("%s: %v\n%s", k.name, err, c.LogTail(10))
		}
		warm.Close(ctx)
		var held []*pgx.Conn
		var pids []int
		for i := 0; i < memSamples; i++ {
			conn, err := pgx.ConnectConfig(ctx, k.cfg)
			if err != nil {
				b.Fatalf("%s: %v", k.name, err)
			}
			held, pids = append(held, conn), append(pids, int(conn.PgConn().PID()))
		}
		time.Sleep(200 * time.Millisecond)
		mem[k.name] = medianMemory(b, pids)
		for _, conn := range held {
			conn.Close(ctx)
		}
		for _, pid := range pids {
			waitExit(b, pid)
		}
	}

	idp.ResetCounts()
	order := make([]int, len(kinds))
	for j := range order {
		order[j] = j
	}
	shuffle := func() {
		rng.Shuffle(len(order), func(x, y int) { order[x], order[y] = order[y], order[x] })
	}
	lat := make([][]time.Duration, len(kinds))
	b.ResetTimer()
	for i := 0; i < n; i++ {
		shuffle()
		for _, j := range order {
			k := kinds[j]
			start := time.Now()
			conn, err := pgx.ConnectConfig(ctx, k.cfg)
			d := time.Since(start)
			if err != nil {
				b.Fatalf("%s login %d: %v", k.name, i, err)
			}
			pid := int(conn.PgConn().PID())
			conn.Close(ctx)
			lat[j] = append(lat[j], d)
			waitExit(b, pid)
		}
	}

	// Throughput: tpRounds rounds, each running every kind once in its
	// own shuffled order, a kind's share of the logins split evenly.
	tpTime := make([]time.Duration, len(kinds))
	tpDone := make([]int, len(kinds))
	for r := 0; r < tpRounds; r++ {
		shuffle()
		logins := tpLogins/tpRounds + btoi(r < tpLogins%tpRounds)
		for _, j := range order {
			d, err := loadkit.Logins(ctx, kinds[j].cfg, clients, logins)
			if err != nil {
				b.Fatalf("%s, throughput round %d: %v\n%s", kinds[j].name, r, err, c.LogTail(10))
			}
			tpTime[j] += d
			tpDone[j] += logins
		}
	}
	b.StopTimer()
	idpRequests := idp.Requests(testidp.PathDiscovery) + idp.Requests(testidp.PathJWKS)

	res := results.Bench{Connections: n, MemSamples: memSamples, IdPRequests: idpRequests, Seed: seed,
		Clients: clients, ThroughputLogins: tpLogins, ThroughputRounds: tpRounds}
	for j, k := range kinds {
		s := loadkit.Sorted(lat[j])
		res.Kinds = append(res.Kinds, results.BenchKind{Name: k.name,
			P50ms: ms(loadkit.Quantile(s, 0.5)), P99ms: ms(loadkit.Quantile(s, 0.99)),
			LoginsPerS:     float64(tpDone[j]) / tpTime[j].Seconds(),
			PrivateDirtyKB: mem[k.name].PrivateDirtyKB, Threads: mem[k.name].Threads})
	}
	res.SetRatios()
	for _, k := range res.Kinds {
		metric := strings.NewReplacer(" ", "_", "(", "", ")", "", "-", "_").Replace(k.Name)
		b.ReportMetric(k.P50ms, metric+"_p50_ms")
		b.ReportMetric(k.P99ms, metric+"_p99_ms")
		b.ReportMetric(k.LoginsPerS, metric+"_logins/s")
		if k.Name == results.KindJWT {
			b.ReportMetric(k.VsNoop, "jwt/noop_p50")
			b.ReportMetric(k.VsGoNoop, "jwt/gonoop_p50")
			b.ReportMetric(k.RateVsNoop, "jwt/noop_logins/s")
			b.ReportMetric(k.RateVsGoNoop, "jwt/gonoop_logins/s")
		}
	}
	b.ReportMetric(float64(idpRequests), "idp_requests")
	b.Logf("\n%s", res.Markdown())
	if out := os.Getenv("OJW_BENCH_OUT"); out != "" {
		if err := results.Write(out, res); err != nil {
			b.Error(err)
		}
	}
}

// benchSeed is the seed of a benchmark's shuffles: from the environment
// variable env, or the clock; logged, so that a run's order can be repeated.
func benchSeed(b testing.TB, env string) (uint64, *rand.Rand) {
	b.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(env); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			b.Fatalf("%s=%q: %v", env, v, err)
		}
	}
	b.Logf("%s=%d (set it to repeat this run's order)", env, seed)
	return seed, rand.New(rand.NewPCG(seed, 0))
}

// waitExit waits until backend pid has exited (see BenchmarkConnectionLatency).
func waitExit(b testing.TB, pid int) {
	b.Helper()
	if err := loadkit.WaitExit(pid, 30*time.Second); err != nil {
		b.Fatalf("backend exit: %v", err)
	}
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// tcpConfig is a password (or trust) login over TCP.
func tcpConfig(b testing.TB, c *pgtest.Cluster, user, password string) *pgx.ConnConfig {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable", c.Port, user))
	if err != nil {
		b.Fatal(err)
	}
	cfg.Password = password
	return cfg
}

// medianMemory is what /proc says about the backend with the median
// private dirty memory among pids.
func medianMemory(t testing.TB, pids []int) results.ProcSample {
	t.Helper()
	var ss []results.ProcSample
	for _, pid := range pids {
		s, err := loadkit.SampleProc(pid)
		if err != nil {
			t.Fatalf("backend %d: %v", pid, err)
		}
		ss = append(ss, s)
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].PrivateDirtyKB < ss[j].PrivateDirtyKB })
	return ss[len(ss)/2]
}

// BenchmarkColdCacheLogin measures what a login costs when the key cache
// must be filled first: the backend starts oauth_jwt_fetch, which fetches
// the discovery document and the JWKS (loopback, plain http), and the
// backend then judges from the cache. Cold and warm logins alternate in one
// run (the cache files are deleted before each cold one), so the figure is
// the price of a fetch as a login sees it: once per issuer per
// cache_refresh_interval for the whole server, or after an unknown kid.
//
//	go test -run '^$' -bench ColdCacheLogin -benchtime 1x -v ./test/integration/
//
// OJW_BENCH_CONNECTIONS sets the logins per kind (default 200; 50 is plenty).
func BenchmarkColdCacheLogin(b *testing.B) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("OJW_BENCH_CONNECTIONS")); err == nil && v > 0 {
		n = v
	}
	idp := startIdP(b, testidp.Options{})
	c := pgtest.New(b, pgtest.Options{Production: true, Conf: []string{"log_connections = ''"}})
	c.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on"}))
	c.SetHBA(hbaOAuth(idp.Issuer(), "delegate_ident_mapping=1"))
	c.Exec("create role bench_jwt login")
	tok, err := idp.Mint(map[string]any{"sub": "bench_jwt", "aud": testAudience, "azp": "psql", "scope": "openid",
		"exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		b.Fatal(err)
	}
	cfg := c.OAuthConfig("bench_jwt", tok)
	cacheDir := filepath.Join(c.Data, "oauth_jwt_cache")
	ctx := context.Background()
	login := func() time.Duration {
		start := time.Now()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		d := time.Since(start)
		if err != nil {
			b.Fatalf("login: %v\n%s", err, c.LogTail(10))
		}
		pid := int(conn.PgConn().PID())
		conn.Close(ctx)
		waitExit(b, pid) // not timed: the next login does not pay for this exit
		return d
	}
	login() // the cache directory exists from here on
	idp.ResetCounts()
	var cold, warm []time.Duration
	b.ResetTimer()
	for i := 0; i < n; i++ {
		entries, err := filepath.Glob(filepath.Join(cacheDir, "*.json"))
		if err != nil || len(entries) != 2 {
			b.Fatalf("cache entries before cold login %d: %v %v", i, entries, err)
		}
		for _, e := range entries {
			if err := os.Remove(e); err != nil {
				b.Fatal(err)
			}
		}
		cold = append(cold, login())
		warm = append(warm, login())
	}
	b.StopTimer()
	disc, jwks := idp.Requests(testidp.PathDiscovery), idp.Requests(testidp.PathJWKS)
	if disc != n || jwks != n {
		b.Errorf("%d cold logins made %d discovery and %d JWKS requests, want %d each", n, disc, jwks, n)
	}
	cold, warm = loadkit.Sorted(cold), loadkit.Sorted(warm)
	c50, w50 := loadkit.Quantile(cold, 0.5), loadkit.Quantile(warm, 0.5)
	c99, w99 := loadkit.Quantile(cold, 0.99), loadkit.Quantile(warm, 0.99)
	b.ReportMetric(ms(c50), "cold_p50_ms")
	b.ReportMetric(ms(c99), "cold_p99_ms")
	b.ReportMetric(ms(w50), "warm_p50_ms")
	b.Logf("\n| login | p50 ms | p99 ms |\n|---|---|---|\n| oauth_jwt, cold key cache (helper fetches) | %.2f | %.2f |\n| oauth_jwt, warm key cache | %.2f | %.2f |\n\n%d of each, alternating; a fetch adds %.2f ms at p50; identity provider: %d discovery, %d JWKS requests.\n",
		ms(c50), ms(c99), ms(w50), ms(w99), n, ms(c50-w50), disc, jwks)
}
