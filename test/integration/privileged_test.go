package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// privilegedEnv is a cluster in delegated mode with a plain role and roles
// that tokens must not be granted by default: one per privileged attribute
// and a member of a superuser role. Every one of them is reachable through
// role_map (group "dba"); su is also reachable through client_role_map
// (client "etl") and role_from_identity (sub "su").
func privilegedEnv(t *testing.T) *idpEnv {
	t.Helper()
	e := newIdPEnv(t)
	e.PG.Exec(
		"create role su login superuser",
		"create role rls login bypassrls",
		"create role cr login createrole",
		"create role admins nologin superuser",
		"create role team nologin",
		"grant admins to team",
		"create role ops login in role team", // member of a superuser role, two steps away
		"create role plain login",
	)
	return e
}

func privilegedConf(extra map[string]string) map[string]string {
	kv := map[string]string{
		"oauth_jwt.role_claim":         "groups",
		"oauth_jwt.role_map":           "'dba=su, dba=rls, dba=cr, dba=ops, dba=plain'",
		"oauth_jwt.client_role_map":    "'etl=su'",
		"oauth_jwt.role_from_identity": "on",
	}
	for k, v := range extra {
		kv[k] = v
	}
	return baseConf(kv)
}

// Under delegate_ident_mapping=1 no claim grants a role with SUPERUSER,
// BYPASSRLS or CREATEROLE, or a member of such a role, unless
// oauth_jwt.allow_privileged_roles is on; the shim reads the attributes from
// pg_authid at login and the log names the attribute and the role holding it.
func TestPrivilegedRolesRefused(t *testing.T) {
	e := privilegedEnv(t)
	e.PG.SetConf(privilegedConf(nil))
	dba := e.token(t, "alice", map[string]any{"groups": []string{"dba"}})
	etl := e.token(t, "service-account-etl", map[string]any{"azp": "etl", "groups": nil})
	self := e.token(t, "su", map[string]any{"groups": nil})

	for _, tc := range []struct {
		name, role, tok, detail string
	}{
		{"role_map to a superuser", "su", dba, `role "su" has SUPERUSER`},
		{"client_role_map to a superuser", "su", etl, `role "su" has SUPERUSER`},
		{"role_from_identity to a superuser", "su", self, `role "su" has SUPERUSER`},
		{"role_map to a BYPASSRLS role", "rls", dba, `role "rls" has BYPASSRLS`},
		{"role_map to a CREATEROLE role", "cr", dba, `role "cr" has CREATEROLE`},
		{"role_map to a member of a superuser role", "ops", dba, `role "ops" is a member of "admins", which has SUPERUSER`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := e.refused(t, tc.role, tc.tok, "privileged_role")
			if !strings.Contains(log, tc.detail) {
				t.Errorf("the log does not say %q:\n%s", tc.detail, log)
			}
			if !strings.Contains(log, `"oauth_jwt.allow_privileged_roles"`) {
				t.Errorf("the log does not name the setting that allows it:\n%s", log)
			}
		})
	}
	t.Run("a role the token does not grant stays role_not_allowed", func(t *testing.T) {
		e.refused(t, "su", e.token(t, "bob", map[string]any{"groups": []string{"analysts"}}), "role_not_allowed")
	})
	t.Run("a plain role is still granted", func(t *testing.T) {
		ctx := ctxT(t, 60*time.Second)
		conn := e.mustLogin(t, ctx, "plain", dba)
		var su bool
		if err := conn.QueryRow(ctx, "select rolsuper from pg_roles where rolname = current_user").Scan(&su); err != nil || su {
			t.Errorf("plain: rolsuper %v, %v", su, err)
		}
	})
}

// allow_privileged_roles = on, globally or in the issuer's section of the
// issuer_config file, lets the same tokens in.
func TestPrivilegedRolesAllowed(t *testing.T) {
	e := privilegedEnv(t)
	section := filepath.Join(e.PG.Dir, "issuers.conf")
	if err := os.WriteFile(section, []byte(fmt.Sprintf("[%s]\naudience = %s\nallow_privileged_roles = on\n", e.IdP.Issuer(), testAudience)), 0o600); err != nil {
		t.Fatal(err)
	}
	chown(t, section)
	dba := e.token(t, "alice", map[string]any{"groups": []string{"dba"}})
	etl := e.token(t, "service-account-etl", map[string]any{"azp": "etl", "groups": nil})
	self := e.token(t, "su", map[string]any{"groups": nil})
	for _, how := range []struct {
		name string
		conf map[string]string
	}{
		{"global", map[string]string{"oauth_jwt.allow_privileged_roles": "on"}},
		{"issuer section", map[string]string{"oauth_jwt.issuer_config": quote(section)}},
	} {
		t.Run(how.name, func(t *testing.T) {
			e.PG.SetConf(privilegedConf(how.conf))
			ctx := ctxT(t, 60*time.Second)
			for _, ok := range []struct{ role, tok string }{
				{"su", dba}, {"su", etl}, {"su", self}, {"rls", dba}, {"cr", dba}, {"ops", dba}, {"plain", dba},
			} {
				conn := e.mustLogin(t, ctx, ok.role, ok.tok)
				var cu string
				if err := conn.QueryRow(ctx, "select current_user").Scan(&cu); err != nil || cu != ok.role {
					t.Errorf("current_user = %q (%v), want %s", cu, err, ok.role)
				}
				conn.Close(ctx)
			}
		})
	}
}

// pg_ident mode (map=) is the DBA's own explicit mapping: role attributes
// are not checked there, and a mapped superuser logs in.
func TestPrivilegedRolesPgIdentModeUnaffected(t *testing.T) {
	e := privilegedEnv(t)
	writeIdent(t, e.PG, "oauthmap alice su")
	e.PG.SetConf(baseConf(nil))
	e.PG.SetHBA(hbaOAuth(e.IdP.Issuer(), "map=oauthmap"))
	ctx := ctxT(t, 60*time.Second)
	conn := e.mustLogin(t, ctx, "su", e.token(t, "alice", nil))
	var cu string
	if err := conn.QueryRow(ctx, "select current_user").Scan(&cu); err != nil || cu != "su" {
		t.Errorf("current_user = %q (%v), want su", cu, err)
	}
}
