package testidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"math/big"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// Key types for Options.KeyType and NewKey.
const (
	KeyTypeRSA = "RSA" // 2048-bit RSA, RS256
	KeyTypeEC  = "EC"  // ECDSA on P-256, ES256
)

// Values of the JWK "use" parameter (RFC 7517 §4.2).
const (
	useSig = "sig"
	useEnc = "enc"
)

// Key is a private key the IdP signs with, or one made by NewKey to sign
// tokens the IdP does not vouch for.
type Key struct {
	// KID is the key ID Mint puts in the token header.
	KID string
	// Alg is the algorithm Mint signs with unless WithAlg says otherwise.
	Alg jwa.SignatureAlgorithm
	// Signer is the private key: *rsa.PrivateKey, *ecdsa.PrivateKey or
	// ed25519.PrivateKey.
	Signer crypto.Signer
}

// keyEntry is a key the IdP made, with whether its JWKS lists it.
type keyEntry struct {
	key       Key
	use       string // useSig or useEnc
	published bool
}

// NewKey makes a fresh key of keyType (KeyTypeRSA when empty, or
// KeyTypeEC) with a random kid. It is published nowhere.
func NewKey(keyType string) (Key, error) {
	switch keyType {
	case "", KeyTypeRSA:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return Key{}, fmt.Errorf("testidp: generate RSA key: %w", err)
		}
		return Key{KID: rand.Text(), Alg: jwa.RS256(), Signer: k}, nil
	case KeyTypeEC:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return Key{}, fmt.Errorf("testidp: generate EC key: %w", err)
		}
		return Key{KID: rand.Text(), Alg: jwa.ES256(), Signer: k}, nil
	}
	return Key{}, fmt.Errorf("testidp: unknown key type %q (want %q or %q)", keyType, KeyTypeRSA, KeyTypeEC)
}

// Rotate makes a new signing key of the configured type and makes it the
// active one. The previous keys stay published until RemoveKey.
func (p *IdP) Rotate() (newKID string, err error) {
	k, err := NewKey(p.keyType)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, &keyEntry{key: k, use: useSig, published: true})
	p.active = k.KID
	return k.KID, nil
}

// RemoveKey takes the key kid out of the JWKS. Unknown kids are ignored.
// Removing the active key does not replace it: Mint then signs with a key
// the JWKS no longer lists. Key still returns removed keys.
func (p *IdP) RemoveKey(kid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.keys {
		if e.key.KID == kid {
			e.published = false
		}
	}
}

// ActiveKID is the kid of the key Mint signs with by default.
func (p *IdP) ActiveKID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active
}

// EncKID is the kid of the RSA key the JWKS lists with "use":"enc" and
// "alg":"RSA-OAEP", as Keycloak does. No token signed with it may verify;
// Key(EncKID()) with Mint's WithKey signs one to prove that.
func (p *IdP) EncKID() string { return p.encKID }

// Key returns the key kid, including removed ones, so that tests can sign
// with a stale key (see WithKey). The encryption key comes with Alg RS256.
func (p *IdP) Key(kid string) (Key, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.keys {
		if e.key.KID == kid {
			return e.key, true
		}
	}
	return Key{}, false
}

// activeKey returns the active signing key.
func (p *IdP) activeKey() Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.keys {
		if e.key.KID == p.active {
			return e.key
		}
	}
	panic("testidp: active key missing") // unreachable: keys are never deleted
}

// jwks is the JSON Web Key Set document: every published key in order of
// creation.
func (p *IdP) jwks() (map[string]any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([]map[string]any, 0, len(p.keys))
	for _, e := range p.keys {
		if !e.published {
			continue
		}
		alg := e.key.Alg.String()
		if e.use == useEnc {
			alg = jwa.RSA_OAEP().String()
		}
		jwk, err := publicJWK(e.key, e.use, alg)
		if err != nil {
			return nil, err
		}
		keys = append(keys, jwk)
	}
	return map[string]any{"keys": keys}, nil
}

// publicJWK is the public part of k as a JWK (RFC 7517, RFC 7518 §6).
func publicJWK(k Key, use, alg string) (map[string]any, error) {
	m := map[string]any{"kid": k.KID, "use": use, "alg": alg}
	switch pub := k.Signer.Public().(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64(pub.N.Bytes())
		m["e"] = b64(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		// Uncompressed point: 0x04, then X and Y at full curve size.
		point, err := pub.Bytes()
		if err != nil {
			return nil, fmt.Errorf("testidp: EC key %q: %w", k.KID, err)
		}
		size := (len(point) - 1) / 2
		m["kty"] = "EC"
		m["crv"] = pub.Curve.Params().Name
		m["x"] = b64(point[1 : 1+size])
		m["y"] = b64(point[1+size:])
	case ed25519.PublicKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = b64(pub)
	default:
		return nil, fmt.Errorf("testidp: key %q: unsupported key type %T", k.KID, pub)
	}
	return m, nil
}

// b64 is unpadded base64url, as JOSE uses everywhere.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
