package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// BenchmarkIntrospectionLogin measures what introspection = always adds to
// a login, against a local introspection endpoint (the test IdP on
// loopback), interleaved round-robin with a plain warm-cache login. The
// kinds: offline (introspection off, warm key cache: the baseline);
// always with a cached answer (introspection_cache_ttl 600, so after the
// first login every answer is a file read); always uncached (ttl 0, so
// every login starts the fetch helper, which POSTs to the endpoint).
//
//	OJW_BENCH_CONNECTIONS=200 OJW_PG_CONFIG=... OJW_BUILD_DIR=$PWD/build \
//	  go test -count=1 -run '^$' -bench IntrospectionLogin -benchtime 1x -v ./test/integration/
func BenchmarkIntrospectionLogin(b *testing.B) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("OJW_BENCH_CONNECTIONS")); err == nil && v > 0 {
		n = v
	}
	const secret = "bench-introspection-secret"
	idps := make([]*testidp.IdP, 3)
	for i := range idps {
		idps[i] = startIdP(b, testidp.Options{Realm: fmt.Sprintf("/realms/bench%d", i)})
		idps[i].SetIntrospectionClient("pg", secret)
	}
	c := pgtest.New(b, pgtest.Options{Production: true, Conf: []string{"log_connections = ''"}})
	secretFile := filepath.Join(c.Dir, "secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		b.Fatal(err)
	}
	chown(b, secretFile)
	section := func(p *testidp.IdP, ttl string) string {
		return fmt.Sprintf("[%s]\naudience = %s\nintrospection = always\nintrospection_endpoint = %s\n"+
			"introspection_client_id = pg\nintrospection_secret_file = %s\nintrospection_cache_ttl = %s\n",
			p.Issuer(), testAudience, p.IntrospectionURL(), secretFile, ttl)
	}
	issuers := filepath.Join(c.Dir, "issuers.conf")
	if err := os.WriteFile(issuers, []byte(section(idps[1], "600")+section(idps[2], "0")), 0o600); err != nil {
		b.Fatal(err)
	}
	chown(b, issuers)
	c.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on", "oauth_jwt.issuer_config": quote(issuers)}))
	users := []string{"bench_offline", "bench_cached", "bench_uncached"}
	var hba []string
	for i, u := range users {
		hba = append(hba, fmt.Sprintf(`host all %s 127.0.0.1/32 oauth issuer="%s" scope="openid" delegate_ident_mapping=1`, u, idps[i].Issuer()))
		c.Exec("create role " + u + " login")
	}
	c.SetHBA(hba...)
	kinds := []string{"offline (introspection off)", "always, cached answer", "always, uncached (ttl 0)"}
	cfgs := make([]*pgx.ConnConfig, len(users))
	for i, u := range users {
		tok, err := idps[i].Mint(map[string]any{"sub": u, "aud": testAudience, "azp": "psql", "scope": "openid",
			"exp": time.Now().Add(time.Hour).Unix()})
		if err != nil {
			b.Fatal(err)
		}
		cfgs[i] = c.OAuthConfig(u, tok)
	}
	ctx := context.Background()
	for i, cfg := range cfgs { // warm the key caches and the cached answer
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			b.Fatalf("%s: %v\n%s", kinds[i], err, c.LogTail(10))
		}
		conn.Close(ctx)
	}
	for _, p := range idps {
		p.ResetCounts()
	}
	// Each round in a shuffled order, each login after the previous
	// backend has exited (as BenchmarkConnectionLatency does): no
	// configuration pays for another's exit or always follows the same one.
	_, rng := benchSeed(b, "OJW_BENCH_SEED")
	order := make([]int, len(cfgs))
	for j := range order {
		order[j] = j
	}
	lat := make([][]time.Duration, len(cfgs))
	b.ResetTimer()
	for i := 0; i < n; i++ {
		rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for _, j := range order {
			start := time.Now()
			conn, err := pgx.ConnectConfig(ctx, cfgs[j])
			d := time.Since(start)
			if err != nil {
				b.Fatalf("%s login %d: %v", kinds[j], i, err)
			}
			pid := int(conn.PgConn().PID())
			conn.Close(ctx)
			waitExit(b, pid)
			lat[j] = append(lat[j], d)
		}
	}
	b.StopTimer()
	var table strings.Builder
	fmt.Fprintf(&table, "| login | p50 ms | p99 ms | p50 vs offline | introspection requests |\n|---|---|---|---|---|\n")
	var base time.Duration
	for j := range cfgs {
		s := lat[j]
		s = loadkit.Sorted(s)
		q50, q99 := loadkit.Quantile(s, 0.5), loadkit.Quantile(s, 0.99)
		if j == 0 {
			base = q50
		}
		reqs := idps[j].Requests(testidp.PathIntrospect)
		fmt.Fprintf(&table, "| %s | %.2f | %.2f | %.2f× | %d |\n", kinds[j], ms(q50), ms(q99), float64(q50)/float64(base), reqs)
		metric := []string{"offline", "cached", "uncached"}[j]
		b.ReportMetric(ms(q50), metric+"_p50_ms")
		b.ReportMetric(ms(q99), metric+"_p99_ms")
	}
	fmt.Fprintf(&table, "\n%d logins per kind, interleaved, production build, loopback endpoint.\n", n)
	b.Logf("\n%s", table.String())
}
