package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oauth-jwt/oauth_jwt/examples/pgxtoken"
	"github.com/oauth-jwt/oauth_jwt/test/clients"
	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
)

// The client examples of docs/clients.md against Keycloak: the pgx service
// (examples/pgxtoken) gets its client-credentials token from Keycloak's
// token endpoint itself, and the libpq program (examples/libpq_token_hook)
// presents a Keycloak service-account token through PQsetAuthDataHook. Both
// land on the role client_role_map gives pg-service. (psql's device flow:
// TestPsqlDeviceFlowIdentMap, TestPsqlDeviceFlowDelegated.)
func TestClientExamples(t *testing.T) {
	needKeycloak(t)
	prog := clients.BuildTokenHook(t)
	e := newEnv(t, delegatedConf, []string{hbaDelegated(issuer())}, roleReader, roleWriter)
	want := roleWriter + ",oauth:service-account-" + keycloak.ServiceClient

	t.Run("pgx: wrong client secret", func(t *testing.T) {
		src := &pgxtoken.ClientCredentials{TokenURL: keycloak.TokenEndpoint(issuer()),
			ClientID: keycloak.ServiceClient, ClientSecret: "not-the-secret", HTTPClient: &http.Client{Timeout: 30 * time.Second}}
		cfg, err := pgxtoken.Config(e.OAuthConfig(roleWriter, "").ConnString(), src)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.ConnectConfig(ctxT(t, time.Minute), cfg)
		if err == nil {
			conn.Close(context.Background())
			t.Fatal("connected with a wrong client secret")
		}
		if !strings.Contains(err.Error(), "unauthorized_client") && !strings.Contains(err.Error(), "invalid_client") {
			t.Errorf("error %q: want Keycloak's client authentication error", err)
		}
	})
	t.Run("pgx: pg-service as app_writer", func(t *testing.T) {
		src := &pgxtoken.ClientCredentials{TokenURL: keycloak.TokenEndpoint(issuer()),
			ClientID: keycloak.ServiceClient, ClientSecret: keycloak.ServiceSecret, HTTPClient: &http.Client{Timeout: 30 * time.Second}}
		mark := e.LogMark()
		cfg, err := pgxtoken.Config(e.OAuthConfig(roleWriter, "").ConnString(), src)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.ConnectConfig(ctxT(t, time.Minute), cfg)
		if err != nil {
			t.Fatalf("login refused: %v\nserver log:\n%s", err, scrub(e.LogSince(mark)))
		}
		defer conn.Close(context.Background())
		var got string
		if err := conn.QueryRow(ctxT(t, time.Minute), "select current_user || ',' || system_user").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("current_user,system_user = %q, want %q", got, want)
		}
		tok, err := src.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		remember(tok)
		assertNoToken(t, e.LogSince(mark), tok)
	})

	svc := serviceToken(t)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(svc+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, role, want string
	}{
		{"libpq hook: pg-service as reader refused", roleReader, ""},
		{"libpq hook: pg-service as app_writer", roleWriter, want},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := e.LogMark()
			conninfo := "host=127.0.0.1 port=" + strconv.Itoa(e.Port) + " dbname=postgres sslmode=disable user=" + tc.role +
				" oauth_issuer=" + issuer() + " oauth_client_id=" + keycloak.ServiceClient
			cmd := exec.CommandContext(ctxT(t, time.Minute), prog, conninfo)
			// PGOAUTHDEBUG=UNSAFE only because the loopback issuer is plain http.
			cmd.Env = append(cleanEnv(), "PGOAUTHDEBUG=UNSAFE", "OAUTH_TOKEN_FILE="+file)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			assertNoToken(t, stderr.String(), svc)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("logged in as %s: %q", tc.role, stdout.String())
				}
				log := e.waitLog(t, mark, "Reason: role_not_allowed.")
				assertNoToken(t, log, svc)
				return
			}
			if err != nil {
				t.Fatalf("libpq_token_hook: %v\nstderr:\n%s\nserver log:\n%s", err, scrub(stderr.String()), scrub(e.LogSince(mark)))
			}
			if got := strings.TrimSpace(stdout.String()); got != tc.want {
				t.Errorf("current_user,system_user = %q, want %q", got, tc.want)
			}
			if !strings.Contains(stderr.String(), "token requested for "+keycloak.DiscoveryURL(issuer())) {
				t.Errorf("the hook was not asked for a token for %s:\n%s", keycloak.DiscoveryURL(issuer()), scrub(stderr.String()))
			}
			assertNoToken(t, e.LogSince(mark), svc)
		})
	}
}
