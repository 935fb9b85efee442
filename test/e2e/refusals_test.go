package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
)

// Real Keycloak tokens that must not log in, each refused with its reason code.
func TestRefusals(t *testing.T) {
	needKeycloak(t)
	// A second pg_hba line whose issuer has a trailing slash, for role "slashy" only.
	e := newEnv(t, delegatedConf, []string{
		fmt.Sprintf(`host all slashy 127.0.0.1/32 oauth issuer="%s/" scope="openid" delegate_ident_mapping=1`, issuer()),
		hbaDelegated(issuer()),
	}, roleAdmin, roleReader, "slashy")

	// The 5 s token first: the other cases run while it expires.
	short := passwordToken(t, keycloak.ShortLivedClient, "alice").AccessToken
	_, sc := claims(t, short)
	exp, _ := sc["exp"].(float64)
	iat, _ := sc["iat"].(float64)
	if exp == 0 || exp-iat != keycloak.ShortLivedLifespan.Seconds() {
		t.Fatalf("short-lived token: iat %v, exp %v; want a %s lifetime", sc["iat"], sc["exp"], keycloak.ShortLivedLifespan)
	}
	t.Run("short-lived token before expiry accepted", func(t *testing.T) {
		if left := time.Until(time.Unix(int64(exp), 0)); left < 500*time.Millisecond {
			t.Fatalf("the 5 s token has only %s left before the first login (machine too slow?)", left)
		}
		e.loginAs(t, roleAdmin, short, "oauth:alice")
	})

	t.Run("client without audience mapper: aud_mismatch", func(t *testing.T) {
		tok := passwordToken(t, keycloak.NoAudienceClient, "alice").AccessToken
		if _, c := claims(t, tok); slices.Contains(keycloak.Audiences(c), keycloak.Audience) {
			t.Fatalf("the no-audience token has aud %v", c["aud"])
		}
		e.refused(t, roleAdmin, tok, "aud_mismatch")
	})
	t.Run("carol without group: role_not_allowed", func(t *testing.T) {
		e.refused(t, roleReader, userToken(t, "carol"), "role_not_allowed")
	})
	t.Run("token of realm other: iss_mismatch", func(t *testing.T) {
		tok := deviceGrant(t, keycloak.OtherRealm, keycloak.DeviceClient, "alice").AccessToken
		if _, c := claims(t, tok); c["iss"] != kc.Issuer(keycloak.OtherRealm) {
			t.Fatalf("iss %v", c["iss"])
		}
		e.refused(t, roleAdmin, tok, "iss_mismatch")
	})
	alice := deviceGrant(t, keycloak.Realm, keycloak.DeviceClient, "alice")
	t.Run("ID token: id_token", func(t *testing.T) {
		if _, c := claims(t, alice.IDToken); c["typ"] != "ID" {
			t.Fatalf("the ID token has typ %v", c["typ"])
		}
		e.refused(t, roleAdmin, alice.IDToken, "id_token")
	})
	t.Run("refresh token refused", func(t *testing.T) {
		if alice.RefreshToken == "" {
			t.Fatal("the device grant returned no refresh token")
		}
		h, c := claims(t, alice.RefreshToken)
		// Keycloak signs refresh tokens with the realm's HMAC key (HS512): refused at the
		// header, before any claim is read. Were it asymmetric, the typ claim "Refresh"
		// would still refuse it.
		want := "wrong_token_type"
		if alg, _ := h["alg"].(string); strings.HasPrefix(alg, "HS") {
			want = "alg_not_allowed"
		}
		t.Logf("refresh token: alg %v, typ %v: want %s", h["alg"], c["typ"], want)
		e.refused(t, roleAdmin, alice.RefreshToken, want)
	})
	t.Run("pg_hba issuer with a trailing slash: iss_mismatch", func(t *testing.T) {
		log := e.refused(t, "slashy", alice.AccessToken, "iss_mismatch")
		if !strings.Contains(log, "trailing slash") {
			t.Errorf("the log does not point out the trailing slash:\n%s", scrub(log))
		}
	})
	// carol edits her token to claim group dba: the signature no longer verifies.
	t.Run("forged groups claim: bad_signature", func(t *testing.T) {
		forged := forge(t, userToken(t, "carol"), map[string]any{"groups": []string{"dba"}})
		remember(forged)
		e.refused(t, roleAdmin, forged, "bad_signature")
	})
	// The signature of a real token over another real token's header and claims.
	t.Run("signature of another token: bad_signature", func(t *testing.T) {
		bob := userToken(t, "bob")
		p, q := strings.Split(alice.AccessToken, "."), strings.Split(bob, ".")
		e.refused(t, roleReader, p[0]+"."+q[1]+"."+p[2], "bad_signature")
	})

	// Expiry. Wait until exp has passed: with the default leeway (30 s) the token still
	// logs in; with leeway 0 it is expired.
	if d := time.Until(time.Unix(int64(exp), 0).Add(1500 * time.Millisecond)); d > 0 {
		time.Sleep(d)
	}
	t.Run("just expired, within the default leeway: accepted", func(t *testing.T) {
		e.loginAs(t, roleAdmin, short, "oauth:alice")
	})
	t.Run("expired with leeway 0: expired", func(t *testing.T) {
		e.setConf(map[string]string{"oauth_jwt.leeway": "0"})
		defer e.setConf(map[string]string{"oauth_jwt.leeway": ""})
		log := e.refused(t, roleAdmin, short, "expired")
		if !strings.Contains(log, "the leeway is 0") {
			t.Logf("note: the detail does not quote a zero leeway:\n%s", scrub(log))
		}
	})
}

// forge returns tok with claims changed (signature unchanged).
func forge(t *testing.T, tok string, set map[string]any) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}
