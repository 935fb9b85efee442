package faults

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// cluster is a server whose TCP logins use oauth_jwt against the issuer
// of the current test identity provider (see use).
type cluster struct {
	*pgtest.Cluster
	watch *loadkit.CrashWatch
	conf  map[string]string
}

// newCluster starts a server with the roles alice and bob and oauth_jwt
// settings conf (over loadkit.BaseConf; accepted logins logged at LOG so
// every verdict leaves a line).
func newCluster(t *testing.T, conf map[string]string) *cluster {
	t.Helper()
	c := pgtest.New(t, pgtest.Options{})
	kv := loadkit.BaseConf(map[string]string{"oauth_jwt.log_accepted": "on"})
	for k, v := range conf {
		kv[k] = v
	}
	c.SetConf(kv)
	c.Exec("create role alice login", "create role bob login")
	cl := &cluster{Cluster: c, watch: loadkit.WatchCrashes(t, c), conf: kv}
	t.Cleanup(func() { cl.watch.Check(t) })
	return cl
}

// setConf changes some settings and reloads.
func (c *cluster) setConf(t *testing.T, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		c.conf[k] = v
	}
	c.SetConf(c.conf)
}

// use starts a fresh identity provider (so a cold key cache) and points
// every oauth login at it.
func (c *cluster) use(t *testing.T, opts testidp.Options) *testidp.IdP {
	t.Helper()
	idp := loadkit.StartIdP(t, opts)
	c.SetHBA(loadkit.HBA("all", idp.Issuer()))
	return idp
}

// attempt is one login and what the server logged about it.
type attempt struct {
	accepted bool
	err      error
	took     time.Duration
	log      string // the server log of this login
}

// reason is the reason code logged, "" when none.
func (a attempt) reason() string {
	if m := reasonRE.FindStringSubmatch(a.log); m != nil {
		return m[1]
	}
	return ""
}

var reasonRE = regexp.MustCompile(`Reason: ([a-z_]+)\.`)

// internal says whether the server logged an internal error of the module.
func (a attempt) internal() bool {
	return strings.Contains(a.log, "internal error in OAuth validator module")
}

// result names the outcome for the table.
func (a attempt) result() string {
	switch {
	case a.accepted:
		return "accepted"
	case a.internal():
		return "refused (internal error)"
	}
	return "refused"
}

// evidence is the most telling log line: the validator's own failure, the
// stale-key warning or the rejection detail, without the log prefix.
func (a attempt) evidence() string {
	lines := strings.Split(a.log, "\n")
	pick := func(pred func(string) bool, next bool) string {
		for i, l := range lines {
			if pred(l) {
				if next && i+1 < len(lines) {
					l = lines[i+1]
				}
				return trimPrefix(l)
			}
		}
		return ""
	}
	if s := pick(func(l string) bool { return strings.Contains(l, "oauth_jwt: validator failed") }, true); s != "" {
		return s
	}
	if s := pick(func(l string) bool { return strings.Contains(l, "WARNING:  oauth_jwt: using stale signing keys") }, true); s != "" && a.accepted {
		return "WARNING using stale signing keys: " + s
	}
	if a.accepted {
		return ""
	}
	if s := pick(func(l string) bool { return strings.Contains(l, "Reason: ") }, false); s != "" {
		return s
	}
	return pick(func(l string) bool { return strings.Contains(l, "FATAL:") }, false)
}

var prefixRE = regexp.MustCompile(`^\S+ \S+ \S+ \[\d+\] (\S+@\S+ )?`)

func trimPrefix(l string) string {
	l = prefixRE.ReplaceAllString(l, "")
	l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "DETAIL:"))
	if len(l) > 1200 {
		l = l[:1200] + "…"
	}
	return l
}

// login connects as role with tok and returns what happened, waiting for
// the server's verdict line so that a.log is complete.
func (c *cluster) login(t *testing.T, role, tok string) attempt {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mark := c.LogMark()
	start := time.Now()
	conn, err := c.ConnectOAuth(ctx, role, tok)
	a := attempt{err: err, took: time.Since(start), accepted: err == nil}
	if err == nil {
		var who string
		if qerr := conn.QueryRow(ctx, "select current_user").Scan(&who); qerr != nil || who != role {
			t.Errorf("logged in as %q (%v), want %q", who, qerr, role)
		}
		conn.Close(ctx)
		a.log = c.WaitLog(mark, "oauth_jwt: bearer token accepted")
	} else {
		// A rejection logs PostgreSQL's "authentication failed" line; an
		// internal error of the module only its WARNING.
		a.log = c.waitAny(t, mark, `authentication failed for user "`+role+`"`, "internal error in OAuth validator module")
	}
	assertNoToken(t, a.log, tok)
	return a
}

// waitAny waits until the log after mark contains one of wants.
func (c *cluster) waitAny(t *testing.T, mark int64, wants ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := c.LogSince(mark)
		for _, w := range wants {
			if strings.Contains(s, w) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server log does not contain any of %q; log since mark:\n%s", wants, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expect logs in and checks the outcome: accepted, or refused with reason
// (a reason code, or for internal errors a text the log must contain).
// It records the row and returns the attempt.
func (c *cluster) expect(t *testing.T, row Outcome, role, tok string, accepted bool, reason string) attempt {
	t.Helper()
	a := c.login(t, role, tok)
	row.Result, row.Reason, row.Evidence, row.Seconds = a.result(), a.reason(), a.evidence(), a.took.Seconds()
	if a.internal() && row.Reason == "" {
		row.Reason = internalReason(a.log)
	}
	record(row)
	switch {
	case accepted && !a.accepted:
		t.Errorf("%s/%s/%s: refused (%v), want accepted; log:\n%s", row.Fault, row.Cache, row.Token, a.err, a.log)
	case !accepted && a.accepted:
		t.Errorf("%s/%s/%s: ACCEPTED, want refused with %s; log:\n%s", row.Fault, row.Cache, row.Token, reason, a.log)
	case !accepted && reason != "" && a.reason() != reason && !strings.Contains(a.log, reason):
		t.Errorf("%s/%s/%s: refused, but the log does not say %q; log:\n%s", row.Fault, row.Cache, row.Token, reason, a.log)
	}
	return a
}

// internalReason guesses the reason code of an internal error from its
// text (the shim logs the error, the code is in the README's table).
func internalReason(log string) string {
	switch {
	case strings.Contains(log, "insecure key cache"):
		return "insecure_cache"
	case strings.Contains(log, "config"):
		return "config_error"
	}
	return "internal_error"
}

// assertNoToken fails when tok or a segment of it is in log.
func assertNoToken(t *testing.T, log, tok string) {
	t.Helper()
	if len(tok) >= 8 && strings.Contains(log, tok) {
		t.Errorf("the token reached the server log")
		return
	}
	for _, seg := range strings.Split(tok, ".") {
		if len(seg) >= 8 && strings.Contains(log, seg) {
			t.Errorf("a token segment reached the server log")
			return
		}
	}
}

// token is a valid token for sub from idp.
func token(t *testing.T, idp *testidp.IdP, sub string, over map[string]any, opts ...testidp.MintOption) string {
	t.Helper()
	return loadkit.Token(t, idp, sub, over, opts...)
}

// forged is a token for alice whose signature is by a key the IdP does
// not publish, under the IdP's active kid.
func forged(t *testing.T, idp *testidp.IdP) string {
	t.Helper()
	tok, err := idp.MintWithForeignKey(loadkit.Claims("alice", nil))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsigned is an alg "none" token for alice.
func unsigned(t *testing.T, idp *testidp.IdP) string {
	t.Helper()
	tok, err := idp.MintNone(loadkit.Claims("alice", nil))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
