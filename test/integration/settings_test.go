package integration

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/validator"
)

// loaded opens a superuser session that has loaded oauth_jwt, so that its
// settings are real ones with bounds and check hooks (elsewhere they are
// placeholders until a login loads the library).
func loaded(t *testing.T, ctx context.Context, c *pgtest.Cluster) *pgx.Conn {
	t.Helper()
	conn := c.Admin(ctx)
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "load 'oauth_jwt'"); err != nil {
		t.Fatalf("load 'oauth_jwt': %v", err)
	}
	return conn
}

// The integer bounds the shim gives the server are exactly those of Go's
// parser: a value the server accepts never fails every login, and one Go
// refuses is refused by the server.
func TestSettingBoundsAgreeWithGo(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	ctx := ctxT(t, 60*time.Second)
	conn := loaded(t, ctx, c)
	rows, err := conn.Query(ctx, "select name, min_val::bigint, max_val::bigint from pg_settings where name like 'oauth_jwt.%' and vartype = 'integer' order by name")
	if err != nil {
		t.Fatal(err)
	}
	type bound struct {
		Name     string
		Min, Max int64
	}
	bounds, err := pgx.CollectRows(rows, pgx.RowToStructByPos[bound])
	if err != nil {
		t.Fatal(err)
	}
	if len(bounds) < 5 {
		t.Fatalf("only %d integer oauth_jwt settings in pg_settings: %v", len(bounds), bounds)
	}
	for _, b := range bounds {
		for _, tc := range []struct {
			v  int64
			ok bool
		}{{b.Min - 1, false}, {b.Max + 1, false}, {b.Min, true}, {b.Max, true}} {
			err := validator.CheckSetting(b.Name, strconv.FormatInt(tc.v, 10))
			if (err == nil) != tc.ok {
				t.Errorf("%s = %d: the server's bounds are %d..%d, Go says %v", b.Name, tc.v, b.Min, b.Max, err)
			}
		}
	}
	t.Logf("%d integer settings, bounds checked against Go: %v", len(bounds), bounds)
}

// Values are checked when they are set, in a session that loaded the
// library: ALTER SYSTEM refuses what a login would refuse, with the
// server's usual error and Go's explanation as the detail.
func TestSettingsCheckedWhenSet(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	ctx := ctxT(t, 60*time.Second)
	conn := loaded(t, ctx, c)
	for _, tc := range []struct {
		name, sql, msg, detail string
	}{
		{"cache_max_stale zero", "alter system set oauth_jwt.cache_max_stale = 0",
			`0 s is outside the valid range for parameter "oauth_jwt.cache_max_stale"`, ""},
		{"http_timeout below 100 ms", "alter system set oauth_jwt.http_timeout = '50ms'",
			`outside the valid range for parameter "oauth_jwt.http_timeout"`, ""},
		{"symmetric algorithm", "alter system set oauth_jwt.allowed_algorithms = 'RS256, HS256'",
			`invalid value for parameter "oauth_jwt.allowed_algorithms": "RS256, HS256"`, "symmetric (HMAC)"},
		{"claim path with a wildcard", "alter system set oauth_jwt.authn_id_claim = 'groups.*'",
			`invalid value for parameter "oauth_jwt.authn_id_claim"`, "not supported"},
		{"role map without role", "alter system set oauth_jwt.role_map = 'dba='",
			`invalid value for parameter "oauth_jwt.role_map"`, "value=role pairs"},
		{"jwks_uri not a URL", "alter system set oauth_jwt.jwks_uri = 'keys.json'",
			`invalid value for parameter "oauth_jwt.jwks_uri"`, "https://"},
		{"proxy with credentials", "alter system set oauth_jwt.http_proxy = 'http://user:secret@proxy.example.com:3128'",
			`invalid value for parameter "oauth_jwt.http_proxy"`, "must not carry credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := conn.Exec(ctx, tc.sql)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				t.Fatalf("%s: %v, want an error", tc.sql, err)
			}
			if !strings.Contains(pe.Message, tc.msg) || !strings.Contains(pe.Detail, tc.detail) {
				t.Errorf("%s: %q (detail %q), want %q (detail with %q)", tc.sql, pe.Message, pe.Detail, tc.msg, tc.detail)
			}
		})
	}
	t.Run("valid values are taken", func(t *testing.T) {
		for _, sql := range []string{
			"alter system set oauth_jwt.cache_max_stale = '2h'",
			"alter system set oauth_jwt.allowed_algorithms = 'RS256, ES256'",
			"alter system set oauth_jwt.role_map = 'dba=reader'", // role_claim is checked with it at login
			"alter system set oauth_jwt.http_proxy = 'http://proxy.example.com:3128'",
			"alter system reset all",
		} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Errorf("%s: %v", sql, err)
			}
		}
	})
}

// A value in postgresql.conf cannot be refused at reload (the postmaster
// never loads the library): it is judged where a backend loads it. An
// integer out of the bounds is replaced by its default with the server's
// WARNING (so cache_max_stale = 0 no longer fails every login); a string
// Go refuses fails the logins with config_error (never a silent default,
// which could be weaker than what was written); a session that loaded the
// library sees both in pg_file_settings.
func TestInvalidSettingsInTheFile(t *testing.T) {
	e := newIdPEnv(t, "alice")
	ctx := ctxT(t, 60*time.Second)

	e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on", "oauth_jwt.cache_max_stale": "0"}))
	mark := e.PG.LogMark()
	e.mustLogin(t, ctx, "alice", e.token(t, "alice", nil)).Close(ctx)
	e.PG.WaitLog(mark, `0 s is outside the valid range for parameter "oauth_jwt.cache_max_stale" (1 s .. 604800 s)`)

	e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on", "oauth_jwt.allowed_algorithms": "'RS256, HS256'"}))
	mark = e.PG.LogMark()
	if conn, err := e.PG.ConnectOAuth(ctx, "alice", e.token(t, "alice", nil)); err == nil {
		conn.Close(ctx)
		t.Fatal("a login succeeded while allowed_algorithms names HS256")
	}
	e.PG.WaitLog(mark, `Invalid configuration for "oauth_jwt.allowed_algorithms": "HS256" is a symmetric`)

	conn := loaded(t, ctx, e.PG)
	var applied bool
	var errText *string
	if err := conn.QueryRow(ctx, "select applied, error from pg_file_settings where name = 'oauth_jwt.allowed_algorithms'").Scan(&applied, &errText); err != nil {
		t.Fatal(err)
	}
	if applied || errText == nil {
		t.Errorf("pg_file_settings: applied %v, error %v; want the line reported as not applied", applied, errText)
	}
}

// oauth_jwt.http_proxy is superuser-only: a role that logged in through
// OAuth (the session loaded the library) cannot read it.
func TestHTTPProxyHiddenFromOtherRoles(t *testing.T) {
	e := newIdPEnv(t, "alice")
	ctx := ctxT(t, 60*time.Second)
	conn := e.mustLogin(t, ctx, "alice", e.token(t, "alice", nil))
	for _, sql := range []string{"show oauth_jwt.http_proxy", "select current_setting('oauth_jwt.http_proxy')"} {
		_, err := conn.Exec(ctx, sql)
		if err == nil || !strings.Contains(err.Error(), `to examine "oauth_jwt.http_proxy"`) {
			t.Errorf("%s as alice: %v, want a permission error", sql, err)
		}
	}
	admin := loaded(t, ctx, e.PG)
	var v string
	if err := admin.QueryRow(ctx, "show oauth_jwt.http_proxy").Scan(&v); err != nil {
		t.Errorf("show oauth_jwt.http_proxy as a superuser: %v", err)
	}
}

// A build for another major loaded by mistake fails the server's magic
// check before _PG_init; the constructors have already run (the Go runtime
// started). The loading thread must have its signal mask back and its CPUs
// untouched, so the session can still be cancelled and timed out.
func TestWrongMajorLoadStaysCancellable(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	ctx := ctxT(t, 90*time.Second)
	trust := c.Admin(ctx)
	defer trust.Close(ctx)
	trustPID := backendPID(t, ctx, trust)
	wantMask := threadField(t, trustPID, "SigBlk")[trustPID]
	wantCPUs := threadField(t, trustPID, "Cpus_allowed_list")[trustPID]
	if !strings.ContainsAny(wantCPUs, ",-") {
		t.Fatalf("a backend may run on CPUs %q: this test needs at least 2 CPUs to show that the CPUs are restored", wantCPUs)
	}

	conn := c.Admin(ctx)
	defer conn.Close(ctx)
	pid := backendPID(t, ctx, conn)
	_, err := conn.Exec(ctx, "load 'oauth_jwt_badmagic'")
	if err == nil || !strings.Contains(err.Error(), "incompatible library") {
		t.Fatalf("load 'oauth_jwt_badmagic': %v, want an incompatible library error", err)
	}
	masks := threadField(t, pid, "SigBlk")
	if len(masks) < 2 {
		t.Fatalf("backend %d has %d thread(s): the library's constructors did not start the Go runtime, so this test proves nothing", pid, len(masks))
	}
	if masks[pid] != wantMask {
		t.Errorf("after the refused load, main thread SigBlk %s, a fresh backend's %s", masks[pid], wantMask)
	}
	if got := threadField(t, pid, "Cpus_allowed_list")[pid]; got != wantCPUs {
		t.Errorf("after the refused load, the main thread may run on CPUs %s, a fresh backend on %s", got, wantCPUs)
	}

	t.Run("statement_timeout", func(t *testing.T) {
		qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := conn.Exec(qctx, "set statement_timeout = '300ms'"); err != nil {
			t.Fatal(err)
		}
		_, err := conn.Exec(qctx, "select pg_sleep(10)")
		if err == nil || !strings.Contains(err.Error(), "statement timeout") {
			t.Errorf("pg_sleep(10) with statement_timeout 300ms: %v", err)
		}
		if _, err := conn.Exec(qctx, "reset statement_timeout"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("pg_cancel_backend", func(t *testing.T) {
		qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var qerr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, qerr = conn.Exec(qctx, "select pg_sleep(30)")
		}()
		for {
			var active bool
			if err := trust.QueryRow(qctx, "select state = 'active' and query like 'select pg_sleep(30)%' from pg_stat_activity where pid = $1", pid).Scan(&active); err != nil {
				t.Fatal(err)
			}
			if active {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		var ok bool
		if err := trust.QueryRow(qctx, "select pg_cancel_backend($1)", pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_cancel_backend: %v %v", ok, err)
		}
		wg.Wait()
		if qerr == nil || !strings.Contains(qerr.Error(), "canceling statement due to user request") {
			t.Errorf("pg_sleep(30) after pg_cancel_backend: %v", qerr)
		}
	})
	var one int
	if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil {
		t.Errorf("the session is not usable after the refused load: %v", err)
	}
}
