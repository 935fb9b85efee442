package validator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
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
func selectKeys(set *keycache.KeySet, h *header) (cands []candidate, missing bool, prob *keyProblem) {
	if set.Len() == 0 {
		return nil, h.hasKID, &keyProblem{reason: ReasonUnknownKID, detail: "The key set is empty."}
	}
	n := set.Len()
	if h.hasKID {
		found := false
		for _, k := range set.Keys {
			if k.KID != h.kid {
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
	for _, k := range set.Keys {
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
func usable(k *keycache.JWK, alg string) (candidate, *keyProblem) {
	qkid := quote(k.KID)
	if k.HasUse && k.Use != "sig" {
		return candidate{}, &keyProblem{rank: 1, reason: ReasonKIDNotSigningKey,
			detail: fmt.Sprintf("The key with kid %s is not a signing key (use %s).", qkid, quote(k.Use))}
	}
	if k.HasKeyOps && !slices.Contains(k.KeyOps, "verify") {
		return candidate{}, &keyProblem{rank: 1, reason: ReasonKIDNotSigningKey,
			detail: fmt.Sprintf("The key with kid %s is not a signing key (its key_ops do not include \"verify\").", qkid)}
	}
	if k.HasAlg && k.Alg != alg {
		return candidate{}, &keyProblem{rank: 2, reason: ReasonKeyAlgMismatch,
			detail: fmt.Sprintf("The key with kid %s is for alg %s but the token header says %s.", qkid, quote(k.Alg), quote(alg))}
	}
	mismatch := func(what string) (candidate, *keyProblem) {
		return candidate{}, &keyProblem{rank: 3, reason: ReasonKeyTypeMismatch,
			detail: fmt.Sprintf("The key with kid %s is %s, which cannot verify %s signatures.", qkid, what, alg)}
	}
	var want string
	switch {
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		want = "RSA"
	case strings.HasPrefix(alg, "ES"):
		want = "EC"
	case alg == "EdDSA":
		want = "OKP"
	}
	if k.Kty != want {
		return mismatch("a key of type " + quote(k.Kty))
	}
	c := candidate{kid: k.KID, pub: k.Public, bits: k.Bits}
	switch pub := k.Public.(type) {
	case *rsa.PublicKey:
		if c.bits < MinRSABits {
			return candidate{}, &keyProblem{rank: 4, reason: ReasonWeakKey,
				detail: fmt.Sprintf("The key with kid %s is a %d-bit RSA key; at least %d bits are required.", qkid, c.bits, MinRSABits)}
		}
	case *ecdsa.PublicKey:
		if pub.Curve != curveFor(alg) {
			return mismatch("an EC key on curve " + pub.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		if k.Problem != "" {
			return candidate{}, &keyProblem{rank: 3, reason: ReasonKeyTypeMismatch,
				detail: fmt.Sprintf("The key with kid %s could not be decoded (%s).", qkid, k.Problem)}
		}
		return mismatch(fmt.Sprintf("a key of type %s and of an unsupported kind", quote(k.Kty)))
	}
	return c, nil
}

// curveFor is the curve an ES* algorithm signs with (nil for others).
func curveFor(alg string) elliptic.Curve {
	switch alg {
	case "ES256":
		return elliptic.P256()
	case "ES384":
		return elliptic.P384()
	case "ES512":
		return elliptic.P521()
	}
	return nil
}

// hashFor is the hash of an RS*, PS* or ES* algorithm.
func hashFor(alg string) crypto.Hash {
	switch alg[len(alg)-3:] {
	case "256":
		return crypto.SHA256
	case "384":
		return crypto.SHA384
	case "512":
		return crypto.SHA512
	}
	return 0
}

// verifySignature checks sig over input with pub for alg (RFC 7518 section
// 3), with the standard library's implementations: PKCS #1 v1.5 and PSS
// (salt as long as the hash) for RS* and PS*, r||s of fixed size for ES*,
// Ed25519 for EdDSA. The caller has matched pub's type to alg (usable).
func verifySignature(pub crypto.PublicKey, alg, input string, sig []byte) bool {
	if len(sig) == 0 {
		return false
	}
	if alg == "EdDSA" {
		k, ok := pub.(ed25519.PublicKey)
		return ok && ed25519.Verify(k, []byte(input), sig)
	}
	h := hashFor(alg)
	if h == 0 || len(alg) != 5 {
		return false
	}
	hh := h.New()
	hh.Write([]byte(input))
	digest := hh.Sum(nil)
	switch alg[:2] {
	case "RS":
		k, ok := pub.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
	case "PS":
		k, ok := pub.(*rsa.PublicKey)
		return ok && rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{Hash: h, SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case "ES":
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != curveFor(alg) {
			return false
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}
