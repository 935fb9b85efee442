package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// hbaScope is the scope of the pg_hba line below: Keycloak's optional client scope
// microprofile-jwt, which every client of an imported realm may request and which Keycloak
// writes into the access token's scope claim (unlike openid, which oauth_jwt never
// requires of a token).
const hbaScope = "microprofile-jwt"

// The pg_hba scope is enforced with real Keycloak tokens: psql requests the line's scope
// and logs in; a token obtained without that scope (the device flow with scope openid) is
// refused with missing_scope, and the log says which scope and where it was required.
func TestHBAScopeEnforcedWithKeycloak(t *testing.T) {
	needKeycloak(t)
	line := fmt.Sprintf(`host all all 127.0.0.1/32 oauth issuer="%s" scope="openid %s" delegate_ident_mapping=1`, issuer(), hbaScope)
	e := newEnv(t, delegatedConf, []string{line}, roleReader)

	t.Run("token without the scope refused", func(t *testing.T) {
		tok := userToken(t, "alice")
		if _, c := claims(t, tok); slices.Contains(strings.Fields(fmt.Sprint(c["scope"])), hbaScope) {
			t.Fatalf("a device-flow token for scope openid carries %s (scope %q)", hbaScope, c["scope"])
		}
		log := e.refused(t, roleReader, tok, "missing_scope")
		if want := fmt.Sprintf("%q (required by the pg_hba.conf scope option)", hbaScope); !strings.Contains(log, want) {
			t.Errorf("server log lacks %s:\n%s", want, scrub(log))
		}
	})
	t.Run("psql requests the scope and logs in", func(t *testing.T) {
		mark := e.LogMark()
		r := psqlDeviceLogin(t, e, roleReader, "alice")
		if r.Err != nil || !r.Prompted {
			t.Fatalf("psql: %v (prompted %v)\nstderr:\n%s\nserver log:\n%s", r.Err, r.Prompted, r.Stderr, scrub(e.LogSince(mark)))
		}
		if got := strings.TrimSpace(r.Stdout); got != roleReader+",oauth:alice" {
			t.Errorf("current_user,system_user = %q, want %s,oauth:alice", got, roleReader)
		}
	})
}
