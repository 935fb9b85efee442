//go:build docker

// Package dockere2e runs oauth_jwt's end-to-end scenarios against container images:
// the PostgreSQL image with the module (docker/Dockerfile, built by TestMain), Keycloak
// with the test realm, the CloudNativePG extension image, and the compose demo.
//
//	make test-containers        (starts an engine when there is none; README "Containers")
//	go test -tags docker -count=1 -timeout 40m -v ./docker/...
//
// The images are the official ones where the engine has or can pull them, stand-ins built
// from Debian where it cannot (scripts/images.sh). Nothing skips: without an engine every
// test fails, saying how to get one.
//
// Networking: like a Kubernetes pod, a holder container owns one network namespace (on a
// network this suite creates) and publishes its ports on 127.0.0.1 only; Keycloak and
// PostgreSQL join that namespace. Keycloak listens on port P and its hostname is pinned to
// http://localhost:P, P being the published host port too: so http://localhost:P/realms/postgres
// is the issuer everywhere, in the containers (loopback, which oauth_jwt allows over plain
// http) and on this machine (the published port). Keycloak can then stop and start again
// while PostgreSQL keeps its network, which the stale-keys scenario needs.
// docker/compose.yaml makes Keycloak itself the owner (TestComposeDemo runs it as it is).
package dockere2e

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

const (
	// Not a login password: no pg_hba line of the image accepts passwords.
	postgresPassword = "not-used-for-logins"
	// The key cache settings of the suite's server: refresh often, stay usable for
	// staleFor without the identity provider. Generous, so that a slow machine still
	// sees the stale keys work before they expire.
	refreshEvery = 2 * time.Second
	staleFor     = 100 * time.Second
	cnpgPort     = "5433" // the CloudNativePG-layout server, in the same pod
	cnpgExtDir   = "/extensions/oauth-jwt"
)

// pod is the running set of containers.
type pod struct {
	holder, kc, pg *testcontainers.DockerContainer
	kcPort         int            // Keycloak: in the pod and on 127.0.0.1
	pgPort         int            // PostgreSQL 5432 published on 127.0.0.1
	cnpgHostPort   int            // the CNPG server's 5433 published on 127.0.0.1
	majorHostPort  map[string]int // each other major's module image server, published on 127.0.0.1
	issuer         string         // http://localhost:<kcPort>/realms/postgres
	volume         string         // PostgreSQL's data volume (the key cache is in PGDATA)
}

func labels() map[string]string { return map[string]string{runLabel: runID} }

func TestDockerImages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	t.Cleanup(cancel)
	p := startPod(ctx, t)

	t.Run("IssuerPinned", func(t *testing.T) {
		doc, err := keycloak.FetchDiscovery(ctx, p.issuer, "")
		if err != nil {
			t.Fatal(err)
		}
		if doc["issuer"] != p.issuer {
			t.Fatalf("discovery issuer %q, want %q (is --hostname pinned?)", doc["issuer"], p.issuer)
		}
	})

	t.Run("PublishedOnLoopbackOnly", func(t *testing.T) {
		ports, err := p.holder.Ports(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ports) != 2+len(majors) {
			t.Errorf("published ports %v, want Keycloak's, the CloudNativePG server's and one PostgreSQL per major (%d)", ports, len(majors))
		}
		for port, bindings := range ports {
			for _, b := range bindings {
				if b.HostIP.String() != "127.0.0.1" {
					t.Errorf("port %s published on %s, want 127.0.0.1 only", port, b.HostIP)
				}
			}
		}
	})

	t.Run("ServiceClientCredentials", func(t *testing.T) {
		tok, err := keycloak.ClientCredentialsToken(ctx, p.issuer, keycloak.ServiceClient, keycloak.ServiceSecret)
		if err != nil {
			t.Fatal(err)
		}
		// A machine token grants app_writer (client_role_map) and nothing else.
		for _, tc := range []struct{ name, role, reason string }{
			{"refused as dba", "dba", "role_not_allowed"},
			{"refused as alice (pg_ident: no such identity)", "alice", ""},
		} {
			t.Run(tc.name, func(t *testing.T) { p.mustBeRefused(ctx, t, tc.role, tok, tc.reason) })
		}
		cur, sys := p.whoami(ctx, t, p.pgPort, "app_writer", tok)
		if cur != "app_writer" || sys != "oauth:service-account-"+keycloak.ServiceClient {
			t.Fatalf("current_user %q, system_user %q; want app_writer, oauth:service-account-%s", cur, sys, keycloak.ServiceClient)
		}
		conn := p.mustConnect(ctx, t, p.pgPort, "app_writer", tok)
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "INSERT INTO public.demo VALUES (2, 'written by pg-service')"); err != nil {
			t.Fatalf("app_writer cannot write: %v", err)
		}
	})

	t.Run("NoAudienceRefused", func(t *testing.T) {
		// Client no-audience has no audience mapper: its tokens do not name postgres-db.
		tr, err := keycloak.PasswordGrant(ctx, p.issuer, keycloak.NoAudienceClient, "alice", keycloak.Passwords["alice"])
		if err != nil {
			t.Fatal(err)
		}
		p.mustBeRefused(ctx, t, "alice", tr.AccessToken, "aud_mismatch")
		p.mustBeRefused(ctx, t, "dba", tr.AccessToken, "aud_mismatch")
	})

	t.Run("DeviceFlowMappings", func(t *testing.T) {
		// The psql client's device flow, approved through Keycloak's pages as alice (group dba).
		alice, err := keycloak.DeviceToken(ctx, p.issuer, keycloak.DeviceClient, "alice", keycloak.Passwords["alice"])
		if err != nil {
			t.Fatal(err)
		}
		bob, err := keycloak.DeviceToken(ctx, p.issuer, keycloak.DeviceClient, "bob", keycloak.Passwords["bob"])
		if err != nil {
			t.Fatal(err)
		}
		carol, err := keycloak.DeviceToken(ctx, p.issuer, keycloak.DeviceClient, "carol", keycloak.Passwords["carol"])
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ name, token, role, reason string }{
			{"alice not as bob (pg_ident map)", alice, "bob", ""},
			{"bob not as dba (delegated: analysts=reader only)", bob, "dba", "role_not_allowed"},
			{"carol: no group, no role", carol, "reader", "role_not_allowed"},
			{"superuser postgres is on no line that lets a token in", alice, "postgres", ""},
		} {
			t.Run("refused/"+tc.name, func(t *testing.T) { p.mustBeRefused(ctx, t, tc.role, tc.token, tc.reason) })
		}
		for _, tc := range []struct{ name, token, role, wantSys string }{
			{"alice as dba (delegated: role_map dba=dba)", alice, "dba", "oauth:alice"},
			{"alice as reader (delegated: dba=reader)", alice, "reader", "oauth:alice"},
			{"alice as alice (pg_ident map sso)", alice, "alice", "oauth:alice"},
			{"bob as reader (delegated: analysts=reader)", bob, "reader", "oauth:bob"},
			{"bob as bob (pg_ident map sso)", bob, "bob", "oauth:bob"},
		} {
			t.Run("accepted/"+tc.name, func(t *testing.T) {
				if cur, sys := p.whoami(ctx, t, p.pgPort, tc.role, tc.token); cur != tc.role || sys != tc.wantSys {
					t.Fatalf("current_user %q, system_user %q; want %s, %s", cur, sys, tc.role, tc.wantSys)
				}
			})
		}
	})

	t.Run("PsqlDeviceFlowInContainer", func(t *testing.T) {
		// docker/README.md's login, with the image's own psql and libpq-oauth.
		p.psqlInContainer(ctx, t, "alice", "alice", "alice oauth:alice")
	})

	t.Run("PsqlDeviceFlowFromHost", func(t *testing.T) {
		// A psql 18 of this machine (with libpq-oauth), through the published ports.
		p.psqlFromHost(ctx, t, "bob", "reader", "reader oauth:bob")
	})

	t.Run("KeyCacheInVolume", func(t *testing.T) {
		// The module and its fetch helper where the official image's pkglibdir is, the
		// helper started by the module (the cache is filled only by it), the cache in PGDATA
		// on the volume, owned by postgres and closed to everyone else.
		out := p.mustExec(ctx, t, p.pg, "bash", "-c", `d=$(pg_config --pkglibdir); stat -c '%n %U %a' "$d/oauth_jwt.so" "$d/oauth_jwt_fetch"`)
		for _, want := range []string{"/oauth_jwt.so root 755", "/oauth_jwt_fetch root 755"} {
			if !strings.Contains(out, want) {
				t.Fatalf("module files: %q, want a line ending in %q", out, want)
			}
		}
		out = p.mustExec(ctx, t, p.pg, "bash", "-c", `cd "$PGDATA/oauth_jwt_cache" && stat -c '%U:%G %a' . && find . -type f -exec stat -c '%U:%G %a %n' {} + && findmnt -no SOURCE,TARGET -T .`)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 3 || lines[0] != "postgres:postgres 700" {
			t.Fatalf("cache dir: %q; want owner postgres:postgres, mode 700, and at least one file", out)
		}
		for _, l := range lines[1 : len(lines)-1] {
			if !strings.HasPrefix(l, "postgres:postgres 600 ") {
				t.Errorf("cache file %q: want postgres:postgres 600", l)
			}
		}
		if !strings.Contains(lines[len(lines)-1], "/var/lib/postgresql") {
			t.Errorf("cache dir is on %q, want the volume at /var/lib/postgresql", lines[len(lines)-1])
		}
	})

	t.Run("KeyRotation", func(t *testing.T) {
		admin, err := keycloak.NewAdmin(ctx, "http://localhost:"+strconv.Itoa(p.kcPort))
		if err != nil {
			t.Fatal(err)
		}
		old, err := keycloak.ClientCredentialsToken(ctx, p.issuer, keycloak.ServiceClient, keycloak.ServiceSecret)
		if err != nil {
			t.Fatal(err)
		}
		p.whoami(ctx, t, p.pgPort, "app_writer", old)
		// New signing key; the old one leaves the key set.
		newKID, _, err := admin.RotateRSAKey(ctx, keycloak.Realm, keycloak.OldKeysDeleted)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := keycloak.ClientCredentialsToken(ctx, p.issuer, keycloak.ServiceClient, keycloak.ServiceSecret)
		if err != nil {
			t.Fatal(err)
		}
		if h, _, err := keycloak.DecodeJWT(fresh); err != nil || h["kid"] != newKID {
			t.Fatalf("new token's kid %v (%v), want %s", h["kid"], err, newKID)
		}
		time.Sleep(refreshEvery + time.Second) // the cached keys are due for a refresh
		if cur, _ := p.whoami(ctx, t, p.pgPort, "app_writer", fresh); cur != "app_writer" {
			t.Fatalf("after rotation: current_user %q", cur)
		}
		p.mustBeRefused(ctx, t, "app_writer", old, "unknown_kid")
	})

	t.Run("CloudNativePGImageVolume", func(t *testing.T) { p.cnpg(ctx, t) })

	// The module image built for each other major (--build-arg PG_MAJOR=19), against
	// the same Keycloak.
	for _, m := range majors[1:] {
		t.Run("PostgreSQL"+m.major, func(t *testing.T) { p.otherMajor(ctx, t, m) })
	}

	t.Run("KeycloakStopped", func(t *testing.T) { p.keycloakStopped(ctx, t) })
}

// startPod starts the holder, Keycloak and PostgreSQL (the module image).
func startPod(ctx context.Context, t *testing.T) *pod {
	t.Helper()
	start := time.Now()
	p := &pod{kcPort: freePort(t), pgPort: freePort(t), cnpgHostPort: freePort(t), majorHostPort: map[string]int{}}
	p.issuer = "http://localhost:" + strconv.Itoa(p.kcPort) + "/realms/" + keycloak.Realm

	nw, err := tcnetwork.New(ctx, tcnetwork.WithLabels(labels()))
	if err != nil {
		t.Fatal(err)
	}
	testcontainers.CleanupNetwork(t, nw)

	// The holder: owns the namespace and the published ports (127.0.0.1 only).
	kcp := strconv.Itoa(p.kcPort)
	bindings := network.PortMap{
		network.MustParsePort(kcp + "/tcp"):      {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: kcp}},
		network.MustParsePort("5432/tcp"):        {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(p.pgPort)}},
		network.MustParsePort(cnpgPort + "/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(p.cnpgHostPort)}},
	}
	exposed := []string{kcp + "/tcp", "5432/tcp", cnpgPort + "/tcp"}
	for _, m := range majors[1:] {
		p.majorHostPort[m.major] = freePort(t)
		bindings[network.MustParsePort(m.port+"/tcp")] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(p.majorHostPort[m.major])}}
		exposed = append(exposed, m.port+"/tcp")
	}
	p.holder, err = testcontainers.Run(ctx, moduleTag,
		testcontainers.WithEntrypoint("sleep", "infinity"),
		testcontainers.WithLabels(labels()),
		tcnetwork.WithNetwork([]string{"pod"}, nw),
		testcontainers.WithExposedPorts(exposed...),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = bindings
			hc.PublishAllPorts = false
		}),
	)
	testcontainers.CleanupContainer(t, p.holder)
	if err != nil {
		t.Fatalf("starting the pod holder: %v", err)
	}
	inPod := func(hc *container.HostConfig) {
		hc.NetworkMode = container.NetworkMode("container:" + p.holder.GetContainerID())
	}
	noEndpoints := testcontainers.WithEndpointSettingsModifier(func(s map[string]*network.EndpointSettings) { clear(s) })

	var realms []testcontainers.ContainerFile
	for _, name := range []string{"realm-postgres.json", "realm-other.json"} {
		f, err := keycloak.RealmFile(name)
		if err != nil {
			t.Fatal(err)
		}
		realms = append(realms, testcontainers.ContainerFile{
			HostFilePath: f, ContainerFilePath: "/opt/keycloak/data/import/" + name, FileMode: 0o644,
		})
	}
	kcStart := time.Now()
	p.kc, err = testcontainers.Run(ctx, kcImage,
		testcontainers.WithCmd("start-dev", "--import-realm", "--http-port="+kcp, "--http-host=0.0.0.0",
			"--hostname=http://localhost:"+kcp, "--health-enabled=true"),
		testcontainers.WithEnv(map[string]string{
			"KC_BOOTSTRAP_ADMIN_USERNAME": keycloak.AdminUser,
			"KC_BOOTSTRAP_ADMIN_PASSWORD": keycloak.AdminPassword,
		}),
		testcontainers.WithFiles(realms...),
		testcontainers.WithLabels(labels()),
		testcontainers.WithHostConfigModifier(inPod),
		noEndpoints,
	)
	testcontainers.CleanupContainer(t, p.kc)
	if err != nil {
		t.Fatalf("starting Keycloak (%s): %v", kcImage, err)
	}
	p.waitKeycloak(ctx, t)
	timed("Keycloak ready", kcStart)

	p.volume = "oauth_jwt-e2e-pgdata-" + runID
	if _, err := docker(ctx, "volume", "create", "--label", runLabel+"="+runID, p.volume); err != nil {
		t.Fatal(err)
	}
	pgStart := time.Now()
	p.pg, err = testcontainers.Run(ctx, moduleTag,
		testcontainers.WithEnv(map[string]string{
			"POSTGRES_PASSWORD":                postgresPassword,
			"OAUTH_JWT_ISSUER":                 p.issuer,
			"OAUTH_JWT_CACHE_REFRESH_INTERVAL": strconv.Itoa(int(refreshEvery / time.Second)),
			"OAUTH_JWT_CACHE_MAX_STALE":        strconv.Itoa(int(staleFor / time.Second)),
			"OAUTH_JWT_KID_REFETCH_INTERVAL":   "1",
			"OAUTH_JWT_HTTP_TIMEOUT":           "2000",
		}),
		testcontainers.WithLabels(labels()),
		testcontainers.WithMounts(testcontainers.VolumeMount(p.volume, "/var/lib/postgresql")),
		testcontainers.WithHostConfigModifier(inPod),
		noEndpoints,
		// TCP answers only once the init script has run and the real server is up.
		testcontainers.WithWaitStrategyAndDeadline(5*time.Minute,
			wait.ForExec([]string{"pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres"}).
				WithPollInterval(time.Second).WithStartupTimeout(5*time.Minute)),
	)
	testcontainers.CleanupContainer(t, p.pg) // registered last: terminated first
	if err != nil {
		dumpLogs(t, p.pg, "postgres")
		t.Fatalf("starting the module image: %v", err)
	}
	timed("PostgreSQL (module image) ready", pgStart)
	timed("pod started", start)
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, p.kc, "keycloak")
			dumpLogs(t, p.pg, "postgres")
		}
	})
	return p
}

// waitKeycloak polls the realm's discovery document through the published port until it
// answers 200 (503 while Keycloak bootstraps), failing early if the container exits.
func (p *pod) waitKeycloak(ctx context.Context, t *testing.T) {
	t.Helper()
	url := "http://127.0.0.1:" + strconv.Itoa(p.kcPort) + "/realms/" + keycloak.Realm + "/.well-known/openid-configuration"
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(8 * time.Minute)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if st, serr := p.kc.State(ctx); serr == nil && !st.Running {
			dumpLogs(t, p.kc, "keycloak")
			t.Fatalf("Keycloak exited (%s, code %d)", st.Status, st.ExitCode)
		}
		if time.Now().After(deadline) {
			dumpLogs(t, p.kc, "keycloak")
			t.Fatalf("Keycloak did not serve %s within 8 minutes (last: %v)", url, err)
		}
		time.Sleep(2 * time.Second)
	}
}

func (p *pod) connect(ctx context.Context, port int, user, token string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable connect_timeout=30", port, user))
	if err != nil {
		return nil, err
	}
	cfg.OAuthTokenProvider = func(context.Context) (string, error) { return token, nil }
	return pgx.ConnectConfig(ctx, cfg)
}

func (p *pod) mustConnect(ctx context.Context, t *testing.T, port int, user, token string) *pgx.Conn {
	t.Helper()
	conn, err := p.connect(ctx, port, user, token)
	if err != nil {
		t.Fatalf("login as %s refused: %v\nserver log:\n%s", user, err, tail(p.serverLog(ctx, t, p.pg), 15))
	}
	return conn
}

func (p *pod) whoami(ctx context.Context, t *testing.T, port int, user, token string) (current, system string) {
	t.Helper()
	conn := p.mustConnect(ctx, t, port, user, token)
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT current_user::text, system_user").Scan(&current, &system); err != nil {
		t.Fatal(err)
	}
	return current, system
}

// mustBeRefused checks that the server refuses the login in its OAuth exchange and, when
// reason is not empty, that the server logged "Reason: <reason>" for it.
//
// pgx 5.12 reports a refused bearer token as "OAuth authentication failed: invalid_token"
// (the server's error response to the SASL exchange) and does not read the FATAL that
// follows, so there is no SQLSTATE to check: the server log says why.
func (p *pod) mustBeRefused(ctx context.Context, t *testing.T, user, token, reason string) {
	t.Helper()
	p.mustBeRefusedBy(ctx, t, p.pg, p.pgPort, user, token, reason)
}

func (p *pod) mustBeRefusedBy(ctx context.Context, t *testing.T, c *testcontainers.DockerContainer, port int, user, token, reason string) {
	t.Helper()
	mark := 0
	if reason != "" {
		mark = strings.Count(p.serverLog(ctx, t, c), "Reason: "+reason)
	}
	conn, err := p.connect(ctx, port, user, token)
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("login as %s accepted; want refused", user)
	}
	var pgErr *pgconn.PgError
	if !(errors.As(err, &pgErr) && pgErr.Code == "28000") && !strings.Contains(err.Error(), "OAuth authentication failed") {
		t.Fatalf("login as %s: %v; want an OAuth authentication failure", user, err)
	}
	if reason != "" {
		p.waitLog(ctx, t, c, "Reason: "+reason, mark)
	}
}

// serverLog returns a container's log (the server logs to stderr).
func (p *pod) serverLog(ctx context.Context, t *testing.T, c *testcontainers.DockerContainer) string {
	t.Helper()
	rc, err := c.Logs(ctx)
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

// waitLog waits until s occurs more than after times in c's log.
func (p *pod) waitLog(ctx context.Context, t *testing.T, c *testcontainers.DockerContainer, s string, after int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if strings.Count(p.serverLog(ctx, t, c), s) > after {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server log: no new %q; last lines:\n%s", s, tail(p.serverLog(ctx, t, c), 30))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// exec runs a command in a container and returns its exit code and output.
func (p *pod) exec(ctx context.Context, t *testing.T, c *testcontainers.DockerContainer, cmd ...string) (int, string) {
	t.Helper()
	code, r, err := c.Exec(ctx, cmd, tcexec.Multiplexed())
	if err != nil {
		t.Fatalf("exec %q: %v", cmd, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

func (p *pod) mustExec(ctx context.Context, t *testing.T, c *testcontainers.DockerContainer, cmd ...string) string {
	t.Helper()
	code, out := p.exec(ctx, t, c, cmd...)
	if code != 0 {
		t.Fatalf("exec %q: exit %d: %s", cmd, code, out)
	}
	return out
}

// psqlInContainer runs the image's own psql in the PostgreSQL container, approves its
// device flow as username and checks psql's output.
func (p *pod) psqlInContainer(ctx context.Context, t *testing.T, username, role, want string) {
	t.Helper()
	if rc, out, stderr := p.psqlDeviceFlow(ctx, t, p.pg, "5432", username, role); rc != "0" || out != want {
		t.Fatalf("psql exited %s and printed %q; want 0 and %q; its stderr:\n%s", rc, out, want, stderr)
	}
}

// psqlDeviceFlow runs psql in container c against localhost:port (TCP, so the OAuth lines
// of pg_hba.conf apply) as role, approves its device flow as username through Keycloak's
// pages, and returns psql's exit code, its output and the lines of its stderr that carry
// no token.
func (p *pod) psqlDeviceFlow(ctx context.Context, t *testing.T, c *testcontainers.DockerContainer, port, username, role string) (rc, out, stderr string) {
	t.Helper()
	// PGOAUTHDEBUG=UNSAFE: libpq refuses the plain-http demo issuer otherwise. It also
	// prints tokens to psql.err, which stays in the container; only prompt lines are read.
	script := fmt.Sprintf(`rm -f /tmp/psql.out /tmp/psql.err /tmp/psql.rc /tmp/psql.rc.new
PGOAUTHDEBUG=UNSAFE psql 'host=localhost port=%s dbname=postgres user=%s oauth_issuer=%s oauth_client_id=%s' \
  -XAtc "SELECT current_user || ' ' || system_user" </dev/null >/tmp/psql.out 2>/tmp/psql.err
echo $? >/tmp/psql.rc.new && mv /tmp/psql.rc.new /tmp/psql.rc
`, port, role, p.issuer, keycloak.DeviceClient)
	if err := c.CopyToContainer(ctx, []byte(script), "/tmp/psql-login.sh", 0o755); err != nil {
		t.Fatal(err)
	}
	if code, out := p.exec(ctx, t, c, "bash", "-c", "setsid bash /tmp/psql-login.sh >/dev/null 2>&1 </dev/null &"); code != 0 {
		t.Fatalf("starting psql: exit %d: %s", code, out)
	}
	safeStderr := func() string {
		_, s := p.exec(ctx, t, c, "cat", "/tmp/psql.err")
		return safeLines(s)
	}
	var uri, code string
	deadline := time.Now().Add(2 * time.Minute)
	for uri == "" {
		if time.Now().After(deadline) {
			t.Fatalf("psql printed no device prompt; its stderr:\n%s", safeStderr())
		}
		time.Sleep(time.Second)
		if rc, _ := p.exec(ctx, t, c, "cat", "/tmp/psql.rc"); rc == 0 {
			t.Fatalf("psql ended before prompting; its stderr:\n%s", safeStderr())
		}
		_, stderr := p.exec(ctx, t, c, "cat", "/tmp/psql.err")
		uri, code = findPrompt(stderr)
	}
	if !strings.HasPrefix(uri, "http://localhost:"+strconv.Itoa(p.kcPort)+"/") {
		t.Fatalf("verification URI %q is not on the pinned hostname", uri)
	}
	if err := keycloak.ApproveDevice(ctx, uri, code, username, keycloak.Passwords[username]); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(2 * time.Minute)
	for {
		if code, out := p.exec(ctx, t, c, "cat", "/tmp/psql.rc"); code == 0 {
			rc = strings.TrimSpace(out)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("psql did not finish within 2 minutes of the approval")
		}
		time.Sleep(time.Second)
	}
	_, out = p.exec(ctx, t, c, "cat", "/tmp/psql.out")
	return rc, strings.TrimSpace(out), safeStderr()
}

// psqlFromHost runs this machine's psql 18 (OJW_PG_CONFIG's bindir, as make test sets
// it) through the published ports and approves its device flow.
func (p *pod) psqlFromHost(ctx context.Context, t *testing.T, username, role, want string) {
	t.Helper()
	psql := hostPsql(t)
	cmd := exec.CommandContext(ctx, psql, "-XAtc", "SELECT current_user || ' ' || system_user",
		fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=%s oauth_issuer=%s oauth_client_id=%s",
			p.pgPort, role, p.issuer, keycloak.DeviceClient))
	cmd.Env = append(os.Environ(), "PGOAUTHDEBUG=UNSAFE", "PGCONNECT_TIMEOUT=60")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	prompt := make(chan [2]string, 1)
	var safe strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if keycloak.SafeStderrLine(line) {
				safe.WriteString(line + "\n")
			}
			if u, c, ok := keycloak.ParseDevicePrompt(line); ok && !sent {
				prompt <- [2]string{u, c}
				sent = true
			}
		}
		close(prompt)
	}()
	var pr [2]string
	select {
	case v, ok := <-prompt:
		if !ok {
			cmd.Wait()
			t.Fatalf("psql printed no device prompt; its stderr:\n%s", safe.String())
		}
		pr = v
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("psql printed no device prompt within 2 minutes")
	}
	if err := keycloak.ApproveDevice(ctx, pr[0], pr[1], username, keycloak.Passwords[username]); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("psql: %v; its stderr:\n%s", err, safe.String())
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("psql did not finish within 2 minutes of the approval")
	}
	if got := strings.TrimSpace(stdout.String()); got != want {
		t.Fatalf("psql printed %q, want %q", got, want)
	}
}

// hostPsql finds a psql 18 with libpq-oauth on this machine.
func hostPsql(t *testing.T) string {
	t.Helper()
	pgConfig := os.Getenv("OJW_PG_CONFIG")
	if pgConfig == "" {
		pgConfig = "/var/cache/oauth_jwt/pg18/bin/pg_config"
	}
	out, err := exec.Command(pgConfig, "--bindir").Output()
	if err != nil {
		t.Fatalf("no psql 18 on this machine (OJW_PG_CONFIG=%q: %v): make test-containers sets OJW_PG_CONFIG; scripts/pg18.sh builds PostgreSQL 18 with libpq-oauth", pgConfig, err)
	}
	psql := filepath.Join(strings.TrimSpace(string(out)), "psql")
	if _, err := os.Stat(psql); err != nil {
		t.Fatalf("no psql beside %s: %v", pgConfig, err)
	}
	return psql
}

func findPrompt(stderr string) (uri, code string) {
	sc := bufio.NewScanner(strings.NewReader(stderr))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if u, c, ok := keycloak.ParseDevicePrompt(sc.Text()); ok {
			return u, c
		}
	}
	return "", ""
}

// safeLines keeps the lines of psql's stderr that carry no token (PGOAUTHDEBUG=UNSAFE
// traces do).
func safeLines(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if keycloak.SafeStderrLine(l) {
			b.WriteString(l + "\n")
		}
	}
	return tail(b.String(), 40)
}

// cnpg proves the CloudNativePG image-volume layout: the content of the cnpg-extension
// image (lib/oauth_jwt.so, lib/oauth_jwt_fetch) in a volume mounted read-only at
// /extensions/oauth-jwt of a plain PostgreSQL image (no oauth_jwt installed), reached
// through dynamic_library_path = '$libdir:/extensions/oauth-jwt/lib' as the operator sets
// it; a login then needs the module and the fetch helper beside it.
func (p *pod) cnpg(ctx context.Context, t *testing.T) {
	vol := "oauth_jwt-e2e-cnpg-" + runID
	if _, err := docker(ctx, "volume", "create", "--label", runLabel+"="+runID, vol); err != nil {
		t.Fatal(err)
	}
	// The image's files into the volume: create (never start) a container of the scratch
	// image, copy its /lib out, unpack it into the volume.
	holder := "oauth_jwt-e2e-cnpg-src-" + runID
	if _, err := docker(ctx, "create", "--label", runLabel+"="+runID, "--name", holder, cnpgTag, "none"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c",
		`docker cp "$1:/lib" - | docker run --rm -i --label "$4" --network none -v "$2:/ext" --entrypoint tar "$3" -x -C /ext`,
		"-", holder, vol, pgImage, runLabel+"="+runID)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("copying the extension image into a volume: %v: %s", err, out)
	}
	docker(ctx, "rm", "-f", holder)

	initScript := filepath.Join(repoRoot, "docker/initdb/10-oauth_jwt.sh")
	c, err := testcontainers.Run(ctx, pgImage,
		testcontainers.WithCmd("postgres", "-c", "port="+cnpgPort,
			"-c", "dynamic_library_path=$libdir:"+cnpgExtDir+"/lib",
			"-c", "extension_control_path=$system:"+cnpgExtDir+"/share"),
		testcontainers.WithEnv(map[string]string{
			"POSTGRES_PASSWORD": postgresPassword,
			"PGPORT":            cnpgPort,
			"OAUTH_JWT_ISSUER":  p.issuer,
		}),
		testcontainers.WithFiles(testcontainers.ContainerFile{
			HostFilePath: initScript, ContainerFilePath: "/docker-entrypoint-initdb.d/10-oauth_jwt.sh", FileMode: 0o755,
		}),
		testcontainers.WithMounts(testcontainers.ContainerMount{
			Source: testcontainers.GenericVolumeMountSource{Name: vol}, Target: cnpgExtDir, ReadOnly: true,
		}),
		testcontainers.WithLabels(labels()),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.NetworkMode = container.NetworkMode("container:" + p.holder.GetContainerID())
		}),
		testcontainers.WithEndpointSettingsModifier(func(s map[string]*network.EndpointSettings) { clear(s) }),
		testcontainers.WithWaitStrategyAndDeadline(5*time.Minute,
			wait.ForExec([]string{"pg_isready", "-h", "127.0.0.1", "-p", cnpgPort, "-U", "postgres"}).
				WithPollInterval(time.Second).WithStartupTimeout(5*time.Minute)),
	)
	testcontainers.CleanupContainer(t, c)
	if err != nil {
		dumpLogs(t, c, "cnpg-postgres")
		t.Fatalf("starting PostgreSQL with the extension volume: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, c, "cnpg-postgres")
		}
	})
	// Nothing of oauth_jwt in the server image's own pkglibdir; the mount is read-only.
	out := p.mustExec(ctx, t, c, "bash", "-c", `ls "$(pg_config --pkglibdir)" | grep -c oauth_jwt; touch `+cnpgExtDir+`/lib/x 2>&1; stat -c '%n %a' `+cnpgExtDir+`/lib/*`)
	if !strings.HasPrefix(out, "0\n") || !strings.Contains(out, "Read-only file system") ||
		!strings.Contains(out, cnpgExtDir+"/lib/oauth_jwt.so ") || !strings.Contains(out, cnpgExtDir+"/lib/oauth_jwt_fetch 755") {
		t.Fatalf("extension volume: %q; want no oauth_jwt in pkglibdir, a read-only mount, lib/oauth_jwt.so and an executable lib/oauth_jwt_fetch", out)
	}
	tok, err := keycloak.ClientCredentialsToken(ctx, p.issuer, keycloak.ServiceClient, keycloak.ServiceSecret)
	if err != nil {
		t.Fatal(err)
	}
	if cur, sys := p.whoami(ctx, t, p.cnpgHostPort, "app_writer", tok); cur != "app_writer" || sys != "oauth:service-account-"+keycloak.ServiceClient {
		t.Fatalf("current_user %q, system_user %q; want app_writer", cur, sys)
	}
	p.mustBeRefusedBy(ctx, t, c, p.cnpgHostPort, "dba", tok, "role_not_allowed")
	// The keys were fetched by the helper beside the module (nothing else can fill the cache).
	out = p.mustExec(ctx, t, c, "bash", "-c", `ls "$PGDATA/oauth_jwt_cache" | wc -l`)
	if n, _ := strconv.Atoi(strings.TrimSpace(out)); n == 0 {
		t.Fatalf("key cache empty after a login: the fetch helper did not run")
	}
}

// otherMajor proves the module image built for m.major (docker/Dockerfile with
// --build-arg PG_MAJOR=<major>), started in the pod on port m.port with the same Keycloak:
//   - a service's token (pgx) logs in, and the session's server is that major with
//     oauth_jwt among its loaded modules: the server loaded the module for the login, which
//     it refuses to do when the module's magic block is not its own major's;
//   - the image's own psql and libpq-oauth log a person in by the device flow;
//   - a refusal's reason is the DETAIL of the server's own failure entry (from PostgreSQL
//     19 on, the module's error_detail; psql finishes the exchange, so the server writes it);
//   - the CloudNativePG extension image of that major carries the very files that server
//     loaded (its layout and mount are proven on the default major: CloudNativePGImageVolume).
func (p *pod) otherMajor(ctx context.Context, t *testing.T, m *majorImages) {
	start := time.Now()
	c, err := testcontainers.Run(ctx, m.module,
		testcontainers.WithCmd("postgres", "-c", "port="+m.port),
		testcontainers.WithEnv(map[string]string{
			"POSTGRES_PASSWORD": postgresPassword,
			"PGPORT":            m.port,
			"OAUTH_JWT_ISSUER":  p.issuer,
		}),
		testcontainers.WithLabels(labels()),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.NetworkMode = container.NetworkMode("container:" + p.holder.GetContainerID())
		}),
		testcontainers.WithEndpointSettingsModifier(func(s map[string]*network.EndpointSettings) { clear(s) }),
		testcontainers.WithWaitStrategyAndDeadline(5*time.Minute,
			wait.ForExec([]string{"pg_isready", "-h", "127.0.0.1", "-p", m.port, "-U", "postgres"}).
				WithPollInterval(time.Second).WithStartupTimeout(5*time.Minute)),
	)
	testcontainers.CleanupContainer(t, c)
	if err != nil {
		dumpLogs(t, c, "postgres-"+m.major)
		t.Fatalf("starting the module image for PostgreSQL %s: %v", m.major, err)
	}
	timed("PostgreSQL "+m.major+" (module image) ready", start)
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, c, "postgres-"+m.major)
		}
	})

	t.Run("TokenLoginLoadsModule", func(t *testing.T) {
		tok, err := keycloak.ClientCredentialsToken(ctx, p.issuer, keycloak.ServiceClient, keycloak.ServiceSecret)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := p.connect(ctx, p.majorHostPort[m.major], "app_writer", tok)
		if err != nil {
			t.Fatalf("login as app_writer refused: %v\nserver log:\n%s", err, tail(p.serverLog(ctx, t, c), 15))
		}
		defer conn.Close(ctx)
		var major int
		var cur, sys, files string
		if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int / 10000, current_user::text, system_user,
			coalesce((SELECT string_agg(file_name, ',') FROM pg_get_loaded_modules() WHERE module_name = 'oauth_jwt'), '')`).
			Scan(&major, &cur, &sys, &files); err != nil {
			t.Fatal(err)
		}
		if strconv.Itoa(major) != m.major {
			t.Errorf("server major %d, want %s", major, m.major)
		}
		if cur != "app_writer" || sys != "oauth:service-account-"+keycloak.ServiceClient {
			t.Errorf("current_user %q, system_user %q; want app_writer, oauth:service-account-%s", cur, sys, keycloak.ServiceClient)
		}
		if files != "oauth_jwt.so" {
			t.Errorf("pg_get_loaded_modules() names oauth_jwt in %q, want oauth_jwt.so", files)
		}
	})

	t.Run("PsqlDeviceFlowInContainer", func(t *testing.T) {
		if rc, out, stderr := p.psqlDeviceFlow(ctx, t, c, m.port, "alice", "alice"); rc != "0" || out != "alice oauth:alice" {
			t.Fatalf("psql exited %s and printed %q; want 0 and %q; its stderr:\n%s", rc, out, "alice oauth:alice", stderr)
		}
	})

	t.Run("RefusedReasonInServerEntry", func(t *testing.T) {
		// carol is in no group: no role (role_not_allowed).
		const entry = `FATAL:  OAuth bearer authentication failed for user "reader"`
		const detail = "DETAIL:  Reason: role_not_allowed. "
		mark := strings.Count(p.serverLog(ctx, t, c), entry)
		rc, out, stderr := p.psqlDeviceFlow(ctx, t, c, m.port, "carol", "reader")
		if rc == "0" || out != "" {
			t.Fatalf("psql as reader with carol's token exited %s and printed %q; want refused", rc, out)
		}
		if !strings.Contains(stderr, "OAuth bearer authentication failed") {
			t.Errorf("psql's stderr:\n%s\nwant the server's refusal", stderr)
		}
		p.waitLog(ctx, t, c, entry, mark)
		lines := strings.Split(p.serverLog(ctx, t, c), "\n")
		found := false
		for i := range len(lines) - 1 {
			if strings.Contains(lines[i], entry) && strings.Contains(lines[i+1], detail) {
				found = true
			}
		}
		if !found {
			t.Fatalf("server log: no %q entry with DETAIL %q; last lines:\n%s", entry, detail, tail(p.serverLog(ctx, t, c), 30))
		}
	})

	t.Run("CloudNativePGImage", func(t *testing.T) {
		desc, err := docker(ctx, "image", "inspect", "--format", `{{index .Config.Labels "org.opencontainers.image.description"}}`, m.cnpg)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(desc, "(PostgreSQL "+m.major+")") {
			t.Errorf("%s is described as %q, want PostgreSQL %s", m.cnpg, strings.TrimSpace(desc), m.major)
		}
		holder := "oauth_jwt-e2e-cnpg-src-" + m.major + "-" + runID
		if _, err := docker(ctx, "create", "--label", runLabel+"="+runID, "--name", holder, m.cnpg, "none"); err != nil {
			t.Fatal(err)
		}
		defer docker(ctx, "rm", "-f", holder)
		// The image's lib/ as a tar stream, hashed; the server image's pkglibdir files, hashed there.
		sums, err := docker(ctx, "cp", holder+":/lib", "-")
		if err != nil {
			t.Fatal(err)
		}
		got, err := tarSHA256(sums)
		if err != nil {
			t.Fatal(err)
		}
		want := p.mustExec(ctx, t, c, "bash", "-c", `cd "$(pg_config --pkglibdir)" && sha256sum oauth_jwt.so oauth_jwt_fetch`)
		for _, name := range []string{"oauth_jwt.so", "oauth_jwt_fetch"} {
			if got["lib/"+name] == "" || !strings.Contains(want, got["lib/"+name]+"  "+name) {
				t.Errorf("%s: lib/%s has sha256 %q; the server's pkglibdir (sha256sum):\n%s", m.cnpg, name, got["lib/"+name], want)
			}
		}
	})
}

// tarSHA256 returns the sha256 (hex) of each regular file of a tar stream, by name.
func tarSHA256(stream string) (map[string]string, error) {
	sums := map[string]string{}
	tr := tar.NewReader(strings.NewReader(stream))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return sums, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			return nil, err
		}
		sums[h.Name] = hex.EncodeToString(sum.Sum(nil))
	}
}

// keycloakStopped: with Keycloak stopped, the cached keys keep serving logins (with a
// WARNING) until cache_max_stale, also after a restart of the PostgreSQL container (the
// cache is on its volume), and then logins are refused (keys_unavailable). Keycloak
// started again, logins work again.
func (p *pod) keycloakStopped(ctx context.Context, t *testing.T) {
	tok, err := keycloak.ClientCredentialsToken(ctx, p.issuer, keycloak.ServiceClient, keycloak.ServiceSecret)
	if err != nil {
		t.Fatal(err)
	}
	p.whoami(ctx, t, p.pgPort, "app_writer", tok) // the keys are fetched now
	lastFetch := time.Now()
	stop := 30 * time.Second
	if err := p.kc.Stop(ctx, &stop); err != nil {
		t.Fatal(err)
	}
	kcStopped := true
	t.Cleanup(func() {
		if kcStopped {
			p.kc.Start(context.Background())
		}
	})

	time.Sleep(refreshEvery + time.Second)
	t.Run("stale keys serve", func(t *testing.T) {
		mark := strings.Count(p.serverLog(ctx, t, p.pg), "WARNING")
		p.whoami(ctx, t, p.pgPort, "app_writer", tok)
		p.waitLog(ctx, t, p.pg, "WARNING", mark)
	})

	t.Run("container restart keeps the cache", func(t *testing.T) {
		if err := p.pg.Stop(ctx, &stop); err != nil {
			t.Fatal(err)
		}
		if err := p.pg.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if time.Since(lastFetch) > staleFor-10*time.Second {
			t.Fatalf("the restart took %s: too close to cache_max_stale %s to tell", time.Since(lastFetch), staleFor)
		}
		if cur, _ := p.whoami(ctx, t, p.pgPort, "app_writer", tok); cur != "app_writer" {
			t.Fatalf("current_user %q", cur)
		}
	})

	var refusedAt time.Time
	t.Run("refused past cache_max_stale", func(t *testing.T) {
		time.Sleep(time.Until(lastFetch.Add(staleFor + 2*time.Second)))
		p.mustBeRefused(ctx, t, "app_writer", tok, "keys_unavailable")
		refusedAt = time.Now()
	})

	t.Run("Keycloak back", func(t *testing.T) {
		if err := p.kc.Start(ctx); err != nil {
			t.Fatal(err)
		}
		kcStopped = false
		p.waitKeycloak(ctx, t)
		// The refused login's failed fetch is recorded: no backend retries
		// before the cache's retry interval has passed (a hanging provider
		// costs one timeout per interval, not one per login). A restart
		// faster than that interval must wait it out.
		time.Sleep(time.Until(refusedAt.Add(keycache.DefaultRetryInterval + 2*time.Second)))
		fresh, err := keycloak.ClientCredentialsToken(ctx, p.issuer, keycloak.ServiceClient, keycloak.ServiceSecret)
		if err != nil {
			t.Fatal(err)
		}
		if cur, _ := p.whoami(ctx, t, p.pgPort, "app_writer", fresh); cur != "app_writer" {
			t.Fatalf("current_user %q", cur)
		}
	})
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
