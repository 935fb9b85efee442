package clients

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oauth-jwt/oauth_jwt/examples/pgxtoken"
	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

const (
	audience      = "postgres-db"
	serviceClient = "pg-service"
	serviceSecret = "s3cret-of-pg-service"
	writerRole    = "app_writer"
)

// The line PostgreSQL logs for the failed first connection of a libpq login
// that must learn the discovery URL first (psql's device flow; the token
// hook when oauth_issuer is the issuer).
func authFailed(user string) string {
	return `FATAL:  OAuth bearer authentication failed for user "` + user + `"`
}

// env is a test identity provider and a cluster trusting it, in delegated
// mode: a person's token may log in as the role named like its identity, the
// service's client may log in as app_writer.
type env struct {
	idp *testidp.IdP
	pg  *pgtest.Cluster
}

func newEnv(t *testing.T) *env {
	t.Helper()
	p, err := testidp.Start(testidp.Options{Realm: "/realms/clients"})
	if err != nil {
		t.Fatalf("test identity provider: %v", err)
	}
	t.Cleanup(p.Close)
	c := pgtest.New(t, pgtest.Options{})
	c.SetConf(map[string]string{
		"oauth_jwt.audience":           "'" + audience + "'",
		"oauth_jwt.require_https":      "off", // the test IdP is plain http on loopback
		"oauth_jwt.allowed_client_ids": "'psql, " + serviceClient + "'",
		"oauth_jwt.role_from_identity": "on",
		"oauth_jwt.client_role_map":    "'" + serviceClient + "=" + writerRole + "'",
		"oauth_jwt.log_accepted":       "on", // every verdict is logged, so a test can count them
	})
	c.SetHBA(fmt.Sprintf(`host all all 127.0.0.1/32 oauth issuer="%s" scope="openid" delegate_ident_mapping=1`, p.Issuer()))
	c.Exec("create role alice login", "create role "+writerRole+" login")
	return &env{idp: p, pg: c}
}

// userToken mints an access token like the one a person's device flow gets.
func (e *env) userToken(t *testing.T, sub string, over map[string]any) string {
	t.Helper()
	claims := map[string]any{"sub": sub, "aud": audience, "azp": "psql", "scope": "openid", "preferred_username": sub}
	for k, v := range over {
		claims[k] = v
	}
	tok, err := e.idp.Mint(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// assertNoToken fails when text holds a token or its signature segment.
func assertNoToken(t *testing.T, what, text string, toks ...string) {
	t.Helper()
	for _, tok := range toks {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.Contains(text, tok) || (len(sig) > 16 && strings.Contains(text, sig)) {
			t.Errorf("%s contains a token", what)
		}
	}
}

// safeStderr keeps psql's own lines and drops PGOAUTHDEBUG's HTTP traces,
// which hold the token.
func safeStderr(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if keycloak.SafeStderrLine(line) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// (a) psql's device flow: real psql (libpq-oauth) against the test IdP,
// whose device endpoint approves at once. The login succeeds, and the
// server has logged a FATAL for the first connection, which carried no
// token: libpq makes it only to learn the discovery URL. oauth_jwt is not
// asked about it (no verdict is logged for it).
func TestPsqlDeviceFlow(t *testing.T) {
	e := newEnv(t)
	e.idp.SetDeviceClaims(map[string]any{"sub": "alice", "aud": audience, "scope": "openid"})
	conninfo := "host=127.0.0.1 port=" + strconv.Itoa(e.pg.Port) + " dbname=postgres user=alice sslmode=disable" +
		" oauth_issuer=" + e.idp.Issuer() + " oauth_client_id=psql"
	mark := e.pg.LogMark()
	// PGOAUTHDEBUG=UNSAFE only because the loopback issuer is plain http.
	out, stderr, err := e.pg.Psql(ctxT(t, 90*time.Second), []string{"PGOAUTHDEBUG=UNSAFE"},
		"-X", "-A", "-t", "-w", "-d", conninfo, "-c", "select current_user || ',' || system_user")
	log := e.pg.LogSince(mark)
	if err != nil {
		t.Fatalf("psql: %v\nstderr:\n%s\nserver log:\n%s", err, safeStderr(stderr), log)
	}
	if got := strings.TrimSpace(out); got != "alice,oauth:alice" {
		t.Errorf("current_user,system_user = %q, want alice,oauth:alice", got)
	}
	if !regexp.MustCompile(`Visit \S+ and enter the code: \S+`).MatchString(stderr) {
		t.Errorf("psql printed no device-flow prompt:\n%s", safeStderr(stderr))
	}
	log = e.pg.WaitLog(mark, `connection authenticated: identity="alice" method=oauth`)
	fatal := strings.Index(log, authFailed("alice"))
	switch {
	case e.pg.Major >= 19:
		// PostgreSQL 19 no longer logs the discovery round trip as a
		// failed login (test/hostile's TestMalformedSASL checks the same).
		if fatal >= 0 {
			t.Errorf("PostgreSQL %d logged %q for the empty first connection:\n%s", e.pg.Major, authFailed("alice"), log)
		}
	case fatal < 0 || fatal > strings.Index(log, `connection authenticated: identity="alice"`):
		t.Errorf("the server log lacks the first connection's %q before the login:\n%s", authFailed("alice"), log)
	}
	if n := strings.Count(log, "oauth_jwt: bearer token"); n != 1 {
		t.Errorf("oauth_jwt logged %d verdicts, want 1 (the empty first attempt never reaches the validator):\n%s", n, log)
	}
	t.Logf("server log of one device-flow login:\n%s", log)
}

// (b) A libpq application with PQsetAuthDataHook: the C example, built
// against the PostgreSQL 18 build's libpq, reads the token from a file or
// the environment and logs in. With oauth_issuer the issuer, libpq first
// connects without a token (a FATAL in the server log) and then asks the
// hook; with oauth_issuer the discovery URL, it asks the hook at once and
// connects once.
func TestLibpqTokenHook(t *testing.T) {
	prog := BuildTokenHook(t)
	e := newEnv(t)
	good := e.userToken(t, "alice", nil)
	otherAud := e.userToken(t, "alice", map[string]any{"aud": "another-db"})
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodFile := file("good", good+"\n")
	otherAudFile := file("other-aud", otherAud+"\n")
	emptyFile := file("empty", "\n")
	issuer := e.idp.Issuer()
	discovery := e.idp.DiscoveryURL()
	conninfo := func(oauthIssuer string) string {
		return "host=127.0.0.1 port=" + strconv.Itoa(e.pg.Port) + " dbname=postgres user=alice sslmode=disable" +
			" oauth_issuer=" + oauthIssuer + " oauth_client_id=my-app"
	}

	for _, tc := range []struct {
		name        string
		oauthIssuer string
		env         []string
		wantOut     string // "" = the program must fail
		wantStderr  string
		wantLog     string // in the server log after the attempt
		firstFails  bool   // the server logs the empty first connection's FATAL
		refused     bool   // oauth_jwt refuses the token (another FATAL)
	}{
		{name: "no token configured", oauthIssuer: issuer,
			wantStderr: "set OAUTH_TOKEN_FILE (or OAUTH_TOKEN)", firstFails: true},
		{name: "token file missing", oauthIssuer: issuer, env: []string{"OAUTH_TOKEN_FILE=" + filepath.Join(dir, "absent")},
			wantStderr: `cannot open "` + filepath.Join(dir, "absent") + `"`, firstFails: true},
		{name: "token file empty", oauthIssuer: discovery, env: []string{"OAUTH_TOKEN_FILE=" + emptyFile},
			wantStderr: "the token is empty"},
		{name: "token for another audience refused", oauthIssuer: discovery, env: []string{"OAUTH_TOKEN_FILE=" + otherAudFile},
			wantStderr: "connection failed", wantLog: "Reason: aud_mismatch.", refused: true},
		{name: "oauth_issuer is another issuer", oauthIssuer: "http://127.0.0.1:1/realms/other", env: []string{"OAUTH_TOKEN_FILE=" + goodFile},
			wantStderr: "is incompatible with oauth_issuer", firstFails: true},
		{name: "issuer: discovery connection, then the hook", oauthIssuer: issuer, env: []string{"OAUTH_TOKEN_FILE=" + goodFile},
			wantOut: "alice,oauth:alice", wantStderr: "token requested for " + discovery + ` (scope "openid")`,
			wantLog: `connection authenticated: identity="alice" method=oauth`, firstFails: true},
		{name: "discovery URL: the hook at once, one connection", oauthIssuer: discovery, env: []string{"OAUTH_TOKEN_FILE=" + goodFile},
			wantOut: "alice,oauth:alice", wantStderr: "token requested for " + discovery + ` (scope "")`,
			wantLog: `connection authenticated: identity="alice" method=oauth`},
		{name: "token from OAUTH_TOKEN", oauthIssuer: discovery, env: []string{"OAUTH_TOKEN=" + good},
			wantOut: "alice,oauth:alice", wantLog: `connection authenticated: identity="alice" method=oauth`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := e.pg.LogMark()
			cmd := exec.CommandContext(ctxT(t, time.Minute), prog, conninfo(tc.oauthIssuer))
			// A clean environment: no PG* variables of the caller; PGOAUTHDEBUG=UNSAFE
			// only because the loopback issuer is plain http.
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "PGOAUTHDEBUG=UNSAFE"}, tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			switch {
			case tc.wantOut == "" && err == nil:
				t.Fatalf("the program succeeded (%q); want a failure", stdout.String())
			case tc.wantOut != "" && err != nil:
				t.Fatalf("the program failed: %v\nstderr:\n%s\nserver log:\n%s", err, stderr.String(), e.pg.LogSince(mark))
			case tc.wantOut != "" && strings.TrimSpace(stdout.String()) != tc.wantOut:
				t.Errorf("output %q, want %q", strings.TrimSpace(stdout.String()), tc.wantOut)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantStderr, stderr.String())
			}
			// One FATAL for the empty first connection, one for a refused token.
			wantFatals := 0
			if tc.firstFails && e.pg.Major < 19 { // 19 does not log the discovery round trip
				wantFatals++
			}
			if tc.refused {
				wantFatals++
			}
			log := e.pg.LogSince(mark) // the program has ended: what its connections log is being written
			if tc.wantLog != "" {
				log = e.pg.WaitLog(mark, tc.wantLog)
			}
			for deadline := time.Now().Add(20 * time.Second); strings.Count(log, authFailed("alice")) < wantFatals && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
				log = e.pg.LogSince(mark)
			}
			if got := strings.Count(log, authFailed("alice")); got != wantFatals {
				t.Errorf("%d lines %q in the server log, want %d:\n%s", got, authFailed("alice"), wantFatals, log)
			}
			assertNoToken(t, "stderr", stderr.String(), good, otherAud)
			assertNoToken(t, "the server log", log, good, otherAud)
		})
	}
}

// tokenEndpoint is a client-credentials token endpoint (RFC 6749, section
// 4.4) in front of the test IdP: it authenticates the client with HTTP
// Basic and mints a token shaped like Keycloak's service-account tokens.
type tokenEndpoint struct {
	*httptest.Server
	requests atomic.Int64
}

func newTokenEndpoint(t *testing.T, idp *testidp.IdP, clients map[string]string) *tokenEndpoint {
	t.Helper()
	te := &tokenEndpoint{}
	te.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		te.requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		id, secret, ok := r.BasicAuth()
		if err := r.ParseForm(); err != nil || r.Method != http.MethodPost || r.PostForm.Get("grant_type") != "client_credentials" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"unsupported_grant_type"}`)
			return
		}
		if !ok || clients[id] == "" || clients[id] != secret {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"Invalid client or Invalid client credentials"}`)
			return
		}
		tok, err := idp.Mint(map[string]any{
			"sub": "service-account-" + id, "preferred_username": "service-account-" + id,
			"aud": audience, "azp": id, "client_id": id, "scope": "profile email",
		})
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":300}`, tok)
	}))
	t.Cleanup(te.Close)
	return te
}

// (c) A Go service: pgx's OAuthTokenProvider with a client-credentials
// token, through examples/pgxtoken. pgx sends the token on the first
// connection (no discovery round trip, so no FATAL), and the token is
// cached: connections made while it is valid cost no token request.
func TestPgxClientCredentials(t *testing.T) {
	e := newEnv(t)
	te := newTokenEndpoint(t, e.idp, map[string]string{serviceClient: serviceSecret, "other-service": "other-secret"})
	connString := func(role string) string {
		return "host=127.0.0.1 port=" + strconv.Itoa(e.pg.Port) + " dbname=postgres user=" + role + " sslmode=disable connect_timeout=30"
	}
	connect := func(t *testing.T, role string, src *pgxtoken.ClientCredentials) (*pgx.Conn, error) {
		t.Helper()
		cfg, err := pgxtoken.Config(connString(role), src)
		if err != nil {
			t.Fatal(err)
		}
		return pgx.ConnectConfig(ctxT(t, time.Minute), cfg)
	}
	source := func(id, secret string) *pgxtoken.ClientCredentials {
		return &pgxtoken.ClientCredentials{TokenURL: te.URL, ClientID: id, ClientSecret: secret,
			HTTPClient: &http.Client{Timeout: 10 * time.Second}}
	}

	t.Run("wrong secret", func(t *testing.T) {
		conn, err := connect(t, writerRole, source(serviceClient, "wrong-secret"))
		if err == nil {
			conn.Close(context.Background())
			t.Fatal("connected with a wrong client secret")
		}
		if !strings.Contains(err.Error(), "invalid_client") || strings.Contains(err.Error(), "wrong-secret") {
			t.Errorf("error %q: want invalid_client, without the secret", err)
		}
	})
	t.Run("client not allowed", func(t *testing.T) {
		mark := e.pg.LogMark()
		conn, err := connect(t, writerRole, source("other-service", "other-secret"))
		if err == nil {
			conn.Close(context.Background())
			t.Fatal("a client outside allowed_client_ids logged in")
		}
		e.pg.WaitLog(mark, "Reason: azp_not_allowed.")
	})
	t.Run("service as another role", func(t *testing.T) {
		mark := e.pg.LogMark()
		conn, err := connect(t, "alice", source(serviceClient, serviceSecret))
		if err == nil {
			conn.Close(context.Background())
			t.Fatal("the service logged in as alice")
		}
		e.pg.WaitLog(mark, "Reason: role_not_allowed.")
	})
	t.Run("service as app_writer, token cached", func(t *testing.T) {
		now := time.Now()
		src := source(serviceClient, serviceSecret)
		src.Now = func() time.Time { return now }
		before := te.requests.Load()
		mark := e.pg.LogMark()
		for i := range 3 {
			conn, err := connect(t, writerRole, src)
			if err != nil {
				t.Fatalf("connection %d: %v\nserver log:\n%s", i+1, err, e.pg.LogSince(mark))
			}
			var cu, su string
			if err := conn.QueryRow(ctxT(t, time.Minute), "select current_user::text, system_user").Scan(&cu, &su); err != nil {
				t.Fatal(err)
			}
			conn.Close(context.Background())
			if cu != writerRole || su != "oauth:service-account-"+serviceClient {
				t.Errorf("current_user, system_user = %q, %q", cu, su)
			}
		}
		if n := te.requests.Load() - before; n != 1 {
			t.Errorf("%d token requests for 3 connections, want 1", n)
		}
		// Within a minute of its expiry (300 s) the cached token is replaced.
		now = now.Add(241 * time.Second)
		conn, err := connect(t, writerRole, src)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close(context.Background())
		if n := te.requests.Load() - before; n != 2 {
			t.Errorf("%d token requests after the token neared expiry, want 2", n)
		}
		log := e.pg.LogSince(mark)
		if strings.Contains(log, "authentication failed") {
			t.Errorf("pgx logins logged a failed authentication:\n%s", log)
		}
		tok, err := src.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		assertNoToken(t, "the server log", log, tok)
	})
}
