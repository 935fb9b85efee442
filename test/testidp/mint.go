package testidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	_ "crypto/sha256" // hashes for RS/PS/ES/HS 256
	_ "crypto/sha512" // and 384, 512

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// MintOption changes how Mint builds and signs one token.
type MintOption func(*mintConfig)

// mintConfig collects the MintOptions of one call.
type mintConfig struct {
	kid        string
	kidSet     bool
	noKID      bool
	alg        jwa.SignatureAlgorithm
	algSet     bool
	headers    map[string]any
	key        *Key
	secret     []byte
	noDefaults bool
}

// WithKID puts kid in the header instead of the signing key's kid. The
// signature is unchanged, so a kid naming another published key makes a
// token that fails to verify.
func WithKID(kid string) MintOption {
	return func(c *mintConfig) { c.kid, c.kidSet, c.noKID = kid, true, false }
}

// WithoutKID leaves the kid header out.
func WithoutKID() MintOption {
	return func(c *mintConfig) { c.noKID, c.kidSet = true, false }
}

// WithAlg signs with alg instead of the key's own algorithm and names it in
// the header. It must suit the key (RS*/PS* need RSA, ES256/384/512 need
// P-256/384/521, HS* need WithHMACSecret); "none" leaves the signature
// empty.
func WithAlg(alg jwa.SignatureAlgorithm) MintOption {
	return func(c *mintConfig) { c.alg, c.algSet = alg, true }
}

// WithHeader sets header parameter k to v; a nil v removes it. Headers set
// this way are applied last: WithHeader("alg", "RS512") changes what the
// header claims without changing how the token is signed.
func WithHeader(k string, v any) MintOption {
	return func(c *mintConfig) {
		if c.headers == nil {
			c.headers = make(map[string]any)
		}
		c.headers[k] = v
	}
}

// WithKey signs with k (a stale key from Key, a key from NewKey, or the
// encryption key) instead of the active key; the header carries k.KID and
// k.Alg unless other options say otherwise.
func WithKey(k Key) MintOption {
	return func(c *mintConfig) { c.key = &k }
}

// WithHMACSecret signs with HMAC keyed by secret, HS256 unless WithAlg
// names another HS algorithm. The header keeps the kid of the key that
// would otherwise sign.
func WithHMACSecret(secret []byte) MintOption {
	return func(c *mintConfig) { c.secret = secret }
}

// NoDefaults leaves out the default claims: the token carries exactly the
// claims given to Mint.
func NoDefaults() MintOption {
	return func(c *mintConfig) { c.noDefaults = true }
}

// Mint signs a JWT with the active key. Unless NoDefaults is given it
// starts from the default claims iss (Issuer), iat (now), exp (now plus
// five minutes), sub ("test-user") and typ ("Bearer"), then applies
// claims: a claim in claims replaces the default, a nil value removes it,
// and time.Time values become NumericDate seconds. The header holds alg,
// typ "JWT" and kid.
func (p *IdP) Mint(claims map[string]any, opts ...MintOption) (string, error) {
	var c mintConfig
	for _, o := range opts {
		o(&c)
	}
	key := p.activeKey()
	if c.key != nil {
		key = *c.key
	}
	alg := key.Alg
	switch {
	case c.algSet:
		alg = c.alg
	case c.secret != nil:
		alg = jwa.HS256()
	}

	header := map[string]any{"alg": alg.String(), "typ": "JWT", "kid": key.KID}
	if c.kidSet {
		header["kid"] = c.kid
	}
	if c.noKID {
		delete(header, "kid")
	}
	for k, v := range c.headers {
		if v == nil {
			delete(header, k)
		} else {
			header[k] = v
		}
	}

	payload := make(map[string]any)
	if !c.noDefaults {
		now := p.now()
		payload["iss"] = p.issuer
		payload["iat"] = now.Unix()
		payload["exp"] = now.Add(defaultTokenTTL).Unix()
		payload["sub"] = "test-user"
		payload["typ"] = "Bearer"
	}
	for k, v := range claims {
		switch v := v.(type) {
		case nil:
			delete(payload, k)
		case time.Time:
			payload[k] = v.Unix()
		default:
			payload[k] = v
		}
	}
	return sign(header, payload, alg, key.Signer, c.secret)
}

// MintHS256WithPublicKey mints the algorithm-confusion token of RFC 8725
// §2.1: HS256, keyed with the active public key in PEM form (PKIX "PUBLIC
// KEY" block, as a verifier reading a key file would hold it), with the
// active kid. For the DER form use Mint with WithHMACSecret.
func (p *IdP) MintHS256WithPublicKey(claims map[string]any, opts ...MintOption) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(p.activeKey().Signer.Public())
	if err != nil {
		return "", fmt.Errorf("testidp: marshal public key: %w", err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return p.Mint(claims, append([]MintOption{WithHMACSecret(secret), WithAlg(jwa.HS256())}, opts...)...)
}

// MintNone mints an unsecured JWT: alg "none" and an empty signature (the
// token ends with "."), still naming the active kid.
func (p *IdP) MintNone(claims map[string]any, opts ...MintOption) (string, error) {
	return p.Mint(claims, append([]MintOption{WithAlg(jwa.NoSignature())}, opts...)...)
}

// MintWithForeignKey mints a token signed by a fresh key of the configured
// type that the JWKS does not list, under the active kid: the signature
// looks right and the kid resolves, but the key does not match.
func (p *IdP) MintWithForeignKey(claims map[string]any, opts ...MintOption) (string, error) {
	k, err := NewKey(p.keyType)
	if err != nil {
		return "", err
	}
	k.KID = p.ActiveKID()
	return p.Mint(claims, append([]MintOption{WithKey(k)}, opts...)...)
}

// sign serialises header and payload and signs them in JWS compact form.
func sign(header, payload map[string]any, alg jwa.SignatureAlgorithm, signer crypto.Signer, secret []byte) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("testidp: encode header: %w", err)
	}
	pl, err := json.Marshal(payload)
	if err != nil {
		return "", fmt.Errorf("testidp: encode claims: %w", err)
	}
	input := b64(h) + "." + b64(pl)
	sig, err := signature(alg, signer, secret, []byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + b64(sig), nil
}

// signature computes the JWS signature of input (RFC 7518 §3).
func signature(alg jwa.SignatureAlgorithm, signer crypto.Signer, secret []byte, input []byte) ([]byte, error) {
	name := alg.String()
	if name == jwa.NoSignature().String() {
		return nil, nil
	}
	if name == jwa.EdDSA().String() || name == jwa.Ed25519().String() {
		k, ok := signer.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("testidp: alg %s needs an Ed25519 key, have %T", name, signer)
		}
		return ed25519.Sign(k, input), nil
	}
	if len(name) != 5 {
		return nil, fmt.Errorf("testidp: unsupported alg %q", name)
	}
	var hash crypto.Hash
	switch name[2:] {
	case "256":
		hash = crypto.SHA256
	case "384":
		hash = crypto.SHA384
	case "512":
		hash = crypto.SHA512
	default:
		return nil, fmt.Errorf("testidp: unsupported alg %q", name)
	}

	if name[:2] == "HS" {
		if secret == nil {
			return nil, fmt.Errorf("testidp: alg %s needs WithHMACSecret", name)
		}
		mac := hmac.New(hash.New, secret)
		mac.Write(input)
		return mac.Sum(nil), nil
	}
	h := hash.New()
	h.Write(input)
	digest := h.Sum(nil)

	switch name[:2] {
	case "RS", "PS":
		k, ok := signer.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("testidp: alg %s needs an RSA key, have %T", name, signer)
		}
		if name[:2] == "RS" {
			return rsa.SignPKCS1v15(rand.Reader, k, hash, digest)
		}
		return rsa.SignPSS(rand.Reader, k, hash, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES":
		k, ok := signer.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("testidp: alg %s needs an EC key, have %T", name, signer)
		}
		want := map[string]string{"256": "P-256", "384": "P-384", "512": "P-521"}[name[2:]]
		if k.Curve.Params().Name != want {
			return nil, fmt.Errorf("testidp: alg %s needs curve %s, have %s", name, want, k.Curve.Params().Name)
		}
		// JWS wants R || S at full curve size, not ASN.1 (RFC 7518 §3.4).
		der, err := k.Sign(rand.Reader, digest, hash)
		if err != nil {
			return nil, err
		}
		return derToRaw(der, (k.Curve.Params().BitSize+7)/8)
	}
	return nil, fmt.Errorf("testidp: unsupported alg %q", name)
}

// derToRaw turns an ASN.1 ECDSA signature into fixed-size R || S.
func derToRaw(der []byte, size int) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, fmt.Errorf("testidp: decode ECDSA signature: %w", err)
	}
	if sig.R.BitLen() > 8*size || sig.S.BitLen() > 8*size {
		return nil, errors.New("testidp: ECDSA signature larger than the curve")
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}
