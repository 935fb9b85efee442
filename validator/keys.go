package validator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
	"github.com/tidwall/gjson"
)

// MinRSABits is the shortest RSA key that may verify a token (RFC 8725
// section 3.5 and NIST SP 800-131A).
const MinRSABits = 2048

// maxCandidates bounds the keys tried for one token (several keys may share
// a kid during a rotation).
const maxCandidates = 4

// keyProblem ranks why a key named by the token cannot verify it; the
// highest rank among the candidates is reported.
type keyProblem struct {
	rank   int
	reason Reason
	detail string
}

// candidate is a key that may verify the token.
type candidate struct {
	kid  string
	pub  crypto.PublicKey
	bits int // RSA modulus size, or curve size
}

// selectKeys returns the keys of set that may verify a token with header h.
// With a kid, only keys with that kid are considered; missing reports that
// none has it (the caller may then ask for a refetch). Without a kid, the
// set must hold exactly one usable signing key for the alg.
func selectKeys(set jwk.Set, h *header) (cands []candidate, missing bool, prob *keyProblem) {
	if set == nil {
		return nil, h.hasKID, &keyProblem{reason: ReasonUnknownKID, detail: "The key set is empty."}
	}
	n := set.Len()
	if h.hasKID {
		found := false
		for i := 0; i < n; i++ {
			k, ok := set.Key(i)
			if !ok {
				continue
			}
			if kid, _ := k.KeyID(); kid != h.kid {
				continue
			}
			found = true
			c, p := usable(k, h.alg)
			if p != nil {
				if prob == nil || p.rank > prob.rank {
					prob = p
				}
				continue
			}
			cands = append(cands, c)
			if len(cands) == maxCandidates {
				break
			}
		}
		if !found {
			return nil, true, &keyProblem{reason: ReasonUnknownKID,
				detail: fmt.Sprintf("No key of the issuer has kid %s (the key set has %d keys).", quote(h.kid), n)}
		}
		if len(cands) > 0 {
			return cands, false, nil
		}
		return nil, false, prob
	}
	// No kid: only an unambiguous key set may be used.
	for i := 0; i < n; i++ {
		k, ok := set.Key(i)
		if !ok {
			continue
		}
		c, p := usable(k, h.alg)
		switch {
		case p == nil:
			cands = append(cands, c)
		case p.reason == ReasonWeakKey:
			// A weak key of the right type still counts as "the" key: the
			// token is then refused as weak_key, not as ambiguous.
			if prob == nil {
				prob = p
			}
			cands = append(cands, candidate{})
		}
	}
	switch {
	case len(cands) == 1 && cands[0].pub != nil:
		return cands, false, nil
	case len(cands) == 1:
		return nil, false, prob
	}
	return nil, false, &keyProblem{reason: ReasonUnknownKID,
		detail: fmt.Sprintf("The token has no kid and the issuer's key set has %d signing keys usable with %s; exactly one is required.", len(cands), h.alg)}
}

// usable checks that k is a public signing key fit for alg.
func usable(k jwk.Key, alg string) (candidate, *keyProblem) {
	kid, _ := k.KeyID()
	qkid := quote(kid)
	if uk, ok := k.(jwk.UnsupportedKey); ok {
		return candidate{}, unsupportedProblem(uk, qkid, alg)
	}
	if use, ok := k.KeyUsage(); ok && use != "sig" {
		return candidate{}, &keyProblem{rank: 1, reason: ReasonKIDNotSigningKey,
			detail: fmt.Sprintf("The key with kid %s is not a signing key (use %s).", qkid, quote(use))}
	}
	if ops, ok := k.KeyOps(); ok && !slices.Contains(ops, jwk.KeyOpVerify) {
		return candidate{}, &keyProblem{rank: 1, reason: ReasonKIDNotSigningKey,
			detail: fmt.Sprintf("The key with kid %s is not a signing key (its key_ops do not include \"verify\").", qkid)}
	}
	if ka, ok := k.Algorithm(); ok && ka.String() != alg {
		return candidate{}, &keyProblem{rank: 2, reason: ReasonKeyAlgMismatch,
			detail: fmt.Sprintf("The key with kid %s is for alg %s but the token header says %s.", qkid, quote(ka.String()), quote(alg))}
	}
	mismatch := func(what string) (candidate, *keyProblem) {
		return candidate{}, &keyProblem{rank: 3, reason: ReasonKeyTypeMismatch,
			detail: fmt.Sprintf("The key with kid %s is %s, which cannot verify %s signatures.", qkid, what, alg)}
	}
	kty := k.KeyType().String()
	var want string
	switch {
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		want = "RSA"
	case strings.HasPrefix(alg, "ES"):
		want = "EC"
	case alg == "EdDSA":
		want = "OKP"
	}
	if kty != want {
		return mismatch("a key of type " + quote(kty))
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return mismatch("a key that cannot be decoded")
	}
	if s, ok := raw.(crypto.Signer); ok {
		raw = s.Public() // a JWKS should hold no private keys; use the public half
	}
	c := candidate{kid: kid, pub: raw}
	switch pub := raw.(type) {
	case *rsa.PublicKey:
		c.bits = pub.N.BitLen()
		if c.bits < MinRSABits {
			return candidate{}, &keyProblem{rank: 4, reason: ReasonWeakKey,
				detail: fmt.Sprintf("The key with kid %s is a %d-bit RSA key; at least %d bits are required.", qkid, c.bits, MinRSABits)}
		}
	case *ecdsa.PublicKey:
		var curve elliptic.Curve
		switch alg {
		case "ES256":
			curve = elliptic.P256()
		case "ES384":
			curve = elliptic.P384()
		case "ES512":
			curve = elliptic.P521()
		}
		if pub.Curve != curve {
			return mismatch("an EC key on curve " + pub.Curve.Params().Name)
		}
		c.bits = pub.Curve.Params().BitSize
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return mismatch("a malformed Ed25519 key")
		}
		c.bits = 256
	default:
		return mismatch(fmt.Sprintf("a key of type %s and of an unsupported kind", quote(kty)))
	}
	return c, nil
}

// unsupportedProblem explains why a key set entry that jwx could not parse
// (kept as a placeholder when the set is parsed leniently) cannot verify:
// jwx refuses RSA keys under 2048 bits at parse time, and such a key must
// be reported as weak_key.
func unsupportedProblem(uk jwk.UnsupportedKey, qkid, alg string) *keyProblem {
	raw, err := json.Marshal(uk) // the entry's original JSON
	if err != nil {
		raw = nil
	}
	entry := gjson.ParseBytes(raw)
	if use := entry.Get("use"); use.Exists() && use.String() != "sig" {
		return &keyProblem{rank: 1, reason: ReasonKIDNotSigningKey,
			detail: fmt.Sprintf("The key with kid %s is not a signing key (use %s).", qkid, quote(use.String()))}
	}
	if ka := entry.Get("alg"); ka.Exists() && ka.String() != alg {
		return &keyProblem{rank: 2, reason: ReasonKeyAlgMismatch,
			detail: fmt.Sprintf("The key with kid %s is for alg %s but the token header says %s.", qkid, quote(ka.String()), quote(alg))}
	}
	if entry.Get("kty").String() == "RSA" {
		if n, err := b64.DecodeString(entry.Get("n").String()); err == nil {
			if bits := new(big.Int).SetBytes(n).BitLen(); bits > 0 && bits < MinRSABits {
				return &keyProblem{rank: 4, reason: ReasonWeakKey,
					detail: fmt.Sprintf("The key with kid %s is a %d-bit RSA key; at least %d bits are required.", qkid, bits, MinRSABits)}
			}
		}
	}
	return &keyProblem{rank: 3, reason: ReasonKeyTypeMismatch,
		detail: fmt.Sprintf("The key with kid %s could not be decoded (%s).", qkid, oneLine(uk.Reason()))}
}

// verifySignature checks sig over input with pub.
func verifySignature(pub crypto.PublicKey, alg, input string, sig []byte) bool {
	if len(sig) == 0 {
		return false
	}
	return jwsbb.Verify(pub, alg, []byte(input), sig) == nil
}
