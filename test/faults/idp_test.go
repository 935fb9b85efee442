package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// Timings of the identity-provider cases: short, so that every state
// (fresh, stale, beyond the maximum staleness, back) is reached quickly.
const (
	httpTimeout = time.Second
	refresh     = 2 * time.Second
	maxStale    = 6 * time.Second
	// retryInterval is keycache.DefaultRetryInterval: after a failed fetch
	// no backend retries for this long (not a setting).
	retryInterval = 10 * time.Second
)

func idpConf() map[string]string {
	return map[string]string{
		"oauth_jwt.http_timeout":           fmt.Sprintf("'%dms'", httpTimeout.Milliseconds()),
		"oauth_jwt.cache_refresh_interval": fmt.Sprintf("'%dms'", refresh.Milliseconds()),
		"oauth_jwt.cache_max_stale":        fmt.Sprintf("'%dms'", maxStale.Milliseconds()),
	}
}

// idpFault is one way an identity provider misbehaves, what a login on a
// cold cache is refused with, and a text the log must give as the cause.
type idpFault struct {
	name   string
	mode   testidp.Mode
	reason string // "" when logins succeed
	cause  string
}

var idpFaults = []idpFault{
	{"down (connection refused)", testidp.ModeDown, "keys_unavailable", "connection refused"},
	{"hangs", testidp.ModeHang, "keys_unavailable", "timeout awaiting response headers"},
	{"answers 500", testidp.ModeError500, "keys_unavailable", "status 500"},
	{"answers garbage", testidp.ModeGarbage, "keys_unavailable", "JSON"},
	{"answers an 8 MiB body", testidp.ModeHuge, "keys_unavailable", "response too large"},
	{"discovery names another issuer", testidp.ModeIssuerMismatch, "discovery_issuer_mismatch", "names issuer"},
	{"answers after 3 s (beyond http_timeout)", testidp.ModeSlow(3 * time.Second), "keys_unavailable", "timeout awaiting response headers"},
	{"answers after 300 ms (within http_timeout)", testidp.ModeSlow(300 * time.Millisecond), "", ""},
}

// Cold key cache: the first login meets the fault. It is refused within
// the HTTP timeout with a reason naming the cause; a forged token is
// refused too.
func TestIdentityProviderFaultsColdCache(t *testing.T) {
	c := newCluster(t, idpConf())
	for _, f := range idpFaults {
		t.Run(f.name, func(t *testing.T) {
			idp := c.use(t, testidp.Options{})
			if err := idp.SetMode(f.mode); err != nil {
				t.Fatal(err)
			}
			row := Outcome{Fault: "IdP " + f.name, Cache: "cold", Token: "valid"}
			a := c.expect(t, row, "alice", token(t, idp, "alice", nil), f.reason == "", f.reason)
			if f.cause != "" && !strings.Contains(a.log, f.cause) {
				t.Errorf("the log does not give the cause %q:\n%s", f.cause, a.log)
			}
			if !strings.Contains(a.log, idp.Issuer()) {
				t.Errorf("the log does not name the issuer:\n%s", a.log)
			}
			if limit := httpTimeout + 4*time.Second; a.took > limit {
				t.Errorf("the login took %v, more than the HTTP timeout allows (%v)", a.took, limit)
			}
			row.Token = "forged signature"
			want := f.reason
			if want == "" {
				want = "bad_signature"
			}
			c.expect(t, row, "alice", forged(t, idp), false, want)
		})
	}
}

// Warm key cache: the fault is invisible while the keys are fresh; once
// they are stale, logins go on with a WARNING naming the cause and forged
// tokens are still refused; beyond cache_max_stale logins are refused;
// when the identity provider is back, logins succeed again (after at most
// the retry interval).
func TestIdentityProviderFaultsWarmCache(t *testing.T) {
	c := newCluster(t, idpConf())
	for _, f := range idpFaults {
		t.Run(f.name, func(t *testing.T) {
			idp := c.use(t, testidp.Options{})
			row := Outcome{Fault: "IdP " + f.name, Token: "valid"}
			fetched := time.Now()
			if a := c.login(t, "alice", token(t, idp, "alice", nil)); !a.accepted {
				t.Fatalf("warm-up login refused:\n%s", a.log)
			}
			if err := idp.SetMode(f.mode); err != nil {
				t.Fatal(err)
			}
			idp.ResetCounts()

			row.Cache = "warm, fresh"
			a := c.expect(t, row, "alice", token(t, idp, "alice", nil), true, "")
			if time.Since(fetched) >= refresh {
				t.Fatalf("too slow: the keys were no longer fresh (%v)", time.Since(fetched))
			}
			if strings.Contains(a.log, "WARNING") {
				t.Errorf("a fresh cache logged a warning:\n%s", a.log)
			}

			time.Sleep(time.Until(fetched.Add(refresh + 200*time.Millisecond)))
			row.Cache = "warm, stale"
			a = c.expect(t, row, "alice", token(t, idp, "alice", nil), true, "")
			if f.reason != "" {
				w := loadkit.LinesWith(a.log, "using stale signing keys")
				if len(w) == 0 || !strings.Contains(a.log, f.cause) {
					t.Errorf("no WARNING about stale keys naming %q:\n%s", f.cause, a.log)
				}
			}
			row.Token = "forged signature"
			c.expect(t, row, "alice", forged(t, idp), false, "bad_signature")
			row.Token = "alg none"
			c.expect(t, row, "alice", unsigned(t, idp), false, "alg_not_allowed")
			row.Token = "valid, other role"
			c.expect(t, row, "bob", token(t, idp, "alice", nil), false, "role_not_allowed")

			if f.reason == "" {
				return
			}
			time.Sleep(time.Until(fetched.Add(maxStale + 200*time.Millisecond)))
			row.Cache, row.Token = "warm, beyond cache_max_stale", "valid"
			c.expect(t, row, "alice", token(t, idp, "alice", nil), false, f.reason)
			// One attempt per document at most per retry interval, also
			// while every login needs the keys.
			if d, j := idp.Requests(testidp.PathDiscovery), idp.Requests(testidp.PathJWKS); d > 1 || j > 1 {
				t.Errorf("during the fault the identity provider got %d discovery and %d JWKS requests, want at most 1 each", d, j)
			}

			// Back: the next attempt after the retry interval succeeds.
			if err := idp.SetMode(testidp.ModeNormal); err != nil {
				t.Fatal(err)
			}
			back := time.Now()
			tok := token(t, idp, "alice", nil)
			var a2 attempt
			for {
				a2 = c.login(t, "alice", tok)
				if a2.accepted || time.Since(back) > retryInterval+5*time.Second {
					break
				}
				if r := a2.reason(); r != f.reason {
					t.Errorf("while coming back: refused with %q, want %q", r, f.reason)
				}
				time.Sleep(250 * time.Millisecond)
			}
			row.Cache = fmt.Sprintf("back up after %.1f s", time.Since(back).Seconds())
			row.Result, row.Reason, row.Evidence, row.Seconds = a2.result(), a2.reason(), a2.evidence(), a2.took.Seconds()
			record(row)
			if !a2.accepted {
				t.Fatalf("logins still refused %v after the identity provider came back:\n%s", time.Since(back), a2.log)
			}
			if strings.Contains(a2.log, "WARNING") {
				t.Errorf("a login after the recovery still warns:\n%s", a2.log)
			}
		})
	}
}

// A connection storm on a cold cache against a failing identity provider:
// every login is refused, quickly, and the provider gets one request, not
// one per login.
func TestStormAgainstFailingIdentityProvider(t *testing.T) {
	const clients = 50
	c := newCluster(t, idpConf())
	for _, f := range []idpFault{idpFaults[1], idpFaults[2], idpFaults[5]} {
		t.Run(f.name, func(t *testing.T) {
			idp := c.use(t, testidp.Options{})
			if err := idp.SetMode(f.mode); err != nil {
				t.Fatal(err)
			}
			tok := token(t, idp, "alice", nil)
			mark := c.LogMark()
			var accepted, refused atomic.Int64
			var slowest atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for i := 0; i < clients; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					t0 := time.Now()
					conn, err := c.ConnectOAuth(ctx, "alice", tok)
					if err == nil {
						accepted.Add(1)
						conn.Close(ctx)
					} else {
						refused.Add(1)
					}
					for d := int64(time.Since(t0)); ; {
						s := slowest.Load()
						if d <= s || slowest.CompareAndSwap(s, d) {
							break
						}
					}
				}()
			}
			wg.Wait()
			took := time.Since(start)
			time.Sleep(300 * time.Millisecond)
			reasons := loadkit.Reasons(c.LogSince(mark))
			d, j := idp.Requests(testidp.PathDiscovery), idp.Requests(testidp.PathJWKS)
			record(Outcome{Fault: fmt.Sprintf("IdP %s, storm of %d logins", f.name, clients), Cache: "cold", Token: "valid",
				Result:   fmt.Sprintf("%d accepted, %d refused", accepted.Load(), refused.Load()),
				Reason:   loadkit.ReasonsString(reasons),
				Evidence: fmt.Sprintf("identity provider: %d discovery, %d JWKS requests; slowest login %.1f s", d, j, time.Duration(slowest.Load()).Seconds()),
				Seconds:  took.Seconds()})
			if accepted.Load() != 0 {
				t.Errorf("%d logins accepted with no keys", accepted.Load())
			}
			if reasons[f.reason] != clients {
				t.Errorf("reasons logged: %s, want %s=%d", loadkit.ReasonsString(reasons), f.reason, clients)
			}
			if d != 1 || j != 0 {
				t.Errorf("the identity provider got %d discovery and %d JWKS requests, want 1 and 0", d, j)
			}
			if limit := httpTimeout + 10*time.Second; time.Duration(slowest.Load()) > limit {
				t.Errorf("slowest refusal took %v, want under %v", time.Duration(slowest.Load()), limit)
			}
		})
	}
}

// Keys rotate in the middle of a connection storm: tokens under the new
// kid are accepted (one rate-limited refetch), tokens under the old kid
// stay valid while the key is published, and after it is removed and the
// cache has refetched they are refused with unknown_kid.
func TestKeyRotationMidStorm(t *testing.T) {
	const (
		clients = 40
		before  = 4 * time.Second
		after   = 8 * time.Second
		kidWait = 2 * time.Second
	)
	c := newCluster(t, map[string]string{
		"oauth_jwt.kid_refetch_interval": fmt.Sprintf("'%dms'", kidWait.Milliseconds()),
		"oauth_jwt.log_accepted":         "off", // the storm's acceptances need no line each
	})
	idp := c.use(t, testidp.Options{})
	roles := make([]string, clients)
	var sql []string
	for i := range roles {
		roles[i] = fmt.Sprintf("rot_%02d", i)
		sql = append(sql, "create role "+roles[i]+" login")
	}
	c.Exec(sql...)
	oldKID := idp.ActiveKID()
	oldToks := make([]string, clients)
	for i := range oldToks {
		oldToks[i] = token(t, idp, roles[i], nil)
	}
	var newToks atomic.Value // []string, set at the rotation
	idp.ResetCounts()
	mark := c.LogMark()

	type tally struct{ ok, fail atomic.Int64 }
	var oldT, newT tally
	var firstFail atomic.Value
	deadline := time.Now().Add(before + after)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(deadline); n++ {
				tok, tl := oldToks[i], &oldT
				if nt, ok := newToks.Load().([]string); ok && n%2 == 0 {
					tok, tl = nt[i], &newT
				}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				conn, err := c.ConnectOAuth(ctx, roles[i], tok)
				if err == nil {
					tl.ok.Add(1)
					conn.Close(ctx)
				} else {
					tl.fail.Add(1)
					firstFail.CompareAndSwap(nil, err.Error())
				}
				cancel()
			}
		}()
	}
	time.Sleep(before)
	newKID, err := idp.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	nt := make([]string, clients)
	for i := range nt {
		nt[i] = token(t, idp, roles[i], nil)
	}
	newToks.Store(nt)
	wg.Wait()
	log := c.LogSince(mark)
	d, j := idp.Requests(testidp.PathDiscovery), idp.Requests(testidp.PathJWKS)
	record(Outcome{Fault: fmt.Sprintf("keys rotated mid-storm (%d clients)", clients), Cache: "warm", Token: "old kid",
		Result: fmt.Sprintf("%d accepted, %d refused", oldT.ok.Load(), oldT.fail.Load()), Reason: loadkit.ReasonsString(loadkit.Reasons(log)),
		Evidence: fmt.Sprintf("identity provider: %d discovery, %d JWKS requests for the whole storm", d, j)})
	record(Outcome{Fault: fmt.Sprintf("keys rotated mid-storm (%d clients)", clients), Cache: "warm", Token: "new kid",
		Result: fmt.Sprintf("%d accepted, %d refused", newT.ok.Load(), newT.fail.Load()), Reason: loadkit.ReasonsString(loadkit.Reasons(log)),
		Evidence: "one JWKS refetch for the unknown kid, shared by every backend"})
	t.Logf("old kid: %d accepted, %d refused; new kid: %d accepted, %d refused; identity provider: %d discovery, %d JWKS",
		oldT.ok.Load(), oldT.fail.Load(), newT.ok.Load(), newT.fail.Load(), d, j)
	if oldT.fail.Load()+newT.fail.Load() > 0 {
		t.Errorf("logins refused during the rotation (first: %v); reasons: %s", firstFail.Load(), loadkit.ReasonsString(loadkit.Reasons(log)))
	}
	if newT.ok.Load() == 0 || oldT.ok.Load() == 0 {
		t.Errorf("the storm did not exercise both kids")
	}
	if d != 1 || j != 2 {
		t.Errorf("identity provider: %d discovery and %d JWKS requests, want 1 and 2 (cold start, one refetch for the new kid)", d, j)
	}

	// Remove the old key. Until the cache refetches, old tokens still
	// verify (the cache holds the key); a token under an unknown kid makes
	// it refetch, after which old tokens are refused.
	idp.RemoveKey(oldKID)
	row := Outcome{Fault: "old key removed from the JWKS", Cache: "warm, not yet refetched", Token: "old kid"}
	c.setConf(t, map[string]string{"oauth_jwt.log_accepted": "on"})
	c.expect(t, row, roles[0], oldToks[0], true, "")
	time.Sleep(kidWait + 200*time.Millisecond)
	row.Cache, row.Token = "warm", "unknown kid (triggers a refetch)"
	c.expect(t, row, roles[0], token(t, idp, roles[0], nil, testidp.WithKID("no-such-kid")), false, "unknown_kid")
	row.Cache, row.Token = "refetched", "old kid"
	c.expect(t, row, roles[0], oldToks[0], false, "unknown_kid")
	row.Token = "new kid"
	c.expect(t, row, roles[0], nt[0], true, "")
	_ = newKID
}
