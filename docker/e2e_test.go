//go:build docker

// Package dockere2e runs oauth_jwt's end-to-end scenarios against container images:
// the postgres:18 image with the module (docker/Dockerfile, built here) and the official
// Keycloak image with the test realm, wired exactly as docker/compose.yaml wires them.
//
//	go test -tags docker -timeout 30m -v ./docker/...
//
// It needs a Docker engine. Where none is reachable (our CI machines), the suite skips,
// through testcontainers' own provider health check; that is the only skip of the
// project's tests. Anything else that goes wrong is a failure.
//
// Networking (docker/README.md has the reasons): the postgres container joins Keycloak's
// network namespace, and Keycloak's hostname is pinned to http://localhost:8080. Inside
// the containers localhost:8080 is Keycloak. This test process reaches Keycloak through
// the published port instead, so its HTTP transport dials the mapped address whenever a
// URL names localhost:8080: the browser-less approver then follows Keycloak's absolute
// form URLs unchanged, and every token carries the one issuer the image is configured for.
package dockere2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
)

const (
	// publicKeycloak is Keycloak's pinned hostname (--hostname), as the containers see it.
	publicKeycloak = "localhost:8080"
	// issuer of realm postgres: the iss of every token, and the image's default
	// OAUTH_JWT_ISSUER (pg_hba issuer).
	issuer = "http://" + publicKeycloak + "/realms/" + keycloak.Realm

	defaultKeycloakImage = "quay.io/keycloak/keycloak:26.7.3"
	// Not a login password: no pg_hba line of the image accepts passwords.
	postgresPassword = "not-used-for-logins"
)

// env is the running pair of containers.
type env struct {
	kc, pg         *testcontainers.DockerContainer
	pgHost, pgPort string
}

func TestDockerImages(t *testing.T) {
	skipWithoutDocker(t)

	ctx, cancel := context.WithTimeout(context.Background(), 28*time.Minute)
	t.Cleanup(cancel)
	e := start(ctx, t)

	t.Run("IssuerPinned", func(t *testing.T) {
		doc, err := keycloak.FetchDiscovery(ctx, issuer, "")
		if err != nil {
			t.Fatal(err)
		}
		if doc["issuer"] != issuer {
			t.Fatalf("discovery issuer %q, want %q (is --hostname pinned?)", doc["issuer"], issuer)
		}
	})

	t.Run("ServiceClientCredentials", func(t *testing.T) {
		tok, err := keycloak.ClientCredentialsToken(ctx, issuer, keycloak.ServiceClient, keycloak.ServiceSecret)
		if err != nil {
			t.Fatal(err)
		}
		// client_role_map: pg-service=app_writer
		cur, sys := e.whoami(ctx, t, "app_writer", tok)
		if cur != "app_writer" || sys != "oauth:service-account-"+keycloak.ServiceClient {
			t.Fatalf("current_user %q, system_user %q; want app_writer, oauth:service-account-%s", cur, sys, keycloak.ServiceClient)
		}
		conn := e.mustConnect(ctx, t, "app_writer", tok)
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "INSERT INTO public.demo VALUES (2, 'written by pg-service')"); err != nil {
			t.Fatalf("app_writer cannot write: %v", err)
		}

		// A machine token grants app_writer and nothing else.
		mark := e.logCount(ctx, t, "Reason: role_not_allowed")
		e.mustBeRefused(ctx, t, "postgres", tok)
		e.waitLog(ctx, t, "Reason: role_not_allowed", mark)
	})

	t.Run("NoAudienceRefused", func(t *testing.T) {
		// Client no-audience has no audience mapper: its tokens do not name postgres-db.
		tr, err := keycloak.PasswordGrant(ctx, issuer, keycloak.NoAudienceClient, "alice", keycloak.Passwords["alice"])
		if err != nil {
			t.Fatal(err)
		}
		mark := e.logCount(ctx, t, "Reason: aud_mismatch")
		e.mustBeRefused(ctx, t, "alice", tr.AccessToken)
		e.mustBeRefused(ctx, t, "postgres", tr.AccessToken)
		e.waitLog(ctx, t, "Reason: aud_mismatch", mark+1) // both refusals logged
	})

	t.Run("DeviceFlowUserGetsMappedRole", func(t *testing.T) {
		// The psql client's device flow, approved over HTTP as alice (group dba).
		alice, err := keycloak.DeviceToken(ctx, issuer, keycloak.DeviceClient, "alice", keycloak.Passwords["alice"])
		if err != nil {
			t.Fatal(err)
		}
		// Delegated line: role_map dba=reader.
		if cur, sys := e.whoami(ctx, t, "reader", alice); cur != "reader" || sys != "oauth:alice" {
			t.Fatalf("as reader: current_user %q, system_user %q; want reader, oauth:alice", cur, sys)
		}
		// role_map dba=postgres too, but postgres is a superuser: refused
		// while oauth_jwt.allow_privileged_roles is off.
		privileged := e.logCount(ctx, t, "Reason: privileged_role")
		e.mustBeRefused(ctx, t, "postgres", alice)
		e.waitLog(ctx, t, "Reason: privileged_role", privileged)
		// pg_ident line: map sso, alice -> alice.
		if cur, sys := e.whoami(ctx, t, "alice", alice); cur != "alice" || sys != "oauth:alice" {
			t.Fatalf("as alice: current_user %q, system_user %q; want alice, oauth:alice", cur, sys)
		}
		// The map does not let alice become bob.
		e.mustBeRefused(ctx, t, "bob", alice)

		// bob (group analysts) may be reader, not postgres.
		bob, err := keycloak.DeviceToken(ctx, issuer, keycloak.DeviceClient, "bob", keycloak.Passwords["bob"])
		if err != nil {
			t.Fatal(err)
		}
		if cur, sys := e.whoami(ctx, t, "reader", bob); cur != "reader" || sys != "oauth:bob" {
			t.Fatalf("as reader: current_user %q, system_user %q; want reader, oauth:bob", cur, sys)
		}
		mark := e.logCount(ctx, t, "Reason: role_not_allowed")
		e.mustBeRefused(ctx, t, "postgres", bob)
		e.waitLog(ctx, t, "Reason: role_not_allowed", mark)
	})

	t.Run("PsqlDeviceFlowInContainer", func(t *testing.T) {
		// docker/README.md's login, with the image's own psql and libpq-oauth:
		// psql prints the device prompt, the approver plays the person with a browser.
		e.psqlDeviceLogin(ctx, t, "alice", "alice", "alice oauth:alice")
	})
}

// skipWithoutDocker skips the test when testcontainers finds no healthy Docker engine
// (the same check as testcontainers.SkipIfProviderIsNotHealthy, with a message that says
// what is skipped). It is the only skip allowed in the project's tests.
func skipWithoutDocker(t *testing.T) {
	t.Helper()
	skip := func(cause any) {
		t.Skipf("no Docker engine reachable (%v): the container suite (docker/e2e_test.go) needs one; "+
			"the same scenarios run without Docker in test/e2e", cause)
	}
	defer func() {
		if r := recover(); r != nil {
			skip(r)
		}
	}()
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err != nil {
		skip(err)
	}
	defer provider.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := provider.Health(ctx); err != nil {
		skip(err)
	}
}

// start builds the postgres image and starts Keycloak, then PostgreSQL in Keycloak's
// network namespace.
func start(ctx context.Context, t *testing.T) *env {
	t.Helper()
	root, err := keycloak.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kcImage := os.Getenv("OJW_KEYCLOAK_IMAGE")
	if kcImage == "" {
		kcImage = defaultKeycloakImage
	}
	var realms []testcontainers.ContainerFile
	for _, name := range []string{"realm-postgres.json", "realm-other.json"} {
		p, err := keycloak.RealmFile(name)
		if err != nil {
			t.Fatal(err)
		}
		realms = append(realms, testcontainers.ContainerFile{
			HostFilePath: p, ContainerFilePath: "/opt/keycloak/data/import/" + name, FileMode: 0o644,
		})
	}

	// Keycloak owns the network namespace, so it publishes PostgreSQL's port too.
	kc, err := testcontainers.Run(ctx, kcImage,
		testcontainers.WithCmd("start-dev", "--import-realm", "--http-port=8080",
			"--hostname=http://"+publicKeycloak, "--health-enabled=true"),
		testcontainers.WithEnv(map[string]string{
			"KC_BOOTSTRAP_ADMIN_USERNAME": keycloak.AdminUser,
			"KC_BOOTSTRAP_ADMIN_PASSWORD": keycloak.AdminPassword,
		}),
		testcontainers.WithFiles(realms...),
		testcontainers.WithExposedPorts("8080/tcp", "5432/tcp"),
		// 503 while bootstrapping; 200 once the realm is imported. (A strategy's own
		// timeout, 60 s by default, is what bounds it: Keycloak may need more.)
		testcontainers.WithWaitStrategy(
			wait.ForHTTP("/realms/"+keycloak.Realm+"/.well-known/openid-configuration").
				WithPort("8080/tcp").WithPollInterval(2*time.Second).WithStartupTimeout(8*time.Minute)),
	)
	testcontainers.CleanupContainer(t, kc)
	if err != nil {
		dumpLogs(t, kc, "keycloak")
		t.Fatalf("starting Keycloak (%s): %v", kcImage, err)
	}

	buildLog := &bytes.Buffer{}
	pg, err := testcontainers.Run(ctx, "",
		testcontainers.WithDockerfile(testcontainers.FromDockerfile{
			Context:        root,
			Dockerfile:     "docker/Dockerfile",
			Repo:           "oauth_jwt-postgres",
			Tag:            "e2e",
			KeepImage:      true, // the next run reuses the layers (Go modules, apt)
			BuildLogWriter: buildLog,
		}),
		testcontainers.WithEnv(map[string]string{
			"POSTGRES_PASSWORD": postgresPassword,
			"OAUTH_JWT_ISSUER":  issuer,
		}),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.NetworkMode = container.NetworkMode("container:" + kc.GetContainerID())
		}),
		// A container in another's network namespace has no endpoints of its own.
		testcontainers.WithEndpointSettingsModifier(func(s map[string]*network.EndpointSettings) {
			clear(s)
		}),
		// TCP answers only once the init script has run and the real server is up (the
		// entrypoint's temporary server listens on the Unix socket only).
		testcontainers.WithWaitStrategy(
			wait.ForExec([]string{"pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres"}).
				WithPollInterval(time.Second).WithStartupTimeout(5*time.Minute)),
	)
	testcontainers.CleanupContainer(t, pg) // registered after Keycloak's: terminated first
	if err != nil {
		if buildLog.Len() > 0 {
			t.Logf("image build log (tail):\n%s", tail(buildLog.String(), 60))
		}
		dumpLogs(t, pg, "postgres")
		t.Fatalf("building or starting the postgres image: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, pg, "postgres")
		}
	})

	host, err := kc.Host(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kcPort, err := kc.MappedPort(ctx, "8080/tcp")
	if err != nil {
		t.Fatal(err)
	}
	pgPort, err := kc.MappedPort(ctx, "5432/tcp")
	if err != nil {
		t.Fatal(err)
	}
	routePublicHost(t, net.JoinHostPort(host, kcPort.Port()))
	return &env{kc: kc, pg: pg, pgHost: host, pgPort: pgPort.Port()}
}

// routePublicHost makes this process's HTTP clients (http.DefaultTransport, used by the
// device approver, and keycloak.HTTPClient) dial target whenever a URL names
// publicKeycloak. Nothing else is rerouted; no proxy is used.
func routePublicHost(t *testing.T, target string) {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, netw, addr string) (net.Conn, error) {
			if addr == publicKeycloak {
				addr = target
			}
			return dialer.DialContext(ctx, netw, addr)
		},
		MaxIdleConns:          10,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	oldDefault, oldClient := http.DefaultTransport, keycloak.HTTPClient
	http.DefaultTransport = tr
	keycloak.HTTPClient = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	t.Cleanup(func() {
		http.DefaultTransport, keycloak.HTTPClient = oldDefault, oldClient
		tr.CloseIdleConnections()
	})
}

func (e *env) connect(ctx context.Context, user, token string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=postgres sslmode=disable connect_timeout=30",
		e.pgHost, e.pgPort, user))
	if err != nil {
		return nil, err
	}
	cfg.OAuthTokenProvider = func(context.Context) (string, error) { return token, nil }
	return pgx.ConnectConfig(ctx, cfg)
}

func (e *env) mustConnect(ctx context.Context, t *testing.T, user, token string) *pgx.Conn {
	t.Helper()
	conn, err := e.connect(ctx, user, token)
	if err != nil {
		t.Fatalf("login as %s refused: %v", user, err)
	}
	return conn
}

func (e *env) whoami(ctx context.Context, t *testing.T, user, token string) (current, system string) {
	t.Helper()
	conn := e.mustConnect(ctx, t, user, token)
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT current_user::text, system_user").Scan(&current, &system); err != nil {
		t.Fatal(err)
	}
	return current, system
}

// mustBeRefused checks that the server refuses the login as an authentication failure
// (SQLSTATE 28000), not for any other reason.
func (e *env) mustBeRefused(ctx context.Context, t *testing.T, user, token string) {
	t.Helper()
	conn, err := e.connect(ctx, user, token)
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("login as %s accepted; want refused", user)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28000" {
		t.Fatalf("login as %s: %v; want an authentication failure (SQLSTATE 28000)", user, err)
	}
}

// serverLog returns the postgres container's log (the server logs to stderr).
func (e *env) serverLog(ctx context.Context, t *testing.T) string {
	t.Helper()
	rc, err := e.pg.Logs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *env) logCount(ctx context.Context, t *testing.T, s string) int {
	t.Helper()
	return strings.Count(e.serverLog(ctx, t), s)
}

// waitLog waits until s occurs more than after times in the server log.
func (e *env) waitLog(ctx context.Context, t *testing.T, s string, after int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if e.logCount(ctx, t, s) > after {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server log: no new %q; last lines:\n%s", s, tail(e.serverLog(ctx, t), 30))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// exec runs a command in the postgres container and returns its exit code and output.
func (e *env) exec(ctx context.Context, t *testing.T, cmd ...string) (int, string) {
	t.Helper()
	code, r, err := e.pg.Exec(ctx, cmd, tcexec.Multiplexed())
	if err != nil {
		t.Fatalf("exec %q: %v", cmd, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// psqlDeviceLogin runs psql in the postgres container against localhost (TCP, so the
// OAuth lines of pg_hba.conf apply), approves its device flow as username, and checks
// psql's output.
func (e *env) psqlDeviceLogin(ctx context.Context, t *testing.T, username, role, want string) {
	t.Helper()
	// PGOAUTHDEBUG=UNSAFE: libpq refuses the plain-http demo issuer otherwise.
	script := fmt.Sprintf(`rm -f /tmp/psql.out /tmp/psql.err /tmp/psql.rc /tmp/psql.rc.new
PGOAUTHDEBUG=UNSAFE psql 'host=localhost port=5432 dbname=postgres user=%s oauth_issuer=%s oauth_client_id=%s' \
  -XAtc "SELECT current_user || ' ' || system_user" </dev/null >/tmp/psql.out 2>/tmp/psql.err
echo $? >/tmp/psql.rc.new && mv /tmp/psql.rc.new /tmp/psql.rc
`, role, issuer, keycloak.DeviceClient)
	if err := e.pg.CopyToContainer(ctx, []byte(script), "/tmp/psql-login.sh", 0o755); err != nil {
		t.Fatal(err)
	}
	// In the background, detached, so that this exec returns while psql waits.
	if code, out := e.exec(ctx, t, "bash", "-c", "setsid bash /tmp/psql-login.sh >/dev/null 2>&1 </dev/null &"); code != 0 {
		t.Fatalf("starting psql: exit %d: %s", code, out)
	}

	var uri, code string
	deadline := time.Now().Add(2 * time.Minute)
	for uri == "" {
		if time.Now().After(deadline) {
			_, stderr := e.exec(ctx, t, "cat", "/tmp/psql.err")
			t.Fatalf("psql printed no device prompt; its stderr:\n%s", tail(stderr, 40))
		}
		time.Sleep(time.Second)
		if rc, _ := e.exec(ctx, t, "cat", "/tmp/psql.rc"); rc == 0 {
			_, stderr := e.exec(ctx, t, "cat", "/tmp/psql.err")
			t.Fatalf("psql ended before prompting; its stderr:\n%s", tail(stderr, 40))
		}
		_, stderr := e.exec(ctx, t, "cat", "/tmp/psql.err")
		sc := bufio.NewScanner(strings.NewReader(stderr))
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			if u, c, ok := keycloak.ParseDevicePrompt(sc.Text()); ok {
				uri, code = u, c
				break
			}
		}
	}
	if !strings.HasPrefix(uri, "http://"+publicKeycloak+"/") {
		t.Fatalf("verification URI %q is not on the pinned hostname %s", uri, publicKeycloak)
	}
	if err := keycloak.ApproveDevice(ctx, uri, code, username, keycloak.Passwords[username]); err != nil {
		t.Fatal(err)
	}

	deadline = time.Now().Add(2 * time.Minute)
	for {
		if rc, out := e.exec(ctx, t, "cat", "/tmp/psql.rc"); rc == 0 {
			if strings.TrimSpace(out) != "0" {
				_, stderr := e.exec(ctx, t, "cat", "/tmp/psql.err")
				t.Fatalf("psql exited %s; its stderr:\n%s", strings.TrimSpace(out), tail(stderr, 40))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("psql did not finish within 2 minutes of the approval")
		}
		time.Sleep(time.Second)
	}
	if _, out := e.exec(ctx, t, "cat", "/tmp/psql.out"); strings.TrimSpace(out) != want {
		t.Fatalf("psql printed %q, want %q", strings.TrimSpace(out), want)
	}
}

func dumpLogs(t *testing.T, c *testcontainers.DockerContainer, name string) {
	t.Helper()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := c.Logs(ctx)
	if err != nil {
		t.Logf("%s log: %v", name, err)
		return
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	t.Logf("%s log (tail):\n%s", name, tail(string(b), 80))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
