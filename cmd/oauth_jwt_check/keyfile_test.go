package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// With oauth_jwt.jwks_file set, "issuer" reads the file as the module does,
// makes no request, and says that the module never makes one; a bad file
// fails with keys_unavailable. "token" judges with the file, offline.
func TestIssuerWithKeyFile(t *testing.T) {
	p, err := testidp.Start(testidp.Options{Realm: "/realms/offline"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	resp, err := http.Get(p.JWKSURI())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	dir := t.TempDir()
	good := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(good, body, 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.json")
	if err := os.WriteFile(open, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o666); err != nil {
		t.Fatal(err)
	}
	p.ResetCounts()
	requests := func() int { return p.Requests(testidp.PathDiscovery) + p.Requests(testidp.PathJWKS) }

	cases := []struct {
		name   string
		file   string
		code   int
		keys   string // status of the keys check
		server string
	}{
		{name: "writable by others", file: open, code: exitRejected, keys: "fail", server: "cannot read the key file"},
		{name: "missing", file: filepath.Join(dir, "none.json"), code: exitRejected, keys: "fail", server: "cannot read the key file"},
		{name: "good", file: good, code: exitOK, keys: "pass", server: "never makes a network request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := runTool(t, "", "issuer", "--allow-http-loopback", "--set", "jwks_file="+tc.file, "--json", p.Issuer())
			if res.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", res.code, tc.code, res.stdout, res.stderr)
			}
			var rep issuerReport
			if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.JWKSFile != tc.file {
				t.Errorf("jwks_file = %q, want %q", rep.JWKSFile, tc.file)
			}
			if !strings.Contains(rep.Server, tc.server) || !strings.Contains(rep.Server, "network request") {
				t.Errorf("server = %q, want it to say %q and that no network request is made", rep.Server, tc.server)
			}
			for _, c := range rep.Checks {
				switch c.Name {
				case "keys":
					if c.Status != tc.keys {
						t.Errorf("keys check %s, want %s: %+v", c.Status, tc.keys, c)
					}
					if tc.keys == "fail" && c.Reason != "keys_unavailable" {
						t.Errorf("keys check reason %q, want keys_unavailable", c.Reason)
					}
				case "discovery", "jwks_uri", "token_endpoint", "device_endpoint":
					if c.Status != "skip" {
						t.Errorf("check %s ran (%s) with a key file", c.Name, c.Status)
					}
				}
			}
			if n := requests(); n != 0 {
				t.Errorf("%d requests reached the identity provider", n)
			}
		})
	}

	t.Run("token judged offline", func(t *testing.T) {
		if err := p.SetMode(testidp.ModeDown); err != nil {
			t.Fatal(err)
		}
		defer p.SetMode(testidp.ModeNormal)
		tok, err := p.Mint(map[string]any{"aud": "pg", "iat": goldenNow, "exp": goldenNow.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		res := runTool(t, tok, "token", "--issuer", p.Issuer(), "--set", "audience=pg", "--set", "require_https=off", "--set", "jwks_file="+good)
		if res.code != exitOK {
			t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		if !strings.Contains(res.stdout, "jwks_file") {
			t.Errorf("the report does not say the keys came from the file:\n%s", res.stdout)
		}
		assertNoToken(t, tok, res)
	})
}

// With introspection on, "issuer" reports the endpoint the module would
// ask (from the discovery document, or the setting) and fails when there
// is none.
func TestIssuerIntrospectionEndpoint(t *testing.T) {
	p, err := testidp.Start(testidp.Options{Realm: "/realms/intro"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	base := []string{"issuer", "--allow-http-loopback", "--json", "--set", "introspection=always",
		"--set", "introspection_client_id=pg", "--set", "introspection_secret_file=/nonexistent/secret"}
	cases := []struct {
		name   string
		extra  []string
		status string
		got    string
	}{
		{name: "endpoint from the setting", extra: []string{"--set", "introspection_endpoint=https://idp.example.com/i"}, status: "pass", got: "https://idp.example.com/i"},
		{name: "from discovery", status: "pass", got: p.IntrospectionURL()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := runTool(t, "", append(append(base, tc.extra...), p.Issuer())...)
			var rep issuerReport
			if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
				t.Fatalf("%v\n%s%s", err, res.stdout, res.stderr)
			}
			found := false
			for _, c := range rep.Checks {
				if c.Name == "introspection_endpoint" {
					found = true
					if c.Status != tc.status || c.Got != tc.got {
						t.Errorf("check %+v, want %s %s", c, tc.status, tc.got)
					}
				}
			}
			if !found {
				t.Errorf("no introspection_endpoint check:\n%s", res.stdout)
			}
		})
	}
}
