//go:build keycloak

// These tests run oauth_jwt_check against a real Keycloak 26 (started with
// scripts/keycloak.sh, no Docker). They are built only with the "keycloak"
// tag: go test -tags keycloak ./cmd/oauth_jwt_check/. Without the cached
// Keycloak distribution they fail, saying how to get it.

package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
)

func TestKeycloak(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if _, err := keycloak.Home(ctx); err != nil {
		t.Fatalf("the Keycloak distribution is not in the cache: run scripts/keycloak.sh fetch (%v)", err)
	}
	dir, err := os.MkdirTemp("", "oauth_jwt_check-keycloak-")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := keycloak.Start(ctx, dir)
	if err != nil {
		t.Fatalf("starting Keycloak: %v (run directory kept: %s)", err, dir)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping Keycloak: %v", err)
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	iss := srv.Issuer(keycloak.Realm)
	// runTool judges at the golden clock; Keycloak's tokens need the real one.
	now := "--now=" + time.Now().UTC().Format(time.RFC3339)
	base := []string{"--issuer", iss, "--set", "audience=" + keycloak.Audience, "--set", "require_https=off", "--json", now}

	report := func(t *testing.T, res result) tokenReport {
		t.Helper()
		var rep tokenReport
		if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
			t.Fatalf("not JSON: %v\n%s\n%s", err, res.stdout, res.stderr)
		}
		return rep
	}

	t.Run("issuer", func(t *testing.T) {
		res := runTool(t, "", "issuer", iss, "--allow-http-loopback", "--json")
		var rep issuerReport
		if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, res.stderr)
		}
		if res.code != exitOK || !rep.OK || len(rep.Keys) == 0 {
			t.Fatalf("exit %d: %+v", res.code, rep)
		}
		if !strings.Contains(rep.Psql, "/protocol/openid-connect/auth/device") {
			t.Errorf("psql summary %q", rep.Psql)
		}
		res = runTool(t, "", "issuer", iss+"/", "--allow-http-loopback", "--json")
		rep = issuerReport{}
		if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, c := range rep.Checks {
			found = found || c.Name == "discovery_issuer" && c.Status == "fail" && strings.Contains(c.Detail, "only by a trailing slash")
		}
		if res.code != exitRejected || !found {
			t.Errorf("issuer with a slash: exit %d\n%s", res.code, res.stdout)
		}
	})

	t.Run("service token accepted", func(t *testing.T) {
		tok, err := keycloak.ClientCredentialsToken(ctx, iss, keycloak.ServiceClient, keycloak.ServiceSecret)
		if err != nil {
			t.Fatal(err)
		}
		res := runTool(t, tok, append([]string{"token", "--map", "sso"}, base...)...)
		rep := report(t, res)
		if res.code != exitOK || rep.Reason != "ok" || rep.AuthnID == "" {
			t.Fatalf("exit %d: reason %s, checks %+v", res.code, rep.Reason, rep.Checks)
		}
		// Delegated: the client maps to a role.
		res = runTool(t, tok, append([]string{"token", "--delegate", "--role", "loader", "--set",
			"client_role_map=" + keycloak.ServiceClient + "=loader"}, base...)...)
		if rep := report(t, res); res.code != exitOK || rep.Ident.Status != "pass" {
			t.Errorf("delegated: exit %d, %+v", res.code, rep.Ident)
		}
		assertNoToken(t, tok, res)
	})

	t.Run("no audience", func(t *testing.T) {
		tr, err := keycloak.PasswordGrant(ctx, iss, keycloak.NoAudienceClient, "alice", keycloak.Passwords["alice"])
		if err != nil {
			t.Fatal(err)
		}
		res := runTool(t, tr.AccessToken, append([]string{"token"}, base...)...)
		if rep := report(t, res); res.code != exitRejected || rep.Reason != "aud_mismatch" {
			t.Errorf("exit %d, reason %s", res.code, rep.Reason)
		}
		// Its ID token is told apart from an access token.
		res = runTool(t, tr.IDToken, append([]string{"token"}, base...)...)
		if rep := report(t, res); res.code != exitRejected || rep.Reason != "id_token" {
			t.Errorf("ID token: exit %d, reason %s", res.code, rep.Reason)
		}
	})

	t.Run("wrong issuer", func(t *testing.T) {
		tok, err := keycloak.ClientCredentialsToken(ctx, iss, keycloak.ServiceClient, keycloak.ServiceSecret)
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"token", "--issuer", iss + "/", "--set", "audience=" + keycloak.Audience, "--set", "require_https=off", "--json", now}
		res := runTool(t, tok, args...)
		rep := report(t, res)
		if res.code != exitRejected || rep.Reason != "iss_mismatch" || len(rep.ServerLog) == 0 ||
			!strings.Contains(rep.ServerLog[len(rep.ServerLog)-1].Detail, "trailing slash") {
			t.Errorf("exit %d, reason %s, log %+v", res.code, rep.Reason, rep.ServerLog)
		}
	})
}
