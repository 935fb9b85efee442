package integration

import (
	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Real psql (libpq with libpq-oauth) logs in through the whole path: the
// empty-token first connection, discovery, the device flow against the
// test identity provider (which approves at once), the reconnect with the
// token, oauth_jwt's verdict.
func TestPsqlDeviceFlowLogin(t *testing.T) {
	e := newIdPEnv(t, "alice")
	e.IdP.SetDeviceClaims(map[string]any{"sub": "alice", "aud": testAudience, "scope": "openid"})
	ctx := ctxT(t, 90*time.Second)
	conninfo := "host=127.0.0.1 port=" + itoa(e.PG.Port) + " dbname=postgres user=alice" +
		" oauth_issuer=" + e.IdP.Issuer() + " oauth_client_id=psql"
	// PGOAUTHDEBUG=UNSAFE only because the loopback issuer is plain http.
	mark := e.PG.LogMark()
	out, stderr, err := e.PG.Psql(ctx, []string{"PGOAUTHDEBUG=UNSAFE"},
		"-X", "-A", "-t", "-w", "-d", conninfo, "-c", "select current_user || ',' || system_user")
	if err != nil {
		t.Fatalf("psql: %v\nstderr:\n%s\nserver log:\n%s", err, redactDebug(stderr), e.PG.LogSince(mark))
	}
	if !regexp.MustCompile(`Visit \S+ and enter the code: \S+`).MatchString(stderr) {
		t.Errorf("psql did not print the device-flow prompt:\n%s", redactDebug(stderr))
	}
	if got := strings.TrimSpace(out); got != "alice,oauth:alice" {
		t.Errorf("current_user,system_user = %q, want alice,oauth:alice", got)
	}
	log := e.PG.LogSince(mark)
	if !strings.Contains(log, `connection authenticated: identity="alice" method=oauth`) {
		t.Errorf("server log lacks the authenticated identity:\n%s", log)
	}
}

// redactDebug drops PGOAUTHDEBUG's HTTP traces (which contain the token)
// from psql's stderr before a test prints it.
func redactDebug(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if keycloak.SafeStderrLine(line) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

func itoa(i int) string { return strconv.Itoa(i) }
