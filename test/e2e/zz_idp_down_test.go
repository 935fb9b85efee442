package e2e

import (
	"strings"
	"testing"
	"time"
)

// The identity provider goes down. Logins with valid tokens go on from the key cache: at
// first silently, past cache_refresh_interval with a WARNING about stale keys, and past
// cache_max_stale they fail with keys_unavailable. A cluster that never fetched the keys
// fails at once. When Keycloak is back, logins work again.
//
// This test stops the package's Keycloak; it runs last (file order), and needKeycloak
// resumes Keycloak for any test that runs after it.
func TestIdentityProviderDown(t *testing.T) {
	needKeycloak(t)
	const refresh, maxStale = 4 * time.Second, 12 * time.Second
	conf := map[string]string{
		"oauth_jwt.cache_refresh_interval": "'4s'",
		"oauth_jwt.cache_max_stale":        "'12s'",
	}
	for k, v := range delegatedConf {
		conf[k] = v
	}
	hba := []string{hbaDelegated(issuer())}
	e := newEnv(t, conf, hba, roleWriter, roleReader, roleAdmin)
	cold := newEnv(t, conf, hba, roleWriter, roleReader, roleAdmin) // never sees the keys
	const svcID = "oauth:service-account-pg-service"
	svc := serviceToken(t)
	alice, bob := userToken(t, "alice"), userToken(t, "bob")

	fetchStart := time.Now()
	e.loginAs(t, roleWriter, svc, svcID) // discovery + JWKS cached now
	warmed := time.Now()
	stopKeycloak(t)
	t.Logf("Keycloak stopped %s after the keys were cached", time.Since(warmed).Round(10*time.Millisecond))

	t.Run("within cache_refresh_interval: accepted, no warning", func(t *testing.T) {
		if time.Since(fetchStart) > refresh-500*time.Millisecond {
			// Stopping Keycloak took nearly the whole interval: the fresh window is gone.
			t.Logf("note: stopping Keycloak took %s; checking only that the login works", time.Since(warmed).Round(10*time.Millisecond))
			e.loginAs(t, roleAdmin, alice, "oauth:alice")
			return
		}
		log := e.loginAs(t, roleAdmin, alice, "oauth:alice")
		if strings.Contains(log, "stale") {
			t.Errorf("a warning about stale keys while the cache is fresh:\n%s", scrub(log))
		}
	})
	t.Run("cold cache: keys_unavailable", func(t *testing.T) {
		cold.refused(t, roleAdmin, alice, "keys_unavailable")
	})

	sleepUntil(warmed.Add(refresh + 500*time.Millisecond))
	t.Run("past cache_refresh_interval: accepted with a stale-keys warning", func(t *testing.T) {
		log := e.loginAs(t, roleReader, bob, "oauth:bob")
		if !strings.Contains(log, "WARNING:  oauth_jwt: using stale signing keys") {
			t.Errorf("no WARNING about stale keys:\n%s", scrub(log))
		}
		e.loginAs(t, roleWriter, svc, svcID)
	})
	// Stale keys change nothing in the policy.
	t.Run("stale keys: bob as pgadmin still role_not_allowed", func(t *testing.T) {
		e.refused(t, roleAdmin, bob, "role_not_allowed")
	})
	t.Run("stale keys: forged token still bad_signature", func(t *testing.T) {
		forged := forge(t, bob, map[string]any{"groups": []string{"dba"}})
		remember(forged)
		e.refused(t, roleAdmin, forged, "bad_signature")
	})
	t.Run("cold cache, still down: keys_unavailable", func(t *testing.T) {
		cold.refused(t, roleWriter, svc, "keys_unavailable")
	})

	sleepUntil(warmed.Add(maxStale + 500*time.Millisecond))
	t.Run("past cache_max_stale: keys_unavailable", func(t *testing.T) {
		e.refused(t, roleAdmin, alice, "keys_unavailable")
		e.refused(t, roleWriter, svc, "keys_unavailable")
		e.refused(t, roleReader, bob, "keys_unavailable")
	})

	t.Run("identity provider back: accepted again", func(t *testing.T) {
		needKeycloak(t)
		// After a failed fetch the cache waits (10 s) before trying again.
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx := ctxT(t, 30*time.Second)
			conn, err := e.ConnectOAuth(ctx, roleWriter, svc)
			if err == nil {
				conn.Close(ctx)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("still refused 30 s after Keycloak came back: %v\n%s", err, scrub(e.LogTail(10)))
			}
			time.Sleep(time.Second)
		}
		e.loginAs(t, roleAdmin, alice, "oauth:alice")
	})
}

func sleepUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		time.Sleep(d)
	}
}
