package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Per-line policy (validator.<key>=value on a pg_hba oauth line) exists from
// PostgreSQL 19 on. These tests run on both majors: on 19 they check the
// options, on 18 that the server refuses such a line outright (so a DBA can
// never believe an option is applied when it is not).

// lineEnv is a cluster with two databases, admin and app, whose oauth lines
// name the same issuer.
type lineEnv struct {
	*idpEnv
	conf string // the issuer_config file
}

func newLineEnv(t *testing.T) *lineEnv {
	t.Helper()
	e := newIdPEnv(t, "alice", "bob")
	e.PG.Exec("create database admin", "create database app")
	conf := filepath.Join(e.PG.Dir, "issuers.conf")
	// The issuer's section overrides the global audience (testAudience).
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[%s]\naudience = section-aud\nrole_from_identity = on\n", e.IdP.Issuer())), 0o600); err != nil {
		t.Fatal(err)
	}
	chown(t, conf)
	e.PG.SetConf(baseConf(map[string]string{"oauth_jwt.role_from_identity": "on", "oauth_jwt.issuer_config": quote(conf)}))
	return &lineEnv{idpEnv: e, conf: conf}
}

// lines installs an oauth line for database admin with adminOpts and one for
// app with appOpts (pg_hba.conf lines 2 and 3).
func (e *lineEnv) lines(adminOpts, appOpts string) {
	e.PG.SetHBA(
		fmt.Sprintf(`host admin all 127.0.0.1/32 oauth issuer="%s" scope="openid" delegate_ident_mapping=1 %s`, e.IdP.Issuer(), adminOpts),
		fmt.Sprintf(`host app all 127.0.0.1/32 oauth issuer="%s" scope="openid" delegate_ident_mapping=1 %s`, e.IdP.Issuer(), appOpts),
	)
}

// login tries role@db with a token for sub with the claim overrides; it
// returns the error (nil: logged in) and the server log of the attempt.
func (e *lineEnv) login(t *testing.T, db, role string, over map[string]any) (error, string) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	mark := e.PG.LogMark()
	cfg := e.PG.OAuthConfig(role, e.token(t, role, over))
	cfg.Database = db
	conn, err := pgxConnect(ctx, cfg)
	if err == nil {
		conn.Close(ctx)
		return nil, e.PG.LogSince(mark)
	}
	return err, e.PG.WaitLog(mark, fmt.Sprintf(`user "%s"`, role))
}

func (e *lineEnv) accepted(t *testing.T, db, role string, over map[string]any) {
	t.Helper()
	if err, log := e.login(t, db, role, over); err != nil {
		t.Fatalf("%s@%s refused: %v\n%s", role, db, err, log)
	}
}

func (e *lineEnv) refusedAt(t *testing.T, db, role string, over map[string]any, reason string) string {
	t.Helper()
	err, log := e.login(t, db, role, over)
	if err == nil {
		t.Fatalf("%s@%s accepted; want a refusal with reason %s", role, db, reason)
	}
	if reason != "" && !e.PG.RefusalLogged(log, reason) {
		t.Errorf("%s@%s: server log lacks reason %q (logged once, as PostgreSQL %d logs it):\n%s", role, db, reason, e.PG.Major, log)
	}
	return log
}

// Precedence (PostgreSQL 19), most specific first: the pg_hba line, the
// issuer_config section, the global setting. On 18 the server must refuse
// such a line. Two lines for one issuer with different
// policies; a bad value; a reload that changes a line's policy.
func TestLineOptions(t *testing.T) {
	e := newLineEnv(t)
	if e.PG.Major < 19 {
		// PostgreSQL 18 has no per-line options: the server refuses the whole
		// file on reload and keeps the previous one, so a DBA can never believe
		// an option applies when it does not. README: use issuer_config there.
		mark := e.PG.LogMark()
		e.lines(`validator.audience=admin-aud`, ``)
		log := e.PG.WaitLog(mark, "pg_hba.conf was not reloaded")
		if !strings.Contains(log, "validator.audience") {
			t.Errorf("PostgreSQL %d refused the line without naming the option:\n%s", e.PG.Major, log)
		}
		return
	}
	e.lines(`validator.audience=admin-aud validator.role_from_identity=off validator.role_claim=groups validator.role_map="dba=bob"`, ``)

	t.Run("line audience wins over the section", func(t *testing.T) {
		e.refusedAt(t, "admin", "bob", map[string]any{"aud": "section-aud", "groups": []string{"dba"}}, "aud_mismatch")
	})
	t.Run("line audience accepted", func(t *testing.T) {
		e.accepted(t, "admin", "bob", map[string]any{"aud": "admin-aud", "groups": []string{"dba"}})
	})
	t.Run("line role map: identity alone no longer enough", func(t *testing.T) {
		e.refusedAt(t, "admin", "alice", map[string]any{"aud": "admin-aud"}, "role_not_allowed")
	})
	t.Run("other line of the same issuer keeps the section", func(t *testing.T) {
		e.accepted(t, "app", "alice", map[string]any{"aud": "section-aud"})
	})
	t.Run("section wins over the global setting", func(t *testing.T) {
		e.refusedAt(t, "app", "alice", map[string]any{"aud": testAudience}, "aud_mismatch")
	})
	t.Run("the admin line's audience does not leak to app", func(t *testing.T) {
		e.refusedAt(t, "app", "alice", map[string]any{"aud": "admin-aud"}, "aud_mismatch")
	})

	// A bad value fails that line's logins, names the option and the line,
	// and never falls back to the section or the global value.
	t.Run("bad value", func(t *testing.T) {
		e.lines(`validator.leeway=soon`, ``)
		err, log := e.login(t, "admin", "alice", map[string]any{"aud": "section-aud"})
		if err == nil {
			t.Fatalf("login accepted with validator.leeway=soon on its line")
		}
		want := fmt.Sprintf(`%s:2: invalid configuration for "validator.leeway"`, filepath.Join(e.PG.Data, "pg_hba.conf"))
		if !strings.Contains(log, want) {
			t.Errorf("log does not name the option and the line (want %q):\n%s", want, log)
		}
		e.accepted(t, "app", "alice", map[string]any{"aud": "section-aud"}) // the other line still works
	})
	t.Run("bad role map", func(t *testing.T) {
		e.lines(`validator.role_map="=nobody"`, ``)
		err, log := e.login(t, "admin", "alice", map[string]any{"aud": "section-aud"})
		if err == nil || !strings.Contains(log, `invalid configuration for "validator.role_map"`) {
			t.Errorf("err=%v; want a refusal naming validator.role_map:\n%s", err, log)
		}
	})

	// pg_hba reload: new backends see the line's new policy, no restart.
	t.Run("reload changes a line's policy", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		startTime := func() time.Time {
			admin := e.PG.Admin(ctx)
			defer admin.Close(ctx)
			var ts time.Time
			if err := admin.QueryRow(ctx, "select pg_postmaster_start_time()").Scan(&ts); err != nil {
				t.Fatal(err)
			}
			return ts
		}
		t0 := startTime()
		e.lines(`validator.audience=first-aud`, ``)
		e.accepted(t, "admin", "alice", map[string]any{"aud": "first-aud"})
		e.lines(`validator.audience=second-aud`, ``)
		e.refusedAt(t, "admin", "alice", map[string]any{"aud": "first-aud"}, "aud_mismatch")
		e.accepted(t, "admin", "alice", map[string]any{"aud": "second-aud"})
		if t1 := startTime(); !t1.Equal(t0) {
			t.Errorf("the server restarted (start time %v, then %v)", t0, t1)
		}
	})

	// An option that is not a policy key is refused by the server itself
	// (the module registers only policy keys).
	t.Run("unknown option", func(t *testing.T) {
		e.lines(`validator.cache_dir=/tmp`, ``)
		err, log := e.login(t, "admin", "alice", map[string]any{"aud": "section-aud"})
		if err == nil || !strings.Contains(log, "cache_dir") {
			t.Errorf("err=%v; want the login refused with a message naming the option:\n%s", err, log)
		}
	})
}

// A client that hangs up right after the server's error challenge, as pgx
// does (it skips the final message RFC 7628 asks for): the refusal's reason
// is still logged, once. On 19 the server writes no entry of its own then,
// so oauth_jwt logs the reason as the backend exits.
func TestRefusalReasonWhenClientHangsUp(t *testing.T) {
	e := newIdPEnv(t, "alice")
	ctx := ctxT(t, 60*time.Second)
	mark := e.PG.LogMark()
	cfg := e.PG.OAuthConfig("alice", e.token(t, "alice", map[string]any{"aud": "someone-else"}))
	var d net.Dialer
	cfg.DialFunc = d.DialContext // pgx's own behaviour: no final message
	if conn, err := pgxConnect(ctx, cfg); err == nil {
		conn.Close(ctx)
		t.Fatal("login accepted; want aud_mismatch")
	}
	log := e.PG.WaitLog(mark, "oauth_jwt: bearer token rejected")
	if n := strings.Count(log, "Reason: aud_mismatch."); n != 1 {
		t.Errorf("reason logged %d times, want once:\n%s", n, log)
	}
	if e.PG.Major >= 19 && strings.Contains(log, "OAuth bearer authentication failed") {
		t.Errorf("PostgreSQL 19 logged its own failure entry for a client that hung up; then oauth_jwt's would repeat it:\n%s", log)
	}
}

func pgxConnect(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	return pgx.ConnectConfig(ctx, cfg)
}
