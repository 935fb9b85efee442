//go:build docker

package dockere2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
)

// composeProject is the compose project name of the demo under test (not the demo's own
// name, oauth_jwt-demo, so that a demo you run yourself is left alone).
const composeProject = "oauth_jwt-e2e"

// TestComposeDemo brings docker/compose.yaml up as it is (its network design, its health
// checks, its build of docker/Dockerfile) with the images this suite resolved and free
// loopback ports, and logs in through it: a client-credentials token from the demo's
// Keycloak, accepted by the demo's PostgreSQL as app_writer.
//
// The compose CLI: `docker compose` or docker-compose when the machine has one, else the
// one scripts/compose.sh builds from the Go module proxy (testcontainers' compose module
// would add ~140 requirements to go.mod for every user of this module; a CLI kept out of
// go.mod costs nothing to them).
func TestComposeDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, filepath.Join(repoRoot, "scripts/compose.sh"), "path").Output()
	if err != nil {
		t.Fatalf("no compose CLI: scripts/compose.sh path: %v", err)
	}
	cli := strings.TrimSpace(string(out))
	timed("compose CLI", start)

	kcPort, pgPort := freePort(t), freePort(t)
	env := append(os.Environ(),
		"KEYCLOAK_PORT="+strconv.Itoa(kcPort), "POSTGRES_PORT="+strconv.Itoa(pgPort),
		"KEYCLOAK_IMAGE="+kcImage, "POSTGRES_IMAGE="+pgImage, "GO_IMAGE="+goImage,
		"OAUTH_JWT_IMAGE=oauth_jwt-postgres:compose-e2e", "DOCKER_BUILDKIT=0", "COMPOSE_DOCKER_CLI_BUILD=0")
	compose := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, cli, append([]string{"-p", composeProject, "-f", "docker/compose.yaml"}, args...)...)
		cmd.Dir = repoRoot
		cmd.Env = env
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := compose(ctx, "logs", "--no-color", "--tail", "60")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := compose(ctx, "down", "-v", "--remove-orphans", "--timeout", "20"); err != nil {
			t.Errorf("compose down: %v: %s", err, tail(out, 20))
		}
		docker(ctx, "image", "rm", "oauth_jwt-postgres:compose-e2e")
	})
	start = time.Now()
	if out, err := compose(ctx, "up", "--build", "--wait", "--wait-timeout", "900"); err != nil {
		t.Fatalf("compose up: %v:\n%s", err, tail(out, 60))
	}
	timed("compose up --build --wait", start)

	issuer := "http://localhost:" + strconv.Itoa(kcPort) + "/realms/" + keycloak.Realm
	tok, err := keycloak.ClientCredentialsToken(ctx, issuer, keycloak.ServiceClient, keycloak.ServiceSecret)
	if err != nil {
		t.Fatal(err)
	}
	p := &pod{}
	conn, err := p.connect(ctx, pgPort, "app_writer", tok)
	if err != nil {
		t.Fatalf("login through the compose demo: %v", err)
	}
	defer conn.Close(ctx)
	var cur, sys string
	if err := conn.QueryRow(ctx, "SELECT current_user::text, system_user").Scan(&cur, &sys); err != nil {
		t.Fatal(err)
	}
	if cur != "app_writer" || sys != "oauth:service-account-"+keycloak.ServiceClient {
		t.Fatalf("current_user %q, system_user %q; want app_writer", cur, sys)
	}
	// Published on loopback only.
	ports, err := docker(ctx, "ps", "--filter", "label=com.docker.compose.project="+composeProject, "--format", "{{.Ports}}")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.FieldsFunc(ports, func(r rune) bool { return r == ',' || r == '\n' }) {
		if f = strings.TrimSpace(f); strings.Contains(f, "->") && !strings.HasPrefix(f, "127.0.0.1:") {
			t.Errorf("published port %q is not on 127.0.0.1", f)
		}
	}
}
