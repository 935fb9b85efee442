package keycache

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// One unusable entry (here a 1024-bit RSA key, which jwx refuses) must not
// sink the whole set: the good key stays usable, the bad one becomes a
// placeholder. A set of nothing but unusable entries is still an error.
func TestParseJWKSLenient(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakJSON := map[string]any{"kty": "RSA", "kid": "weak", "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(weak.N.Bytes()), "e": "AQAB"}
	var good map[string]any
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwksJSON("good"), &set); err != nil {
		t.Fatal(err)
	}
	good = set.Keys[0]

	for _, tc := range []struct {
		name       string
		keys       []map[string]any
		wantErr    bool
		wantUsable string
	}{
		{"good and weak", []map[string]any{good, weakJSON}, false, "good"},
		{"weak only", []map[string]any{weakJSON}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"keys": tc.keys})
			s, err := parseJWKS("https://idp.example/certs", body)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseJWKS accepted a set without usable keys")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			k, ok := s.LookupKeyID(tc.wantUsable)
			if !ok {
				t.Fatalf("key %q missing", tc.wantUsable)
			}
			if _, unsupported := k.(jwk.UnsupportedKey); unsupported {
				t.Fatalf("key %q is a placeholder", tc.wantUsable)
			}
			if s.Len() != len(tc.keys) {
				t.Errorf("set has %d entries, want %d (placeholders kept)", s.Len(), len(tc.keys))
			}
		})
	}
}
