package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
)

// rotate replaces realm postgres's RS256 signing key through the admin API, with the old
// key provider treated as old says; it returns the new kid and checks the JWKS.
func rotate(t *testing.T, old keycloak.OldKeys) string {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	admin, err := kc.Admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before, err := keycloak.FetchJWKS(ctx, issuer())
	if err != nil {
		t.Fatal(err)
	}
	newKID, _, err := admin.RotateRSAKey(ctx, keycloak.Realm, old)
	if err != nil {
		t.Fatalf("rotating the signing key: %v", err)
	}
	after, err := keycloak.FetchJWKS(ctx, issuer())
	if err != nil {
		t.Fatal(err)
	}
	kids := func(ks []keycloak.JWK) (out []string) {
		for _, k := range ks {
			if k.Use == "sig" {
				out = append(out, k.Kid)
			}
		}
		return out
	}
	if !slices.Contains(kids(after), newKID) {
		t.Fatalf("the JWKS lacks the new kid %s: %v", newKID, kids(after))
	}
	for _, k := range kids(before) {
		if inAfter := slices.Contains(kids(after), k); inAfter != (old == keycloak.OldKeysPassive) {
			t.Fatalf("old kid %s in the JWKS after rotation: %v (old keys %v)", k, inAfter, old)
		}
	}
	t.Logf("rotated: signing kid %s; JWKS signing kids %v", newKID, kids(after))
	return newKID
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, _ := claims(t, tok)
	kid, _ := h["kid"].(string)
	return kid
}

// Key rotation with the old key removed (disabled: gone from the JWKS).
func TestKeyRotation(t *testing.T) {
	needKeycloak(t)

	// A new kid makes the cache refetch at once (at most once per kid_refetch_interval);
	// the removed key works until the cache has refetched, then fails.
	t.Run("unknown kid refetch", func(t *testing.T) {
		e := newEnv(t, delegatedConf, []string{hbaDelegated(issuer())}, roleWriter)
		e.setConf(map[string]string{
			"oauth_jwt.cache_refresh_interval": "'1h'",
			"oauth_jwt.kid_refetch_interval":   "'1h'",
		})
		const id = "oauth:service-account-pg-service"
		old := serviceToken(t)
		e.loginAs(t, roleWriter, old, id) // fetches discovery and JWKS
		newKID := rotate(t, keycloak.OldKeysDisabled)
		fresh := serviceToken(t)
		if kidOf(t, fresh) != newKID || kidOf(t, old) == newKID {
			t.Fatalf("kids: old token %s, new token %s, new key %s", kidOf(t, old), kidOf(t, fresh), newKID)
		}

		t.Run("removed key still cached: old token accepted", func(t *testing.T) {
			e.loginAs(t, roleWriter, old, id)
		})
		t.Run("new kid within kid_refetch_interval: unknown_kid", func(t *testing.T) {
			e.refused(t, roleWriter, fresh, "unknown_kid")
		})
		e.setConf(map[string]string{"oauth_jwt.kid_refetch_interval": "'1s'"})
		time.Sleep(1100 * time.Millisecond) // the last fetch attempt is older than 1 s
		t.Run("new kid after kid_refetch_interval: one refetch, accepted", func(t *testing.T) {
			e.loginAs(t, roleWriter, fresh, id)
		})
		t.Run("old token after the refetch: unknown_kid", func(t *testing.T) {
			log := e.refused(t, roleWriter, old, "unknown_kid")
			if !strings.Contains(log, kidOf(t, old)) {
				t.Logf("note: the detail does not name the kid:\n%s", scrub(log))
			}
		})
		t.Run("old token again: unknown_kid", func(t *testing.T) {
			time.Sleep(1100 * time.Millisecond) // allowed to refetch again: still gone
			e.refused(t, roleWriter, old, "unknown_kid")
		})
	})

	// Without any new token: once cache_refresh_interval has passed, the next login
	// refreshes the cache and the removed key is gone.
	t.Run("cache refresh", func(t *testing.T) {
		e := newEnv(t, delegatedConf, []string{hbaDelegated(issuer())}, roleWriter, roleReader)
		e.setConf(map[string]string{
			"oauth_jwt.cache_refresh_interval": "'2s'",
			"oauth_jwt.kid_refetch_interval":   "'1h'",
		})
		const id = "oauth:service-account-pg-service"
		old := serviceToken(t)
		bobOld := userToken(t, "bob")
		fetched := time.Now()
		e.loginAs(t, roleWriter, old, id)
		rotate(t, keycloak.OldKeysDisabled)
		if d := time.Until(fetched.Add(2500 * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		t.Run("old service token after the refresh: unknown_kid", func(t *testing.T) {
			e.refused(t, roleWriter, old, "unknown_kid")
		})
		t.Run("old user token after the refresh: unknown_kid", func(t *testing.T) {
			e.refused(t, roleReader, bobOld, "unknown_kid")
		})
		// The refresh brought the new key: no kid refetch needed (it would be refused:
		// kid_refetch_interval is 1 h).
		t.Run("new token: accepted", func(t *testing.T) {
			e.loginAs(t, roleWriter, serviceToken(t), id)
		})
	})

	// Keycloak's usual rotation keeps the old key passive (published, not signing):
	// tokens signed before the rotation keep working after the cache refetched.
	t.Run("old key passive", func(t *testing.T) {
		e := newEnv(t, delegatedConf, []string{hbaDelegated(issuer())}, roleWriter)
		e.setConf(map[string]string{"oauth_jwt.kid_refetch_interval": "'1s'"})
		const id = "oauth:service-account-pg-service"
		old := serviceToken(t)
		e.loginAs(t, roleWriter, old, id)
		rotate(t, keycloak.OldKeysPassive)
		time.Sleep(1100 * time.Millisecond)
		e.loginAs(t, roleWriter, serviceToken(t), id) // refetch: new key
		e.loginAs(t, roleWriter, old, id)             // the passive key still verifies
	})
}
