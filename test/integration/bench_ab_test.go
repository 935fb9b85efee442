package integration

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// BenchmarkLoginAB compares builds of the module side by side on one server:
// the way each knob of issue 15 was kept or dropped (docs/benchmarks.md,
// "Paired runs"). OJW_AB_MODULES lists label=path pairs, each a validator
// library (oauth_jwt or the Go no-op, built any way); each gets its own
// pg_hba line, and the C no-op validator is always added as the reference.
// Every round logs in once to each library, in an order shuffled per round,
// and each login waits for the previous backend to be gone (a Go backend's
// exit was measured to slow whichever login starts next), so drift and
// neighbours affect all alike. OJW_AB_ROUNDS sets the rounds
// (default 200), OJW_AB_SEED the shuffle's seed (default: time; logged),
// OJW_AB_LOG a file to keep the server log in.
//
//	OJW_AB_MODULES="base=/tmp/a/oauth_jwt.so,new=build/18/oauth_jwt.so" \
//	  OJW_PG_CONFIG=... OJW_BUILD_DIR=$PWD/build/18 \
//	  go test -run '^$' -bench LoginAB -benchtime 1x -v ./test/integration/
func BenchmarkLoginAB(b *testing.B) {
	spec := os.Getenv("OJW_AB_MODULES")
	if spec == "" {
		b.Fatal("OJW_AB_MODULES is empty: give label=path.so pairs, comma-separated (see the comment above BenchmarkLoginAB)")
	}
	rounds := loadkit.EnvInt("OJW_AB_ROUNDS", 200)
	seed, rng := benchSeed(b, "OJW_AB_SEED")
	// The C no-op is the first kind, the reference; each library is loaded as
	// ab_<label> and logged in to as the role of that name.
	labels := []string{"noop"}
	validators := []string{"oauth_noop"}
	libs := map[string]string{}
	labelOK := regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)
	for _, kv := range strings.Split(spec, ",") {
		label, path, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || !labelOK.MatchString(label) || label == "noop" {
			b.Fatalf("OJW_AB_MODULES: %q is not label=path with a lowercase label other than noop", kv)
		}
		labels, validators = append(labels, label), append(validators, "ab_"+label)
		libs["ab_"+label+".so"] = path
	}

	idp := startIdP(b, testidp.Options{})
	c := pgtest.New(b, pgtest.Options{Production: true, Libraries: libs, Conf: []string{
		fmt.Sprintf("oauth_validator_libraries = '%s'", strings.Join(validators, ", ")),
		"log_connections = ''",
	}})
	c.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on"}))
	type kind struct {
		label  string
		cfg    *pgx.ConnConfig
		lat    []time.Duration
		faults []int // the backend's minor page faults by the end of its login
	}
	var kinds []*kind
	var hba, roles []string
	for i, l := range labels {
		user := "ab_" + l
		hba = append(hba, fmt.Sprintf(`host all %s 127.0.0.1/32 oauth issuer="%s" scope="openid" validator=%s delegate_ident_mapping=1`,
			user, idp.Issuer(), validators[i]))
		roles = append(roles, "create role "+user+" login")
		tok, err := idp.Mint(map[string]any{"sub": user, "aud": testAudience, "azp": "psql", "scope": "openid",
			"exp": time.Now().Add(time.Hour).Unix()})
		if err != nil {
			b.Fatal(err)
		}
		kinds = append(kinds, &kind{label: l, cfg: c.OAuthConfig(user, tok)})
	}
	c.SetHBA(hba...)
	c.Exec(roles...)
	ctx := context.Background()
	login := func(k *kind) time.Duration {
		start := time.Now()
		conn, err := pgx.ConnectConfig(ctx, k.cfg)
		d := time.Since(start)
		if err != nil {
			b.Fatalf("%s: %v\n%s", k.label, err, c.LogTail(10))
		}
		pid := int(conn.PgConn().PID())
		if f, err := loadkit.MinorFaults(pid); err == nil {
			k.faults = append(k.faults, f)
		}
		conn.Close(ctx)
		// Not timed: the backend has exited and been reaped before the next
		// login starts, so no login pays for another's exit.
		waitExit(b, pid)
		return d
	}
	for _, k := range kinds { // warm up: fills the key cache
		login(k)
	}
	order := make([]*kind, len(kinds))
	copy(order, kinds)
	b.ResetTimer()
	for i := 0; i < rounds; i++ {
		rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for _, k := range order {
			k.lat = append(k.lat, login(k))
		}
	}
	b.StopTimer()
	// The quantiles as every benchmark takes them (nearest rank).
	p := func(s []time.Duration, q int) time.Duration { return loadkit.Quantile(s, float64(q)/100) }
	for _, k := range kinds {
		k.lat = loadkit.Sorted(k.lat)
	}
	ref := p(kinds[0].lat, 50)
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%d rounds, shuffled order (OJW_AB_SEED=%d)\n| library | p50 ms | p99 ms | p50 / C no-op | minor faults (median) |\n|---|---|---|---|---|\n", rounds, seed)
	for _, k := range kinds {
		q50, q99 := p(k.lat, 50), p(k.lat, 99)
		sort.Ints(k.faults)
		faults := -1
		if len(k.faults) > 0 {
			faults = k.faults[len(k.faults)/2]
		}
		fmt.Fprintf(&sb, "| %s | %.3f | %.3f | %.3f | %d |\n", k.label, ms(q50), ms(q99), float64(q50)/float64(ref), faults)
		b.ReportMetric(float64(q50)/float64(ref), k.label+"/noop_p50")
	}
	b.Log(sb.String())
	if keep := os.Getenv("OJW_AB_LOG"); keep != "" { // e.g. a build with inittrace=1 in godebugDefault
		if err := os.WriteFile(keep, []byte(c.Log()), 0o644); err != nil {
			b.Error(err)
		}
	}
}
