package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
)

// psqlRun is what one psql device-flow login did.
type psqlRun struct {
	Stdout   string
	Stderr   string // psql's own lines and the prompt only; never the debug traces
	Prompted bool   // the device-flow prompt was seen and approved
	Err      error  // psql's exit status
}

// psqlDeviceLogin runs the cluster's real psql with the device flow against realm postgres
// (client psql) as database user dbUser, reads its stderr line by line as it runs, and when
// the prompt "Visit <uri> and enter the code: <code>" appears approves it as approver, the
// way a person with a browser would. It returns the result of
// `select current_user, system_user` (unaligned, comma-separated).
//
// PGOAUTHDEBUG=UNSAFE only because the loopback issuer is plain http; its traces hold
// secrets (the tokens), so they are never kept: only psql's error lines and the prompt are.
// The tokens seen in the traces are remembered, so that the server logs are checked for
// them too.
func psqlDeviceLogin(t *testing.T, e *env, dbUser, approver string) psqlRun {
	t.Helper()
	return psqlDevice(t, e, psqlConninfo(e, dbUser, keycloak.DeviceClient), approver)
}

// psqlConninfo is the conninfo of a device-flow login to e as dbUser through client.
func psqlConninfo(e *env, dbUser, client string) string {
	return "host=127.0.0.1 port=" + strconv.Itoa(e.Port) + " dbname=postgres user=" + dbUser +
		" oauth_issuer=" + issuer() + " oauth_client_id=" + client
}

// psqlDevice is psqlDeviceLogin with the caller's conninfo.
func psqlDevice(t *testing.T, e *env, conninfo, approver string) psqlRun {
	t.Helper()
	ctx := ctxT(t, 3*time.Minute)
	cmd := exec.CommandContext(ctx, e.Bin("psql"), "-X", "-A", "-t", "-F", ",", "-w",
		"-d", conninfo, "-c", "select current_user, system_user")
	cmd.Env = append(cleanEnv(), "PGOAUTHDEBUG=UNSAFE")
	cmd.WaitDelay = 10 * time.Second
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	type prompt struct{ uri, code string }
	prompts := make(chan prompt, 1)
	var kept []string
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r := bufio.NewReader(pipe)
		sent := false
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				for _, tok := range jwtRE.FindAllString(line, -1) {
					remember(tok)
				}
				if uri, code, ok := keycloak.ParseDevicePrompt(line); ok {
					kept = append(kept, strings.TrimRight(line, "\r\n"))
					if !sent {
						prompts <- prompt{uri, code}
						sent = true
					}
				} else if keycloak.SafeStderrLine(line) {
					kept = append(kept, strings.TrimRight(line, "\r\n"))
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					kept = append(kept, "(reading stderr: "+err.Error()+")")
				}
				return
			}
		}
	}()

	run := psqlRun{}
	select {
	case p := <-prompts:
		run.Prompted = true
		t.Logf("psql prompted for %s; approving as %s", p.uri, approver)
		if err := keycloak.ApproveDevice(ctx, p.uri, p.code, approver, keycloak.Passwords[approver]); err != nil {
			_ = cmd.Process.Kill()
			<-readDone
			_ = cmd.Wait()
			t.Fatalf("approving the device code as %s: %v", approver, err)
		}
	case <-readDone: // psql ended (or closed stderr) without a prompt
	}
	<-readDone
	run.Err = cmd.Wait()
	run.Stdout = stdout.String()
	run.Stderr = scrub(strings.Join(kept, "\n"))
	return run
}

// cleanEnv is the environment without libpq variables that could change the connection.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// pg_ident mode: the identity is preferred_username, the map "sso" says which role it may use.
func TestPsqlDeviceFlowIdentMap(t *testing.T) {
	needKeycloak(t)
	e := newEnv(t, nil, []string{hbaMap(issuer(), "sso")}, "alice", "bob")
	e.writeIdent(t, "sso alice alice", "sso bob bob")
	e.Reload()

	t.Run("alice as alice", func(t *testing.T) {
		mark := e.LogMark()
		r := psqlDeviceLogin(t, e, "alice", "alice")
		if r.Err != nil || !r.Prompted {
			t.Fatalf("psql: %v (prompted %v)\nstderr:\n%s\nserver log:\n%s", r.Err, r.Prompted, r.Stderr, scrub(e.LogSince(mark)))
		}
		if got := strings.TrimSpace(r.Stdout); got != "alice,oauth:alice" {
			t.Errorf("current_user,system_user = %q, want alice,oauth:alice", got)
		}
		log := e.LogSince(mark)
		if !strings.Contains(log, `connection authenticated: identity="alice" method=oauth`) {
			t.Errorf("server log lacks the authenticated identity:\n%s", scrub(log))
		}
	})
	// bob approves a login as alice: the token is valid, the map refuses it.
	t.Run("bob as alice refused by the map", func(t *testing.T) {
		mark := e.LogMark()
		r := psqlDeviceLogin(t, e, "alice", "bob")
		if r.Err == nil {
			t.Fatalf("psql logged in as alice with bob's token: %q", r.Stdout)
		}
		if !r.Prompted {
			t.Errorf("psql failed before the device flow:\n%s", r.Stderr)
		}
		if !strings.Contains(r.Stderr, `OAuth bearer authentication failed for user "alice"`) {
			t.Errorf("psql's error does not name the failed OAuth login:\n%s", r.Stderr)
		}
		e.waitLog(t, mark, `no match in usermap "sso" for user "alice" authenticated as "bob"`)
	})
}

// Delegated mode: the groups claim decides (dba → pgadmin).
func TestPsqlDeviceFlowDelegated(t *testing.T) {
	needKeycloak(t)
	e := newEnv(t, delegatedConf, []string{hbaDelegated(issuer())}, roleAdmin, roleReader)

	t.Run("alice (group dba) as pgadmin", func(t *testing.T) {
		mark := e.LogMark()
		r := psqlDeviceLogin(t, e, roleAdmin, "alice")
		if r.Err != nil || !r.Prompted {
			t.Fatalf("psql: %v (prompted %v)\nstderr:\n%s\nserver log:\n%s", r.Err, r.Prompted, r.Stderr, scrub(e.LogSince(mark)))
		}
		if got := strings.TrimSpace(r.Stdout); got != roleAdmin+",oauth:alice" {
			t.Errorf("current_user,system_user = %q, want %s,oauth:alice", got, roleAdmin)
		}
		log := e.LogSince(mark)
		if !strings.Contains(log, "oauth_jwt: bearer token accepted") {
			t.Errorf("server log lacks the acceptance:\n%s", scrub(log))
		}
	})
	t.Run("carol (no group) as reader refused", func(t *testing.T) {
		mark := e.LogMark()
		r := psqlDeviceLogin(t, e, roleReader, "carol")
		if r.Err == nil {
			t.Fatalf("psql logged in as reader with carol's token: %q", r.Stdout)
		}
		if !strings.Contains(r.Stderr, `OAuth bearer authentication failed for user "reader"`) {
			t.Errorf("psql's error does not name the failed OAuth login:\n%s", r.Stderr)
		}
		log := e.waitLog(t, mark, `OAuth bearer authentication failed for user "reader"`)
		if !strings.Contains(log, "Reason: role_not_allowed.") {
			t.Errorf("server log lacks role_not_allowed:\n%s", scrub(log))
		}
	})
	// A client that is not the psql client (no-audience, same realm, same user): the
	// server's policy refuses its token even though the device flow succeeds.
	t.Run("client without the audience mapper refused", func(t *testing.T) {
		mark := e.LogMark()
		r := psqlDevice(t, e, psqlConninfo(e, roleAdmin, keycloak.NoAudienceClient), "alice")
		if r.Err == nil {
			t.Fatalf("psql logged in with a token without audience: %q", r.Stdout)
		}
		log := e.waitLog(t, mark, `OAuth bearer authentication failed for user "`+roleAdmin+`"`)
		if !strings.Contains(log, "Reason: aud_mismatch.") {
			t.Errorf("server log lacks aud_mismatch:\n%s", scrub(log))
		}
	})
}
