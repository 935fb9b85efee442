package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// The server's clock cannot be changed from a test; a skewed identity
// provider's clock can: its tokens carry iat, nbf and exp shifted by the
// skew. Skew within oauth_jwt.leeway is tolerated, beyond it refused with
// the reason that names the claim.
func TestClockSkew(t *testing.T) {
	c := newCluster(t, nil)
	idp := c.use(t, testidp.Options{})
	type tc struct {
		name   string
		skew   time.Duration // the identity provider's clock minus the server's
		ttl    time.Duration // token lifetime by the provider's clock
		noNBF  bool
		reason string // "" accepted
	}
	groups := []struct {
		leeway, label string
		cases         []tc
	}{
		{"30s", "30 s (default)", []tc{
			{"provider 10 min behind, 5-min token", -10 * time.Minute, 5 * time.Minute, false, "expired"},
			{"provider 75 s behind, 60-s token (expired 15 s ago)", -75 * time.Second, time.Minute, false, ""},
			{"provider 100 s behind, 60-s token (expired 40 s ago)", -100 * time.Second, time.Minute, false, "expired"},
			{"provider 20 s ahead", 20 * time.Second, 5 * time.Minute, false, ""},
			{"provider 45 s ahead", 45 * time.Second, 5 * time.Minute, false, "not_yet_valid"},
			{"provider 45 s ahead, no nbf (Keycloak)", 45 * time.Second, 5 * time.Minute, true, "iat_in_future"},
			{"provider 10 min ahead", 10 * time.Minute, 5 * time.Minute, false, "not_yet_valid"},
		}},
		{"0", "0", []tc{
			{"provider 5 s ahead", 5 * time.Second, 5 * time.Minute, false, "not_yet_valid"},
			{"provider 62 s behind, 60-s token (expired 2 s ago)", -62 * time.Second, time.Minute, false, "expired"},
			{"no skew", 0, 5 * time.Minute, false, ""},
		}},
		{"300s", "300 s (the maximum)", []tc{
			{"provider 4 min ahead", 4 * time.Minute, 10 * time.Minute, false, ""},
			{"provider 6 min ahead", 6 * time.Minute, 10 * time.Minute, false, "not_yet_valid"},
			{"provider 6 min behind, 5-min token (expired 1 min ago)", -6 * time.Minute, 5 * time.Minute, false, ""},
		}},
	}
	for _, g := range groups {
		lw := g.leeway
		c.setConf(t, map[string]string{"oauth_jwt.leeway": "'" + lw + "'"})
		for _, k := range g.cases {
			t.Run(fmt.Sprintf("leeway %s/%s", lw, k.name), func(t *testing.T) {
				now := time.Now().Add(k.skew)
				claims := map[string]any{"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(k.ttl).Unix()}
				if k.noNBF {
					claims["nbf"] = nil
				}
				row := Outcome{Fault: "clock skew: " + k.name, Cache: "leeway " + g.label, Token: "valid but for the skew"}
				c.expect(t, row, "alice", token(t, idp, "alice", claims), k.reason == "", k.reason)
			})
		}
	}
}
