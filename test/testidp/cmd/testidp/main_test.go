package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// outputField returns the value printed after "name: " by run.
func outputField(tb testing.TB, out, name string) string {
	tb.Helper()
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	tb.Fatalf("output has no %q line:\n%s", name, out)
	return ""
}

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, out, tokenFile string)
	}{
		{name: "unknown mode", args: []string{"-mode", "sideways"}, wantErr: "unknown -mode"},
		{name: "non-loopback address", args: []string{"-listen", "0.0.0.0:0"}, wantErr: "not a loopback"},
		{name: "bad claims", args: []string{"-mint-to", "TOKEN", "-claims", "[1]"}, wantErr: "-claims"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{
			name: "mints a token",
			args: []string{"-mint-to", "TOKEN", "-sub", "alice", "-aud", "pg", "-scope", "openid pg",
				"-claims", `{"preferred_username":"alice"}`},
			check: func(t *testing.T, out, tokenFile string) {
				claims := readClaims(t, tokenFile)
				if claims["iss"] != outputField(t, out, "issuer") || claims["sub"] != "alice" ||
					claims["aud"] != "pg" || claims["scope"] != "openid pg" || claims["preferred_username"] != "alice" {
					t.Errorf("claims = %v", claims)
				}
			},
		},
		{
			name: "several audiences and TLS",
			args: []string{"-tls", "-mint-to", "TOKEN", "-aud", "pg,other", "-mode", "hang"},
			check: func(t *testing.T, out, tokenFile string) {
				if !strings.HasPrefix(outputField(t, out, "issuer"), "https://127.0.0.1:") {
					t.Errorf("issuer is not https:\n%s", out)
				}
				outputField(t, out, "ca_file")
				if got := outputField(t, out, "mode"); got != "hang" {
					t.Errorf("mode = %q, want hang", got)
				}
				if aud, _ := readClaims(t, tokenFile)["aud"].([]any); len(aud) != 2 {
					t.Errorf("aud = %v, want two audiences", aud)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tokenFile := filepath.Join(t.TempDir(), "token")
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				args[i] = strings.ReplaceAll(a, "TOKEN", tokenFile)
			}
			// A context that has already ended makes run report and return.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var stdout, stderr bytes.Buffer
			err := run(ctx, args, &stdout, &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("run error %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run: %v\n%s", err, stderr.String())
			}
			tc.check(t, stdout.String(), tokenFile)
		})
	}
}

// readClaims decodes the payload of the token in file.
func readClaims(tb testing.TB, file string) map[string]any {
	tb.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		tb.Fatalf("token file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		tb.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	tok, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	parts := strings.Split(string(tok), ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d parts, want 3", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		tb.Fatal(err)
	}
	return claims
}
