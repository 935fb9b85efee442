package keycache

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestParseKeySet checks each entry kind the parser decodes, and that every
// undecodable entry is kept with the problem that explains it.
func TestParseKeySet(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	n, e := b64u(rsaKey.N.Bytes()), "AQAB"
	ecX, ecY := b64u(p256.X.FillBytes(make([]byte, 32))), b64u(p256.Y.FillBytes(make([]byte, 32)))
	offCurveY := b64u(append(make([]byte, 31), 5))
	// A P-521 coordinate with its leading zero bytes dropped, as some
	// encoders do: decoded by left-padding.
	shortX := b64u(p521.X.Bytes())

	for _, tc := range []struct {
		name    string
		entry   string
		kind    string // Go type of Public, "" when none
		bits    int
		problem string // substring; "" = decodes
	}{
		{"RSA", fmt.Sprintf(`{"kty":"RSA","kid":"r","use":"sig","alg":"RS256","n":%q,"e":%q}`, n, e), "*rsa.PublicKey", 2048, ""},
		{"RSA with private members", fmt.Sprintf(`{"kty":"RSA","kid":"r","n":%q,"e":%q,"d":"AQAB","p":"AQAB"}`, n, e), "*rsa.PublicKey", 2048, ""},
		{"RSA padded base64url", fmt.Sprintf(`{"kty":"RSA","n":%q,"e":"AQAB"}`, base64.URLEncoding.EncodeToString(rsaKey.N.Bytes())), "*rsa.PublicKey", 2048, ""},
		{"RSA standard alphabet", fmt.Sprintf(`{"kty":"RSA","n":%q,"e":"AQAB"}`, base64.StdEncoding.EncodeToString(rsaKey.N.Bytes())), "*rsa.PublicKey", 2048, ""},
		{"RSA 1024 bits decodes", fmt.Sprintf(`{"kty":"RSA","n":%q,"e":"AQAB"}`, b64u(rsaKey.N.Bytes()[:128])), "*rsa.PublicKey", 1024, ""},
		{"RSA without n", `{"kty":"RSA","e":"AQAB"}`, "", 0, `"n" is missing`},
		{"RSA n not base64", `{"kty":"RSA","n":"!!!","e":"AQAB"}`, "", 0, `"n" is not base64url`},
		{"RSA n a number", `{"kty":"RSA","n":5,"e":"AQAB"}`, "", 0, `"n" is missing or not a string`},
		{"RSA even exponent", fmt.Sprintf(`{"kty":"RSA","n":%q,"e":"Ag"}`, n), "", 2048, "exponent is out of range"},
		{"RSA exponent 1", fmt.Sprintf(`{"kty":"RSA","n":%q,"e":"AQ"}`, n), "", 2048, "exponent is out of range"},
		{"RSA huge exponent", fmt.Sprintf(`{"kty":"RSA","n":%q,"e":"AQAAAAAB"}`, n), "", 2048, "exponent is out of range"},
		{"RSA zero modulus", `{"kty":"RSA","n":"AA","e":"AQAB"}`, "", 0, "modulus is zero"},
		{"EC P-256", fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":%q,"y":%q}`, ecX, ecY), "*ecdsa.PublicKey", 256, ""},
		{"EC P-521 short coordinate", fmt.Sprintf(`{"kty":"EC","crv":"P-521","x":%q,"y":%q}`, shortX, b64u(p521.Y.Bytes())), "*ecdsa.PublicKey", 521, ""},
		{"EC off the curve", fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":%q,"y":%q}`, ecX, offCurveY), "", 0, "not on the curve"},
		{"EC coordinate too long", fmt.Sprintf(`{"kty":"EC","crv":"P-256","x":%q,"y":%q}`, b64u(make([]byte, 33)), ecY), "", 0, "longer than the curve allows"},
		{"EC unknown curve", `{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}`, "", 0, "unsupported EC curve"},
		{"EC no curve", fmt.Sprintf(`{"kty":"EC","x":%q,"y":%q}`, ecX, ecY), "", 0, "unsupported EC curve"},
		{"Ed25519", fmt.Sprintf(`{"kty":"OKP","crv":"Ed25519","x":%q}`, b64u(edPub)), "ed25519.PublicKey", 256, ""},
		{"Ed25519 short", fmt.Sprintf(`{"kty":"OKP","crv":"Ed25519","x":%q}`, b64u(edPub[:31])), "", 0, "not 32 bytes"},
		{"X25519", fmt.Sprintf(`{"kty":"OKP","crv":"X25519","x":%q}`, b64u(edPub)), "", 0, "unsupported OKP curve"},
		{"oct", `{"kty":"oct","kid":"h","k":"c2VjcmV0"}`, "", 0, ""},
		{"oct without k", `{"kty":"oct","kid":"h"}`, "", 0, `"k" is missing`},
		{"unknown kty", `{"kty":"ML-DSA","kid":"pq"}`, "", 0, "unsupported key type"},
		{"no kty", `{"kid":"x","n":"AQAB"}`, "", 0, "no \"kty\""},
		{"kid a number", `{"kty":"oct","kid":7,"k":"AA"}`, "", 0, `"kid" is not a string`},
		{"key_ops not an array", `{"kty":"oct","k":"AA","key_ops":"verify"}`, "", 0, `"key_ops" is not an array`},
		{"key_ops with a number", `{"kty":"oct","k":"AA","key_ops":["verify",1]}`, "", 0, `"key_ops" holds a non-string`},
		{"entry not an object", `"RSA"`, "", 0, "not a JSON object"},
		// The last of duplicate members wins (as with encoding/json); members
		// parseJWK does not read (certificates, thumbprints) are skipped.
		{"duplicate kty, last wins", fmt.Sprintf(`{"kty":"oct","kty":"RSA","n":%q,"e":%q}`, n, e), "*rsa.PublicKey", 2048, ""},
		{"duplicate n, last wins", fmt.Sprintf(`{"kty":"RSA","n":%q,"n":"AA","e":%q}`, n, e), "", 0, "modulus is zero"},
		{"with x5c and x5t", fmt.Sprintf(`{"kid":"r","kty":"RSA","x5c":["MIIC"],"x5t":"abc","x5t#S256":"def","n":%q,"e":%q}`, n, e), "*rsa.PublicKey", 2048, ""},
		{"null kid", `{"kty":"oct","kid":null,"k":"AA"}`, "", 0, `"kid" is not a string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := ParseKeySet([]byte(`{"keys":[` + tc.entry + `]}`))
			if err != nil {
				t.Fatal(err)
			}
			k := set.Keys[0]
			if tc.problem == "" && k.Problem != "" {
				t.Fatalf("problem %q, want none", k.Problem)
			}
			if tc.problem != "" && !strings.Contains(k.Problem, tc.problem) {
				t.Fatalf("problem %q, want one containing %q", k.Problem, tc.problem)
			}
			if got := fmt.Sprintf("%T", k.Public); (tc.kind == "" && k.Public != nil) || (tc.kind != "" && got != tc.kind) {
				t.Errorf("public key %s, want %q", got, tc.kind)
			}
			if k.Bits != tc.bits {
				t.Errorf("bits %d, want %d", k.Bits, tc.bits)
			}
		})
	}
}

// The decoded keys are the keys: an RSA and an EC key round-trip exactly.
func TestParseKeySetKeysEqual(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	body, _ := json.Marshal(map[string]any{"keys": []map[string]any{
		{"kty": "RSA", "kid": "r", "n": b64u(rsaKey.N.Bytes()), "e": "AQAB"},
		{"kty": "EC", "kid": "e", "crv": "P-384", "x": b64u(ec.X.FillBytes(make([]byte, 48))), "y": b64u(ec.Y.FillBytes(make([]byte, 48)))},
	}})
	set, err := ParseKeySet(body)
	if err != nil {
		t.Fatal(err)
	}
	if !rsaKey.PublicKey.Equal(set.Keys[0].Public) {
		t.Error("RSA key differs")
	}
	if !ec.PublicKey.Equal(set.Keys[1].Public) {
		t.Error("EC key differs")
	}
	if !set.HasKID("e") || set.HasKID("x") || set.Usable() != 2 {
		t.Errorf("HasKID/Usable wrong: %v %v %d", set.HasKID("e"), set.HasKID("x"), set.Usable())
	}
}

func TestParseKeySetRefuses(t *testing.T) {
	many := `{"keys":[` + strings.Repeat(`{"kty":"oct","k":"AA"},`, MaxKeys) + `{"kty":"oct","k":"AA"}]}`
	for name, body := range map[string]string{
		"not JSON":       `{"keys":[`,
		"array":          `[{"kty":"oct"}]`,
		"no keys member": `{"kids":[]}`,
		"keys an object": `{"keys":{}}`,
		"too many keys":  many,
	} {
		if _, err := ParseKeySet([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
