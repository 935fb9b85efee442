package keycache

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// One unusable entry (here an EC key on an unknown curve) must not sink the
// whole set: the good key stays usable, the bad one stays as a placeholder
// with its problem. A set of nothing but undecodable entries is an error. A
// 1024-bit RSA key decodes (the validator refuses it as weak_key, with its
// size), so a set of only such keys is kept.
func TestParseJWKSLenient(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakJSON := map[string]any{"kty": "RSA", "kid": "weak", "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(weak.N.Bytes()), "e": "AQAB"}
	badCurve := map[string]any{"kty": "EC", "kid": "secp256k1", "crv": "secp256k1", "x": "AAAA", "y": "AAAA"}
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
		{"good and unknown curve", []map[string]any{good, badCurve}, false, "good"},
		{"good and weak", []map[string]any{good, weakJSON}, false, "good"},
		{"weak only", []map[string]any{weakJSON}, false, "weak"},
		{"unknown curve only", []map[string]any{badCurve}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"keys": tc.keys})
			s, err := parseJWKS("https://idp.example/certs", body, IsJSONObject(body))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseJWKS accepted a set without usable keys")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var k *JWK
			for _, e := range s.Keys {
				if e.KID == tc.wantUsable {
					k = e
				}
			}
			if k == nil {
				t.Fatalf("key %q missing", tc.wantUsable)
			}
			if k.Problem != "" || k.Public == nil {
				t.Fatalf("key %q is a placeholder: %q", tc.wantUsable, k.Problem)
			}
			for _, e := range s.Keys {
				if e.KID == "secp256k1" && !strings.Contains(e.Problem, "unsupported EC curve") {
					t.Errorf("the secp256k1 entry has problem %q", e.Problem)
				}
			}
			if s.Len() != len(tc.keys) {
				t.Errorf("set has %d entries, want %d (placeholders kept)", s.Len(), len(tc.keys))
			}
		})
	}
}
