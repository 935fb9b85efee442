package hostile

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
)

// corpusIssuer is an identity provider publishing the key set of the
// validator's bad-token corpus (validator/helpers_test.go): RSA keys for
// RS256, PS256 and RS512 only, an encryption key, a key whose key_ops
// exclude verify, EC P-256 and P-384 keys, an Ed25519 key, an HMAC key
// (kty oct) and a 1024-bit RSA key. The test identity provider cannot
// publish most of these, hence this one. Realm "/realms/corpus" serves
// them all, "/realms/single" only rsa1. rsa2 appears in the corpus realm's
// JWKS once Rotate is called.
type corpusIssuer struct {
	srv  *http.Server
	ln   net.Listener
	base string

	rsa, rsaOther, ps, rs512, weak, enc, opsEnc, rotated *rsa.PrivateKey
	ec, ec384                                            *ecdsa.PrivateKey
	ed                                                   ed25519.PrivateKey
	hmac                                                 []byte

	rotatedIn atomic.Bool
}

var (
	keysOnce sync.Once
	keys     *corpusIssuer // keys only; each test starts its own server
)

func genRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

// startCorpusIssuer serves the corpus key set on a loopback port.
func startCorpusIssuer(t testing.TB) *corpusIssuer {
	t.Helper()
	keysOnce.Do(func() {
		k := &corpusIssuer{}
		k.rsa, k.rsaOther, k.ps, k.rs512 = genRSA(2048), genRSA(2048), genRSA(2048), genRSA(2048)
		k.enc, k.opsEnc, k.rotated = genRSA(2048), genRSA(2048), genRSA(2048)
		k.weak = genRSA(1024)
		var err error
		if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		k.hmac = []byte("0123456789abcdef0123456789abcdef")
		keys = k
	})
	ci := &corpusIssuer{}
	*ci = corpusIssuer{rsa: keys.rsa, rsaOther: keys.rsaOther, ps: keys.ps, rs512: keys.rs512, weak: keys.weak,
		enc: keys.enc, opsEnc: keys.opsEnc, rotated: keys.rotated, ec: keys.ec, ec384: keys.ec384, ed: keys.ed, hmac: keys.hmac}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ci.ln, ci.base = ln, "http://"+ln.Addr().String()
	ci.srv = &http.Server{Handler: http.HandlerFunc(ci.handle)}
	go ci.srv.Serve(ln)
	t.Cleanup(func() { ci.srv.Close() })
	return ci
}

// issuer is the issuer of realm "corpus" or "single".
func (ci *corpusIssuer) issuer(realm string) string { return ci.base + "/realms/" + realm }

// rotate publishes rsa2 in the corpus realm.
func (ci *corpusIssuer) rotate() { ci.rotatedIn.Store(true) }

func (ci *corpusIssuer) handle(w http.ResponseWriter, r *http.Request) {
	var realm, rest string
	if p, ok := strings.CutPrefix(r.URL.Path, "/realms/"); ok {
		realm, rest, _ = strings.Cut(p, "/")
	}
	if realm != "corpus" && realm != "single" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch "/" + rest {
	case "/.well-known/openid-configuration":
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":   ci.issuer(realm),
			"jwks_uri": ci.issuer(realm) + "/protocol/openid-connect/certs",
		})
	case "/protocol/openid-connect/certs":
		json.NewEncoder(w).Encode(map[string]any{"keys": ci.jwks(realm)})
	default:
		http.NotFound(w, r)
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(k *rsa.PrivateKey, kv ...string) map[string]any {
	m := map[string]any{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func ecJWK(k *ecdsa.PrivateKey, kv ...string) map[string]any {
	point, _ := k.PublicKey.Bytes()
	size := (len(point) - 1) / 2
	m := map[string]any{"kty": "EC", "crv": k.Curve.Params().Name, "x": b64(point[1 : 1+size]), "y": b64(point[1+size:])}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// jwks is the key set of the validator's test fixture.
func (ci *corpusIssuer) jwks(realm string) []map[string]any {
	rsa1 := rsaJWK(ci.rsa, "kid", "rsa1", "alg", "RS256", "use", "sig")
	if realm == "single" {
		return []map[string]any{rsa1}
	}
	ops := rsaJWK(ci.opsEnc, "kid", "ops1")
	ops["key_ops"] = []string{"encrypt"}
	set := []map[string]any{
		rsa1,
		rsaJWK(ci.ps, "kid", "ps1", "alg", "PS256", "use", "sig"),
		rsaJWK(ci.rs512, "kid", "rs512only", "alg", "RS512", "use", "sig"),
		rsaJWK(ci.enc, "kid", "enc1", "alg", "RSA-OAEP", "use", "enc"),
		ops,
		ecJWK(ci.ec, "kid", "ec1", "alg", "ES256", "use", "sig"),
		ecJWK(ci.ec384, "kid", "ec384", "use", "sig"),
		{"kty": "OKP", "crv": "Ed25519", "x": b64(ci.ed.Public().(ed25519.PublicKey)), "kid": "ed1", "alg": "EdDSA", "use": "sig"},
		{"kty": "oct", "k": b64(ci.hmac), "kid": "hmac1", "alg": "HS256"},
		rsaJWK(ci.weak, "kid", "weak1", "alg", "RS256", "use", "sig"),
	}
	if ci.rotatedIn.Load() {
		set = append(set, rsaJWK(ci.rotated, "kid", "rsa2", "alg", "RS256", "use", "sig"))
	}
	return set
}

// signRaw signs header and payload JSON text as given (a nil key leaves
// the signature empty).
func signRaw(t testing.TB, hdr, payload []byte, alg string, key any) string {
	t.Helper()
	input := b64(hdr) + "." + b64(payload)
	if key == nil {
		return input + "."
	}
	sig, err := jwsbb.Sign(key, alg, []byte(input), nil)
	if err != nil {
		t.Fatalf("sign %s: %v", alg, err)
	}
	return input + "." + b64(sig)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
