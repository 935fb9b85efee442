package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
)

// A machine token (client credentials of pg-service) through pgx's OAuthTokenProvider
// lands on the role client_role_map gives it, and on no other.
func TestMachineToken(t *testing.T) {
	needKeycloak(t)
	e := newEnv(t, delegatedConf, []string{hbaDelegated(issuer())}, roleAdmin, roleReader, roleWriter)
	svc := serviceToken(t)
	_, c := claims(t, svc)
	if c["azp"] != keycloak.ServiceClient || !slices.Contains(keycloak.Audiences(c), keycloak.Audience) {
		t.Fatalf("service token: azp %v, aud %v", c["azp"], c["aud"])
	}
	alice := userToken(t, "alice")

	t.Run("pg-service as app_writer", func(t *testing.T) {
		log := e.loginAs(t, roleWriter, svc, "oauth:service-account-pg-service")
		if !strings.Contains(log, "oauth_jwt: bearer token accepted") {
			t.Errorf("no acceptance logged:\n%s", scrub(log))
		}
	})
	t.Run("pg-service as reader refused", func(t *testing.T) { e.refused(t, roleReader, svc, "role_not_allowed") })
	t.Run("pg-service as pgadmin refused", func(t *testing.T) { e.refused(t, roleAdmin, svc, "role_not_allowed") })
	// client_role_map matches the client: a person's token from another client does not
	// inherit the service's role.
	t.Run("alice (psql) as app_writer refused", func(t *testing.T) { e.refused(t, roleWriter, alice, "role_not_allowed") })
	t.Run("pg-service not an allowed client", func(t *testing.T) {
		e.setConf(map[string]string{"oauth_jwt.allowed_client_ids": "'psql'"})
		defer e.setConf(map[string]string{"oauth_jwt.allowed_client_ids": baseConf()["oauth_jwt.allowed_client_ids"]})
		e.refused(t, roleWriter, svc, "azp_not_allowed")
	})
	t.Run("required scope missing", func(t *testing.T) {
		e.setConf(map[string]string{"oauth_jwt.required_scopes": "'pg_write'"})
		defer e.setConf(map[string]string{"oauth_jwt.required_scopes": ""})
		e.refused(t, roleWriter, svc, "missing_scope")
	})
}

// Delegated mode: groups decide. alice (dba) → pgadmin and reader; bob (analysts) →
// reader; carol (no group) → nothing.
func TestDelegatedMapping(t *testing.T) {
	needKeycloak(t)
	e := newEnv(t, delegatedConf, []string{hbaDelegated(issuer())},
		roleAdmin, roleReader, roleWriter, "alice", "carol")
	alice, bob, carol := userToken(t, "alice"), userToken(t, "bob"), userToken(t, "carol")
	if _, c := claims(t, carol); c["groups"] != nil {
		t.Fatalf("carol's token has groups %v; the realm gives her none", c["groups"])
	}

	t.Run("alice as pgadmin", func(t *testing.T) { e.loginAs(t, roleAdmin, alice, "oauth:alice") })
	t.Run("alice as reader", func(t *testing.T) { e.loginAs(t, roleReader, alice, "oauth:alice") })
	t.Run("bob as reader", func(t *testing.T) { e.loginAs(t, roleReader, bob, "oauth:bob") })

	t.Run("alice as app_writer refused", func(t *testing.T) { e.refused(t, roleWriter, alice, "role_not_allowed") })
	t.Run("bob as pgadmin refused", func(t *testing.T) { e.refused(t, roleAdmin, bob, "role_not_allowed") })
	t.Run("bob as app_writer refused", func(t *testing.T) { e.refused(t, roleWriter, bob, "role_not_allowed") })
	t.Run("carol as reader refused", func(t *testing.T) { e.refused(t, roleReader, carol, "role_not_allowed") })
	// identity == role is not a grant unless role_from_identity is on.
	t.Run("carol as carol refused without role_from_identity", func(t *testing.T) {
		e.refused(t, "carol", carol, "role_not_allowed")
	})
	t.Run("alice as alice refused without role_from_identity", func(t *testing.T) {
		e.refused(t, "alice", alice, "role_not_allowed")
	})
	t.Run("role_from_identity on: carol as carol, still not reader", func(t *testing.T) {
		e.setConf(map[string]string{"oauth_jwt.role_from_identity": "on"})
		defer e.setConf(map[string]string{"oauth_jwt.role_from_identity": ""})
		e.loginAs(t, "carol", carol, "oauth:carol")
		e.refused(t, roleReader, carol, "role_not_allowed")
		e.refused(t, "alice", carol, "role_not_allowed")
	})
}

// pg_ident mode with preferred_username as the identity.
func TestIdentMapPreferredUsername(t *testing.T) {
	needKeycloak(t)
	e := newEnv(t, nil, []string{hbaMap(issuer(), "sso")}, "alice", "bob", "carol", roleReader)
	e.writeIdent(t, "sso alice alice", "sso bob bob", "sso alice reader")
	e.Reload()
	alice, bob, carol := userToken(t, "alice"), userToken(t, "bob"), userToken(t, "carol")

	t.Run("alice as alice", func(t *testing.T) { e.loginAs(t, "alice", alice, "oauth:alice") })
	t.Run("alice as reader", func(t *testing.T) { e.loginAs(t, roleReader, alice, "oauth:alice") })
	t.Run("bob as alice refused", func(t *testing.T) {
		e.identRefused(t, "alice", bob, `no match in usermap "sso" for user "alice" authenticated as "bob"`)
	})
	t.Run("bob as reader refused", func(t *testing.T) {
		e.identRefused(t, roleReader, bob, `no match in usermap "sso" for user "reader" authenticated as "bob"`)
	})
	t.Run("carol (not in the map) as carol refused", func(t *testing.T) {
		e.identRefused(t, "carol", carol, `no match in usermap "sso" for user "carol" authenticated as "carol"`)
	})
}

// pg_ident mode with email as the identity, mapped by a regular expression.
func TestIdentMapEmail(t *testing.T) {
	needKeycloak(t)
	e := newEnv(t, map[string]string{"oauth_jwt.authn_id_claim": "'email'"},
		[]string{hbaMap(issuer(), "sso")}, "alice", "bob")
	e.writeIdent(t, `sso /^([a-z]+)@example\.com$ \1`)
	e.Reload()
	alice, bob := userToken(t, "alice"), userToken(t, "bob")
	svc := serviceToken(t)

	t.Run("alice@example.com as alice", func(t *testing.T) {
		log := e.loginAs(t, "alice", alice, "oauth:alice@example.com")
		if !strings.Contains(log, `connection authenticated: identity="alice@example.com" method=oauth`) {
			t.Errorf("server log lacks the identity:\n%s", scrub(log))
		}
	})
	t.Run("bob@example.com as alice refused", func(t *testing.T) {
		e.identRefused(t, "alice", bob, `no match in usermap "sso" for user "alice" authenticated as "bob@example.com"`)
	})
	// A service account has no email: there is no identity to map.
	t.Run("service token without email refused", func(t *testing.T) {
		if _, c := claims(t, svc); c["email"] != nil {
			t.Fatalf("the service token has an email claim %v", c["email"])
		}
		e.refused(t, "alice", svc, "no_identity")
	})
}
