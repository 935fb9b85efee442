package keycache

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"

	"github.com/tidwall/gjson"
)

// KeySet is a parsed JWK set (RFC 7517). It is parsed with the standard
// library and gjson, not jwx: it is read from the cache on every login,
// inside the backend, where linking jwx (and with it net/http and
// crypto/tls) was measured to cost more than the whole validation (see
// docs/benchmarks.md). The fetch helper checks every fetched set with jwx
// as well before it is stored.
type KeySet struct {
	Keys []*JWK
}

// JWK is one entry of a key set. An entry that cannot be used (bad
// encoding, unknown curve, ...) is kept with Problem set and no Public, so
// that a token naming it is refused with a precise reason instead of the
// whole set failing.
type JWK struct {
	KID string
	Kty string // "RSA", "EC", "OKP", "oct", or whatever the entry says
	// Use, KeyOps and Alg are the entry's members; HasUse, HasKeyOps and
	// HasAlg say whether they were present.
	Use       string
	HasUse    bool
	KeyOps    []string
	HasKeyOps bool
	Alg       string
	HasAlg    bool
	// Crv is the curve of an EC or OKP key.
	Crv string
	// Public is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey; nil
	// for symmetric keys and entries that cannot be decoded.
	Public crypto.PublicKey
	// Bits is the RSA modulus size (also for an RSA key too short to be
	// accepted by the validator) or the curve size.
	Bits int
	// Problem says why the entry cannot be decoded ("" when it can).
	Problem string
}

// Len returns the number of entries.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.Keys)
}

// HasKID reports whether an entry has kid.
func (s *KeySet) HasKID(kid string) bool {
	if s == nil {
		return false
	}
	for _, k := range s.Keys {
		if k.KID == kid {
			return true
		}
	}
	return false
}

// Usable counts the entries that decoded (Problem == "").
func (s *KeySet) Usable() int {
	n := 0
	if s != nil {
		for _, k := range s.Keys {
			if k.Problem == "" {
				n++
			}
		}
	}
	return n
}

// ParseKeySet parses a JWK set: a JSON object with a "keys" array of at
// most MaxKeys entries. Private members of an entry (d, p, q, ...) are
// ignored: only the public half is ever used.
func ParseKeySet(body []byte) (*KeySet, error) {
	return parseKeySet(body, IsJSONObject(body))
}

// parseKeySet is ParseKeySet for a body already known to be valid JSON:
// object says whether it is an object.
func parseKeySet(body []byte, object bool) (*KeySet, error) {
	if !object {
		return nil, fmt.Errorf("is not a JSON object")
	}
	keys := gjson.GetBytes(body, "keys")
	if !keys.IsArray() {
		return nil, fmt.Errorf("has no \"keys\" array")
	}
	entries := keys.Array()
	if len(entries) > MaxKeys {
		return nil, fmt.Errorf("contains %d keys, more than %d", len(entries), MaxKeys)
	}
	set := &KeySet{Keys: make([]*JWK, len(entries))}
	for i, e := range entries {
		set.Keys[i] = parseJWK(e)
	}
	return set, nil
}

// jwkMembers are the members of a JWK that parseJWK reads.
var jwkMembers = [...]string{"kty", "kid", "use", "alg", "crv", "key_ops", "n", "e", "x", "y", "k"}

// parseJWK decodes one entry; it never fails, it records a Problem.
func parseJWK(e gjson.Result) *JWK {
	k := &JWK{}
	if !e.IsObject() {
		k.Problem = "the entry is not a JSON object"
		return k
	}
	// One pass over the members, keeping only those read below (a key's
	// certificate chain and thumbprints are skipped, not copied into a
	// map); the last of duplicate members wins, as with encoding/json.
	var vals [len(jwkMembers)]gjson.Result
	e.ForEach(func(name, v gjson.Result) bool {
		for i, want := range jwkMembers {
			if name.Str == want {
				vals[i] = v
				break
			}
		}
		return true
	})
	member := func(name string) (gjson.Result, bool) {
		for i, want := range jwkMembers {
			if name == want {
				return vals[i], vals[i].Exists()
			}
		}
		panic("keycache: parseJWK reads member " + name + ", which jwkMembers does not list")
	}
	str := func(name string, dst *string, has *bool) bool {
		v, ok := member(name)
		if !ok {
			return true
		}
		if has != nil {
			*has = true
		}
		if v.Type != gjson.String {
			k.Problem = fmt.Sprintf("member %q is not a string", name)
			return false
		}
		*dst = v.Str
		return true
	}
	if !str("kty", &k.Kty, nil) || !str("kid", &k.KID, nil) || !str("use", &k.Use, &k.HasUse) ||
		!str("alg", &k.Alg, &k.HasAlg) || !str("crv", &k.Crv, nil) {
		return k
	}
	if ops, ok := member("key_ops"); ok {
		k.HasKeyOps = true
		if !ops.IsArray() {
			k.Problem = "member \"key_ops\" is not an array"
			return k
		}
		for _, op := range ops.Array() {
			if op.Type != gjson.String {
				k.Problem = "member \"key_ops\" holds a non-string"
				return k
			}
			k.KeyOps = append(k.KeyOps, op.Str)
		}
	}
	bytesOf := func(name string) ([]byte, bool) {
		v, ok := member(name)
		if !ok || v.Type != gjson.String || v.Str == "" {
			k.Problem = fmt.Sprintf("member %q is missing or not a string", name)
			return nil, false
		}
		b, err := decodeB64(v.Str)
		if err != nil {
			k.Problem = fmt.Sprintf("member %q is not base64url", name)
			return nil, false
		}
		return b, true
	}
	switch k.Kty {
	case "":
		k.Problem = "no \"kty\" member"
	case "RSA":
		n, ok := bytesOf("n")
		if !ok {
			return k
		}
		e, ok := bytesOf("e")
		if !ok {
			return k
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n)}
		k.Bits = pub.N.BitLen()
		ev := new(big.Int).SetBytes(e)
		switch {
		case k.Bits == 0:
			k.Problem = "the RSA modulus is zero"
		case !ev.IsInt64() || ev.Int64() < 3 || ev.Int64() > 1<<31-1 || ev.Bit(0) == 0:
			k.Problem = "the RSA public exponent is out of range"
		default:
			pub.E = int(ev.Int64())
			k.Public = pub
		}
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			k.Problem = fmt.Sprintf("unsupported EC curve %q", k.Crv)
			return k
		}
		x, ok := bytesOf("x")
		if !ok {
			return k
		}
		y, ok := bytesOf("y")
		if !ok {
			return k
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) > size || len(y) > size {
			k.Problem = "an EC coordinate is longer than the curve allows"
			return k
		}
		point := make([]byte, 1+2*size)
		point[0] = 4 // uncompressed
		copy(point[1+size-len(x):1+size], x)
		copy(point[1+2*size-len(y):], y)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			k.Problem = "the EC point is not on the curve"
			return k
		}
		k.Public, k.Bits = pub, curve.Params().BitSize
	case "OKP":
		if k.Crv != "Ed25519" {
			k.Problem = fmt.Sprintf("unsupported OKP curve %q", k.Crv)
			return k
		}
		x, ok := bytesOf("x")
		if !ok {
			return k
		}
		if len(x) != ed25519.PublicKeySize {
			k.Problem = "the Ed25519 key is not 32 bytes"
			return k
		}
		k.Public, k.Bits = ed25519.PublicKey(x), 256
	case "oct":
		// A symmetric key: decoded so that it counts as a key of the set,
		// but it can never verify (HS* is never allowed).
		bytesOf("k")
	default:
		k.Problem = fmt.Sprintf("unsupported key type %q", k.Kty)
	}
	return k
}

// decodeB64 decodes base64url with or without padding; the standard
// alphabet is accepted too, as jwx does.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "+/") {
		return base64.RawStdEncoding.DecodeString(s)
	}
	return base64.RawURLEncoding.DecodeString(s)
}
