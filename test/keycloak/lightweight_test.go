package keycloak

import (
	"path"
	"slices"
	"testing"
)

// Lightweight access tokens (Keycloak 24+, client attribute
// client.use.lightweight.access.token.enabled) leave out sub, preferred_username,
// email, realm_access and resource_access, and each mapper's claim unless the mapper
// has "Add to lightweight access token" (lightweight.claim) on: the audience and the
// groups too. Observed on 26.7.3: [azp exp iat iss jti scope sid typ], plus aud and
// groups from mappers with lightweight.claim on. docs/providers/keycloak.md tells DBAs.
func TestLightweightAccessToken(t *testing.T) {
	ctx := testCtx(t)
	adm, err := srv.Admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	iss := srv.Issuer(Realm)
	client := func(id, lightweightClaim string) {
		t.Helper()
		mapperConfig := func(extra map[string]any) map[string]any {
			c := map[string]any{"access.token.claim": "true", "id.token.claim": "false", "lightweight.claim": lightweightClaim}
			for k, v := range extra {
				c[k] = v
			}
			return c
		}
		loc, err := adm.Do(ctx, "POST", "/"+Realm+"/clients", map[string]any{
			"clientId": id, "enabled": true, "protocol": "openid-connect", "publicClient": true,
			"standardFlowEnabled": false, "directAccessGrantsEnabled": true,
			"attributes": map[string]any{"client.use.lightweight.access.token.enabled": "true"},
			"protocolMappers": []any{
				map[string]any{"name": "audience", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
					"config": mapperConfig(map[string]any{"included.custom.audience": Audience})},
				map[string]any{"name": "groups", "protocol": "openid-connect", "protocolMapper": "oidc-group-membership-mapper",
					"config": mapperConfig(map[string]any{"claim.name": "groups", "full.path": "false"})},
			},
		}, nil)
		if err != nil {
			t.Fatalf("creating client %s: %v", id, err)
		}
		t.Cleanup(func() { _, _ = adm.Do(ctx, "DELETE", "/"+Realm+"/clients/"+path.Base(loc), nil, nil) })
	}
	client("lightweight", "false")
	client("lightweight-mapped", "true")

	for _, tc := range []struct {
		client           string
		wantAud, wantGrp bool
	}{
		{"lightweight", false, false},
		{"lightweight-mapped", true, true},
	} {
		t.Run(tc.client, func(t *testing.T) {
			tr, err := PasswordGrant(ctx, iss, tc.client, "alice", Passwords["alice"])
			if err != nil {
				t.Fatal(err)
			}
			_, c := claimsOf(t, tr.AccessToken)
			keys := make([]string, 0, len(c))
			for k := range c {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			t.Logf("lightweight access token of alice through %s: claims %v", tc.client, keys)
			for _, gone := range []string{"sub", "preferred_username", "realm_access", "resource_access", "email"} {
				if _, ok := c[gone]; ok {
					t.Errorf("claim %s present in a lightweight access token", gone)
				}
			}
			if got := slices.Contains(Audiences(c), Audience); got != tc.wantAud {
				t.Errorf("aud %v: contains %s = %v, want %v", c["aud"], Audience, got, tc.wantAud)
			}
			if got := slices.Contains(Strings(c["groups"]), "dba"); got != tc.wantGrp {
				t.Errorf("groups %v: contains dba = %v, want %v", c["groups"], got, tc.wantGrp)
			}
			for _, kept := range []string{"iss", "exp", "iat", "azp", "typ"} {
				if _, ok := c[kept]; !ok {
					t.Errorf("claim %s missing from a lightweight access token", kept)
				}
			}
		})
	}
}
