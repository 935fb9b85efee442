package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
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
	rounds := 200
	if v, err := strconv.Atoi(os.Getenv("OJW_AB_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("OJW_AB_SEED"), 10, 64); err == nil {
		seed = v
	}
	type entry struct{ label, lib string }
	var entries []entry
	labelOK := regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)
	for _, kv := range strings.Split(spec, ",") {
		label, path, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || !labelOK.MatchString(label) {
			b.Fatalf("OJW_AB_MODULES: %q is not label=path with a lowercase label", kv)
		}
		entries = append(entries, entry{label, path})
	}

	idp := startIdP(b, testidp.Options{})
	libs := []string{"oauth_noop"}
	for _, e := range entries {
		libs = append(libs, "ab_"+e.label)
	}
	c := pgtest.New(b, pgtest.Options{Production: true, NoStart: true, Conf: []string{
		fmt.Sprintf("oauth_validator_libraries = '%s'", strings.Join(libs, ", ")),
		"log_connections = ''",
	}})
	libDir := filepath.Join(c.Dir, "lib")
	st, err := os.Stat(libDir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(e.lib)
		if err != nil {
			b.Fatal(err)
		}
		to := filepath.Join(libDir, "ab_"+e.label+".so")
		if err := os.WriteFile(to, data, 0o755); err != nil {
			b.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if err := os.Chown(to, int(sys.Uid), int(sys.Gid)); err != nil {
			b.Fatal(err)
		}
	}
	c.Start()
	c.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on"}))
	iss := idp.Issuer()
	hba := []string{fmt.Sprintf(`host all ab_noop 127.0.0.1/32 oauth issuer="%s" scope="openid" validator=oauth_noop delegate_ident_mapping=1`, iss)}
	roles := []string{"create role ab_noop login"}
	for _, e := range entries {
		hba = append(hba, fmt.Sprintf(`host all ab_%s 127.0.0.1/32 oauth issuer="%s" scope="openid" validator=ab_%s delegate_ident_mapping=1`, e.label, iss, e.label))
		roles = append(roles, "create role ab_"+e.label+" login")
	}
	c.SetHBA(hba...)
	c.Exec(roles...)

	type kind struct {
		label  string
		cfg    *pgx.ConnConfig
		lat    []time.Duration
		faults []int // the backend's minor page faults by the end of its login
	}
	var kinds []*kind
	for _, l := range append([]string{"noop"}, func() []string {
		var ls []string
		for _, e := range entries {
			ls = append(ls, e.label)
		}
		return ls
	}()...) {
		user := "ab_" + l
		tok, err := idp.Mint(map[string]any{"sub": user, "aud": testAudience, "azp": "psql", "scope": "openid",
			"exp": time.Now().Add(time.Hour).Unix()})
		if err != nil {
			b.Fatal(err)
		}
		kinds = append(kinds, &kind{label: l, cfg: c.OAuthConfig(user, tok)})
	}
	ctx := context.Background()
	login := func(k *kind) time.Duration {
		start := time.Now()
		conn, err := pgx.ConnectConfig(ctx, k.cfg)
		d := time.Since(start)
		if err != nil {
			b.Fatalf("%s: %v\n%s", k.label, err, c.LogTail(10))
		}
		pid := int(conn.PgConn().PID())
		if f, err := minorFaults(pid); err == nil {
			k.faults = append(k.faults, f)
		}
		conn.Close(ctx)
		// Not timed: the backend has exited and been reaped before the next
		// login starts, so no login pays for another's exit.
		if err := loadkit.WaitExit(pid, 30*time.Second); err != nil {
			b.Fatalf("%s: %v", k.label, err)
		}
		return d
	}
	for _, k := range kinds { // warm up: fills the key cache
		login(k)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
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
	p := func(s []time.Duration, q int) time.Duration { return s[len(s)*q/100] }
	for _, k := range kinds {
		sort.Slice(k.lat, func(a, b int) bool { return k.lat[a] < k.lat[b] })
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

// minorFaults reads a process's minor page faults from /proc/<pid>/stat
// (field 10; the command name before it may hold spaces, so count from ")").
func minorFaults(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 8 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return strconv.Atoi(f[7])
}
