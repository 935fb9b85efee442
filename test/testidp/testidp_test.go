package testidp

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

const testRealm = "/realms/test"

// startIdP starts an IdP that the test closes when it ends.
func startIdP(tb testing.TB, opts Options) *IdP {
	tb.Helper()
	p, err := Start(opts)
	if err != nil {
		tb.Fatalf("Start(%+v): %v", opts, err)
	}
	tb.Cleanup(p.Close)
	return p
}

// newClient is an HTTP client with its own connection pool, trusting
// caFile when it is not empty.
func newClient(tb testing.TB, timeout time.Duration, caFile string) *http.Client {
	tb.Helper()
	tr := &http.Transport{}
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			tb.Fatalf("read CA file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			tb.Fatalf("CA file %s holds no certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// fetch GETs url and reads the whole body.
func fetch(c *http.Client, url string) (*http.Response, []byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// fetchOK GETs url and fails the test unless it answers 200.
func fetchOK(tb testing.TB, c *http.Client, url string) []byte {
	tb.Helper()
	resp, body, err := fetch(c, url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: status %d, want 200", url, resp.StatusCode)
	}
	return body
}

// fetchSet GETs and parses the JWKS with jwx.
func fetchSet(tb testing.TB, p *IdP) jwk.Set {
	tb.Helper()
	set, err := jwk.Parse(fetchOK(tb, newClient(tb, 5*time.Second, p.CAFile()), p.JWKSURI()))
	if err != nil {
		tb.Fatalf("jwk.Parse: %v", err)
	}
	return set
}

// discoveryDoc GETs and decodes the discovery document.
func discoveryDoc(tb testing.TB, c *http.Client, p *IdP) map[string]any {
	tb.Helper()
	var doc map[string]any
	if err := json.Unmarshal(fetchOK(tb, c, p.DiscoveryURL()), &doc); err != nil {
		tb.Fatalf("decode discovery document: %v", err)
	}
	return doc
}

// verify parses and verifies tok against set the way a careful verifier
// does: kid required, key alg must match, claims validated.
func verify(tok string, set jwk.Set) (jwt.Token, error) {
	return jwt.ParseString(tok, jwt.WithKeySet(set), jwt.WithValidate(true))
}

// tokenHeader decodes the protected header of a compact JWS.
func tokenHeader(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.SplitN(tok, ".", 2)[0])
	if err != nil {
		tb.Fatalf("decode header: %v", err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		tb.Fatalf("decode header JSON: %v", err)
	}
	return h
}

// tokenClaims decodes the payload of a compact JWS without verifying it.
func tokenClaims(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("token has %d parts, want 3", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatalf("decode payload: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		tb.Fatalf("decode payload JSON: %v", err)
	}
	return c
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestStartRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"realm without leading slash", Options{Realm: "realms/test"}, "realm"},
		{"realm with trailing slash", Options{Realm: "/realms/test/"}, "realm"},
		{"wildcard address", Options{Addr: "0.0.0.0:0"}, "not a loopback"},
		{"public address", Options{Addr: "192.0.2.1:0"}, "not a loopback"},
		{"host name", Options{Addr: "example.com:0"}, "not a loopback"},
		{"address without port", Options{Addr: "127.0.0.1"}, "listen address"},
		{"unknown key type", Options{KeyType: "DSA"}, "unknown key type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := Start(tc.opts)
			if err == nil {
				p.Close()
				t.Fatalf("Start(%+v) succeeded, want error containing %q", tc.opts, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		realm string
	}{
		{"root issuer", ""},
		{"keycloak realm", testRealm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startIdP(t, Options{Realm: tc.realm})
			if !strings.HasPrefix(p.Issuer(), "http://127.0.0.1:") || !strings.HasSuffix(p.Issuer(), tc.realm) ||
				strings.HasSuffix(p.Issuer(), "/") {
				t.Fatalf("Issuer() = %q, want http://127.0.0.1:PORT%s without trailing slash", p.Issuer(), tc.realm)
			}
			doc := discoveryDoc(t, newClient(t, 5*time.Second, ""), p)
			if doc["issuer"] != p.Issuer() {
				t.Errorf("issuer = %v, want %q", doc["issuer"], p.Issuer())
			}
			if doc["jwks_uri"] != p.JWKSURI() {
				t.Errorf("jwks_uri = %v, want %q", doc["jwks_uri"], p.JWKSURI())
			}
			for _, k := range []string{"authorization_endpoint", "token_endpoint", "device_authorization_endpoint"} {
				if s, _ := doc[k].(string); !strings.HasPrefix(s, p.Issuer()+"/") {
					t.Errorf("%s = %v, want a URL under the issuer", k, doc[k])
				}
			}
			for _, k := range []string{"grant_types_supported", "response_types_supported", "id_token_signing_alg_values_supported"} {
				if l, _ := doc[k].([]any); len(l) == 0 {
					t.Errorf("%s = %v, want a non-empty list", k, doc[k])
				}
			}
			grants, _ := json.Marshal(doc["grant_types_supported"])
			if !strings.Contains(string(grants), "urn:ietf:params:oauth:grant-type:device_code") {
				t.Errorf("grant_types_supported = %s, want the device code grant", grants)
			}
		})
	}
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		keyType string
		kty     string
		alg     string
	}{
		{"default is RSA", "", "RSA", "RS256"},
		{"RSA", KeyTypeRSA, "RSA", "RS256"},
		{"EC", KeyTypeEC, "EC", "ES256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startIdP(t, Options{KeyType: tc.keyType})
			set := fetchSet(t, p)
			if set.Len() != 2 {
				t.Fatalf("JWKS has %d keys, want 2 (signing and encryption)", set.Len())
			}
			sig, ok := set.LookupKeyID(p.ActiveKID())
			if !ok {
				t.Fatalf("JWKS lacks the active kid %q", p.ActiveKID())
			}
			if got := sig.KeyType().String(); got != tc.kty {
				t.Errorf("signing key kty = %s, want %s", got, tc.kty)
			}
			if alg, _ := sig.Algorithm(); alg.String() != tc.alg {
				t.Errorf("signing key alg = %v, want %s", alg, tc.alg)
			}
			if use, _ := sig.KeyUsage(); use != "sig" {
				t.Errorf("signing key use = %q, want sig", use)
			}
			if priv, err := jwk.IsPrivateKey(sig); err != nil || priv {
				t.Errorf("signing key is private (%v, %v), want public only", priv, err)
			}
			enc, ok := set.LookupKeyID(p.EncKID())
			if !ok {
				t.Fatalf("JWKS lacks the encryption kid %q", p.EncKID())
			}
			if use, _ := enc.KeyUsage(); use != "enc" {
				t.Errorf("encryption key use = %q, want enc", use)
			}
			if alg, _ := enc.Algorithm(); alg.String() != "RSA-OAEP" {
				t.Errorf("encryption key alg = %v, want RSA-OAEP", alg)
			}
		})
	}
}

func TestMint(t *testing.T) {
	t.Parallel()
	rsaIdP := startIdP(t, Options{Realm: testRealm})
	ecIdP := startIdP(t, Options{Realm: testRealm, KeyType: KeyTypeEC})
	rsaSet, ecSet := fetchSet(t, rsaIdP), fetchSet(t, ecIdP)
	foreign, err := NewKey(KeyTypeRSA)
	if err != nil {
		t.Fatal(err)
	}
	encKey, _ := rsaIdP.Key(rsaIdP.EncKID())
	past := time.Now().Add(-time.Hour)

	tests := []struct {
		name   string
		p      *IdP
		set    jwk.Set
		mint   func(p *IdP) (string, error)
		wantOK bool
	}{
		// Tokens a verifier must reject.
		{"alg none", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.MintNone(map[string]any{"aud": "pg"})
		}, false},
		{"HS256 keyed with the RSA public key", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.MintHS256WithPublicKey(map[string]any{"aud": "pg"})
		}, false},
		{"HS256 keyed with the EC public key", ecIdP, ecSet, func(p *IdP) (string, error) {
			return p.MintHS256WithPublicKey(nil)
		}, false},
		{"foreign RSA key under the active kid", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.MintWithForeignKey(nil)
		}, false},
		{"foreign EC key under the active kid", ecIdP, ecSet, func(p *IdP) (string, error) {
			return p.MintWithForeignKey(nil)
		}, false},
		{"foreign key under its own kid", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.Mint(nil, WithKey(foreign))
		}, false},
		{"signed with the encryption key", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.Mint(nil, WithKey(encKey))
		}, false},
		{"active signature under the encryption kid", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.Mint(nil, WithKID(p.EncKID()))
		}, false},
		{"no kid", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.Mint(nil, WithoutKID())
		}, false},
		{"alg other than the published key's", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.Mint(nil, WithAlg(jwa.PS256()))
		}, false},
		{"expired", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.Mint(map[string]any{"iat": past.Add(-time.Hour), "exp": past})
		}, false},
		// Tokens that verify.
		{"RSA defaults", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.Mint(map[string]any{"aud": "pg", "sub": "alice"})
		}, true},
		{"EC defaults", ecIdP, ecSet, func(p *IdP) (string, error) {
			return p.Mint(map[string]any{"aud": []string{"pg", "other"}})
		}, true},
		{"without exp", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.Mint(map[string]any{"exp": nil})
		}, true},
		{"no defaults", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.Mint(map[string]any{"sub": "bob"}, NoDefaults())
		}, true},
		{"header typ at+jwt", rsaIdP, rsaSet, func(p *IdP) (string, error) {
			return p.Mint(nil, WithHeader("typ", "at+jwt"))
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok, err := tc.mint(tc.p)
			if err != nil {
				t.Fatalf("mint: %v", err)
			}
			_, err = verify(tok, tc.set)
			if tc.wantOK && err != nil {
				t.Errorf("verify: %v, want success", err)
			}
			if !tc.wantOK && err == nil {
				t.Errorf("verify succeeded, want failure")
			}
		})
	}
}

func TestMintClaimsAndHeader(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	p := startIdP(t, Options{Realm: testRealm, Now: func() time.Time { return now }})
	tests := []struct {
		name       string
		claims     map[string]any
		opts       []MintOption
		wantClaims map[string]any // nil value: claim must be absent
		wantHeader map[string]any // nil value: header must be absent
	}{
		{
			name:   "defaults",
			claims: map[string]any{"aud": "pg"},
			wantClaims: map[string]any{
				"iss": p.Issuer(), "iat": float64(now.Unix()), "exp": float64(now.Add(5 * time.Minute).Unix()),
				"sub": "test-user", "typ": "Bearer", "aud": "pg",
			},
			wantHeader: map[string]any{"alg": "RS256", "typ": "JWT", "kid": p.ActiveKID()},
		},
		{
			name:       "overrides and removals",
			claims:     map[string]any{"iss": "https://elsewhere", "sub": nil, "nbf": now.Add(time.Minute)},
			wantClaims: map[string]any{"iss": "https://elsewhere", "sub": nil, "nbf": float64(now.Unix() + 60)},
		},
		{
			name:       "no defaults",
			claims:     map[string]any{"sub": "bob"},
			opts:       []MintOption{NoDefaults()},
			wantClaims: map[string]any{"sub": "bob", "iss": nil, "exp": nil, "iat": nil, "typ": nil},
		},
		{
			name:       "kid options",
			opts:       []MintOption{WithKID("other"), WithHeader("typ", nil), WithHeader("jku", "https://evil")},
			wantHeader: map[string]any{"kid": "other", "typ": nil, "jku": "https://evil"},
		},
		{
			name:       "without kid",
			opts:       []MintOption{WithoutKID()},
			wantHeader: map[string]any{"kid": nil, "alg": "RS256"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok, err := p.Mint(tc.claims, tc.opts...)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			check := func(what string, got, want map[string]any) {
				t.Helper()
				for k, w := range want {
					g, present := got[k]
					switch {
					case w == nil && present:
						t.Errorf("%s %q = %v, want absent", what, k, g)
					case w != nil && g != w:
						t.Errorf("%s %q = %v (%T), want %v (%T)", what, k, g, g, w, w)
					}
				}
			}
			check("claim", tokenClaims(t, tok), tc.wantClaims)
			check("header", tokenHeader(t, tok), tc.wantHeader)
		})
	}
}

// TestMintSignatures checks each signing path against jwx with the raw key,
// independently of what the JWKS says.
func TestMintSignatures(t *testing.T) {
	t.Parallel()
	rsaIdP := startIdP(t, Options{})
	ecIdP := startIdP(t, Options{KeyType: KeyTypeEC})
	tests := []struct {
		name string
		p    *IdP
		alg  jwa.SignatureAlgorithm
	}{
		{"RS256", rsaIdP, jwa.RS256()},
		{"RS384", rsaIdP, jwa.RS384()},
		{"RS512", rsaIdP, jwa.RS512()},
		{"PS256", rsaIdP, jwa.PS256()},
		{"PS512", rsaIdP, jwa.PS512()},
		{"ES256", ecIdP, jwa.ES256()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tok, err := tc.p.Mint(nil, WithAlg(tc.alg))
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			k, _ := tc.p.Key(tc.p.ActiveKID())
			if _, err := jws.Verify([]byte(tok), jws.WithKey(tc.alg, k.Signer.Public())); err != nil {
				t.Errorf("jws.Verify: %v", err)
			}
		})
	}

	t.Run("alg unsuited to the key", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			p   *IdP
			alg jwa.SignatureAlgorithm
		}{
			{rsaIdP, jwa.ES256()}, {ecIdP, jwa.RS256()}, {ecIdP, jwa.ES384()}, {rsaIdP, jwa.HS256()},
		} {
			if _, err := tc.p.Mint(nil, WithAlg(tc.alg)); err == nil {
				t.Errorf("Mint with %s succeeded, want error", tc.alg)
			}
		}
	})

	t.Run("header alg can lie about the signature", func(t *testing.T) {
		t.Parallel()
		tok, err := rsaIdP.Mint(nil, WithHeader("alg", "RS512"))
		if err != nil {
			t.Fatal(err)
		}
		if h := tokenHeader(t, tok); h["alg"] != "RS512" {
			t.Errorf("header alg = %v, want RS512", h["alg"])
		}
		k, _ := rsaIdP.Key(rsaIdP.ActiveKID())
		if _, err := jws.Verify([]byte(tok), jws.WithKey(jwa.RS256(), k.Signer.Public())); err != nil {
			t.Errorf("RS256 signature under an RS512 header: %v", err)
		}
		if _, err := jws.Verify([]byte(tok), jws.WithKey(jwa.RS512(), k.Signer.Public())); err == nil {
			t.Errorf("RS512 verification succeeded, want the signature to be RS256")
		}
	})

	t.Run("HS256 secret is the public key PEM", func(t *testing.T) {
		t.Parallel()
		tok, err := rsaIdP.MintHS256WithPublicKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := rsaIdP.Key(rsaIdP.ActiveKID())
		der, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
		if err != nil {
			t.Fatal(err)
		}
		secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		if _, err := jws.Verify([]byte(tok), jws.WithKey(jwa.HS256(), secret)); err != nil {
			t.Errorf("HS256 with the PEM public key: %v", err)
		}
		if h := tokenHeader(t, tok); h["kid"] != rsaIdP.ActiveKID() || h["alg"] != "HS256" {
			t.Errorf("header = %v, want HS256 under the active kid", h)
		}
		tok, err = rsaIdP.Mint(nil, WithHMACSecret(der))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jws.Verify([]byte(tok), jws.WithKey(jwa.HS256(), der)); err != nil {
			t.Errorf("HS256 with the DER public key: %v", err)
		}
	})

	t.Run("none has an empty signature", func(t *testing.T) {
		t.Parallel()
		tok, err := rsaIdP.MintNone(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(tok, ".") || strings.Count(tok, ".") != 2 {
			t.Errorf("the token (%d bytes) does not end with an empty signature", len(tok))
		}
		if h := tokenHeader(t, tok); h["alg"] != "none" {
			t.Errorf("header alg = %v, want none", h["alg"])
		}
	})

	t.Run("foreign key keeps the active kid", func(t *testing.T) {
		t.Parallel()
		tok, err := rsaIdP.MintWithForeignKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		if h := tokenHeader(t, tok); h["kid"] != rsaIdP.ActiveKID() {
			t.Errorf("header kid = %v, want the active kid %q", h["kid"], rsaIdP.ActiveKID())
		}
	})
}

func TestRotation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		keyType string
	}{
		{"RSA", KeyTypeRSA},
		{"EC", KeyTypeEC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startIdP(t, Options{Realm: testRealm, KeyType: tc.keyType})
			oldKID := p.ActiveKID()
			oldTok, err := p.Mint(nil)
			if err != nil {
				t.Fatal(err)
			}

			newKID, err := p.Rotate()
			if err != nil {
				t.Fatalf("Rotate: %v", err)
			}
			if newKID == oldKID || p.ActiveKID() != newKID {
				t.Fatalf("after Rotate: new kid %q, active %q, old %q", newKID, p.ActiveKID(), oldKID)
			}
			newTok, err := p.Mint(nil)
			if err != nil {
				t.Fatal(err)
			}
			if kid := tokenHeader(t, newTok)["kid"]; kid != newKID {
				t.Errorf("new token kid = %v, want %q", kid, newKID)
			}
			set := fetchSet(t, p)
			if set.Len() != 3 {
				t.Errorf("JWKS after Rotate has %d keys, want 3 (old, new, enc)", set.Len())
			}
			for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
				if _, err := verify(tok, set); err != nil {
					t.Errorf("%s token after Rotate: %v", name, err)
				}
			}

			p.RemoveKey(oldKID)
			set = fetchSet(t, p)
			if _, ok := set.LookupKeyID(oldKID); ok || set.Len() != 2 {
				t.Errorf("JWKS after RemoveKey has %d keys, old kid listed %v; want 2 without it", set.Len(), ok)
			}
			if _, err := verify(oldTok, set); err == nil {
				t.Errorf("old token verifies after RemoveKey")
			}
			stale, ok := p.Key(oldKID)
			if !ok {
				t.Fatalf("Key(%q) of a removed key not found", oldKID)
			}
			staleTok, err := p.Mint(nil, WithKey(stale))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := verify(staleTok, set); err == nil {
				t.Errorf("token signed with the removed key verifies")
			}
			if _, err := verify(newTok, set); err != nil {
				t.Errorf("new token after RemoveKey: %v", err)
			}
		})
	}
}

func TestModes(t *testing.T) {
	t.Parallel()
	const slow = 300 * time.Millisecond
	tests := []struct {
		name    string
		mode    Mode
		path    string // PathDiscovery or PathJWKS
		timeout time.Duration
		// check judges one GET of the endpoint in the mode.
		check func(t *testing.T, p *IdP, resp *http.Response, body []byte, err error)
		// wantCount is the number of requests the IdP saw.
		wantCount int
	}{
		{"down refuses discovery", ModeDown, PathDiscovery, time.Second, wantRefused, 0},
		{"down refuses jwks", ModeDown, PathJWKS, time.Second, wantRefused, 0},
		{"hang times out discovery", ModeHang, PathDiscovery, 200 * time.Millisecond, wantTimeout, 1},
		{"hang times out jwks", ModeHang, PathJWKS, 200 * time.Millisecond, wantTimeout, 1},
		{"slow times out a hasty client", ModeSlow(slow), PathJWKS, 100 * time.Millisecond, wantTimeout, 1},
		{"error500 discovery", ModeError500, PathDiscovery, time.Second, wantStatus(http.StatusInternalServerError), 1},
		{"error500 jwks", ModeError500, PathJWKS, time.Second, wantStatus(http.StatusInternalServerError), 1},
		{"garbage discovery", ModeGarbage, PathDiscovery, time.Second, wantGarbage, 1},
		{"garbage jwks", ModeGarbage, PathJWKS, time.Second, wantGarbage, 1},
		{"huge discovery", ModeHuge, PathDiscovery, 10 * time.Second, wantHuge, 1},
		{"huge jwks", ModeHuge, PathJWKS, 10 * time.Second, wantHuge, 1},
		{"issuer mismatch discovery", ModeIssuerMismatch, PathDiscovery, time.Second, wantIssuer("/"), 1},
		{"issuer mismatch leaves jwks alone", ModeIssuerMismatch, PathJWKS, time.Second, wantJWKS, 1},
		{"slow answers a patient client", ModeSlow(slow), PathDiscovery, 10 * time.Second, wantSlow(slow), 1},
		{"normal discovery", ModeNormal, PathDiscovery, time.Second, wantIssuer(""), 1},
		{"normal jwks", ModeNormal, PathJWKS, time.Second, wantJWKS, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startIdP(t, Options{Realm: testRealm})
			c := newClient(t, tc.timeout, "")
			// An open keep-alive connection must not outlive ModeDown.
			fetchOK(t, c, p.DiscoveryURL())
			p.ResetCounts()

			if err := p.SetMode(tc.mode); err != nil {
				t.Fatalf("SetMode(%v): %v", tc.mode, err)
			}
			if p.Mode() != tc.mode {
				t.Errorf("Mode() = %v, want %v", p.Mode(), tc.mode)
			}
			start := time.Now()
			resp, body, err := fetch(c, p.Issuer()+tc.path)
			if resp != nil {
				resp.Header.Set("X-Test-Elapsed", time.Since(start).String())
			}
			tc.check(t, p, resp, body, err)
			if got := p.Requests(tc.path); got != tc.wantCount {
				t.Errorf("Requests(%q) = %d, want %d", tc.path, got, tc.wantCount)
			}

			if err := p.SetMode(ModeNormal); err != nil {
				t.Fatalf("SetMode(ModeNormal): %v", err)
			}
			doc := discoveryDoc(t, c, p)
			if doc["issuer"] != p.Issuer() {
				t.Errorf("back to normal: issuer = %v, want %q", doc["issuer"], p.Issuer())
			}
			if _, err := jwk.Parse(fetchOK(t, c, p.JWKSURI())); err != nil {
				t.Errorf("back to normal: jwk.Parse: %v", err)
			}
		})
	}
}

func wantRefused(t *testing.T, _ *IdP, _ *http.Response, _ []byte, err error) {
	t.Helper()
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error = %v, want connection refused", err)
	}
}

func wantTimeout(t *testing.T, _ *IdP, _ *http.Response, _ []byte, err error) {
	t.Helper()
	if !isTimeout(err) {
		t.Errorf("error = %v, want a timeout", err)
	}
}

func wantStatus(code int) func(*testing.T, *IdP, *http.Response, []byte, error) {
	return func(t *testing.T, _ *IdP, resp *http.Response, _ []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		if resp.StatusCode != code {
			t.Errorf("status %d, want %d", resp.StatusCode, code)
		}
	}
}

func wantGarbage(t *testing.T, p *IdP, resp *http.Response, body []byte, err error) {
	t.Helper()
	wantStatus(http.StatusOK)(t, p, resp, body, err)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if json.Valid(body) {
		t.Errorf("body %q is valid JSON, want garbage", body)
	}
}

func wantHuge(t *testing.T, p *IdP, resp *http.Response, body []byte, err error) {
	t.Helper()
	wantStatus(http.StatusOK)(t, p, resp, body, err)
	if resp.ContentLength != -1 {
		t.Errorf("Content-Length %d, want none (streamed)", resp.ContentLength)
	}
	if len(body) != HugeBodySize {
		t.Errorf("body is %d bytes, want %d", len(body), HugeBodySize)
	}
	if !strings.HasPrefix(string(body[:min(len(body), 16)]), `{"keys":[]`) {
		t.Errorf("body starts %q, want the start of a JSON object", body[:min(len(body), 16)])
	}
}

func wantIssuer(suffix string) func(*testing.T, *IdP, *http.Response, []byte, error) {
	return func(t *testing.T, p *IdP, resp *http.Response, body []byte, err error) {
		t.Helper()
		wantStatus(http.StatusOK)(t, p, resp, body, err)
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("decode discovery: %v", err)
		}
		if want := p.Issuer() + suffix; doc["issuer"] != want {
			t.Errorf("issuer = %v, want %q", doc["issuer"], want)
		}
		if doc["jwks_uri"] != p.JWKSURI() {
			t.Errorf("jwks_uri = %v, want %q", doc["jwks_uri"], p.JWKSURI())
		}
	}
}

func wantJWKS(t *testing.T, p *IdP, resp *http.Response, body []byte, err error) {
	t.Helper()
	wantStatus(http.StatusOK)(t, p, resp, body, err)
	set, err := jwk.Parse(body)
	if err != nil {
		t.Fatalf("jwk.Parse: %v", err)
	}
	if _, ok := set.LookupKeyID(p.ActiveKID()); !ok {
		t.Errorf("JWKS lacks the active kid")
	}
}

func wantSlow(d time.Duration) func(*testing.T, *IdP, *http.Response, []byte, error) {
	return func(t *testing.T, p *IdP, resp *http.Response, body []byte, err error) {
		t.Helper()
		wantIssuer("")(t, p, resp, body, err)
		elapsed, perr := time.ParseDuration(resp.Header.Get("X-Test-Elapsed"))
		if perr != nil || elapsed < d {
			t.Errorf("answered after %v, want at least %v", elapsed, d)
		}
	}
}

func TestModeChangeReleasesWaitingRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mode Mode
	}{
		{"hang", ModeHang},
		{"slow", ModeSlow(time.Hour)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startIdP(t, Options{Realm: testRealm})
			if err := p.SetMode(tc.mode); err != nil {
				t.Fatal(err)
			}
			c := newClient(t, 10*time.Second, "")
			type result struct {
				body []byte
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, body, err := fetch(c, p.JWKSURI())
				if err == nil && resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status)
				}
				done <- result{body, err}
			}()
			waitFor(t, "the request to arrive", func() bool { return p.Requests(PathJWKS) == 1 })
			if err := p.SetMode(ModeNormal); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil {
				t.Fatalf("waiting request: %v", r.err)
			}
			if _, err := jwk.Parse(r.body); err != nil {
				t.Errorf("waiting request got no JWKS: %v", err)
			}
		})
	}
}

func TestRequestCounts(t *testing.T) {
	t.Parallel()
	p := startIdP(t, Options{Realm: testRealm})
	c := newClient(t, 5*time.Second, "")
	for range 3 {
		fetchOK(t, c, p.DiscoveryURL())
	}
	for range 2 {
		fetchOK(t, c, p.JWKSURI())
	}
	if _, _, err := fetch(c, p.Issuer()+"/nowhere"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want int
	}{
		{PathDiscovery, 3},
		{testRealm + PathDiscovery, 3},
		{PathJWKS, 2},
		{testRealm + PathJWKS, 2},
		{testRealm + "/nowhere", 1},
		{"/never", 0},
	}
	for _, tc := range tests {
		if got := p.Requests(tc.path); got != tc.want {
			t.Errorf("Requests(%q) = %d, want %d", tc.path, got, tc.want)
		}
	}
	p.ResetCounts()
	for _, tc := range tests {
		if got := p.Requests(tc.path); got != 0 {
			t.Errorf("after ResetCounts: Requests(%q) = %d, want 0", tc.path, got)
		}
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		dir     string
		trustCA bool
		wantErr bool
	}{
		{"untrusting client fails", "", false, true},
		{"trusting client works", "", true, false},
		{"CA file in a given directory", dir, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startIdP(t, Options{Realm: testRealm, TLS: true, Dir: tc.dir})
			if !strings.HasPrefix(p.Issuer(), "https://127.0.0.1:") {
				t.Errorf("Issuer() = %q, want https", p.Issuer())
			}
			if tc.dir != "" && filepath.Dir(p.CAFile()) != tc.dir {
				t.Errorf("CAFile() = %q, want it in %s", p.CAFile(), tc.dir)
			}
			caFile := ""
			if tc.trustCA {
				caFile = p.CAFile()
			}
			c := newClient(t, 5*time.Second, caFile)
			_, body, err := fetch(c, p.DiscoveryURL())
			if tc.wantErr {
				var unknown x509.UnknownAuthorityError
				if !errors.As(err, &unknown) {
					t.Errorf("error = %v, want an unknown certificate authority", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("GET discovery: %v", err)
			}
			var doc map[string]any
			if err := json.Unmarshal(body, &doc); err != nil || doc["issuer"] != p.Issuer() {
				t.Errorf("discovery issuer = %v (%v), want %q", doc["issuer"], err, p.Issuer())
			}
			// The same issuer URL works again after the IdP was down.
			if err := p.SetMode(ModeDown); err != nil {
				t.Fatal(err)
			}
			if err := p.SetMode(ModeNormal); err != nil {
				t.Fatal(err)
			}
			if _, err := jwk.Parse(fetchOK(t, c, p.JWKSURI())); err != nil {
				t.Errorf("jwk.Parse after down and up: %v", err)
			}
		})
	}
}

func TestCloseRemovesCAFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		dir  string
	}{
		{"temporary directory", ""},
		{"given directory", t.TempDir()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := Start(Options{TLS: true, Dir: tc.dir})
			if err != nil {
				t.Fatal(err)
			}
			ca := p.CAFile()
			if _, err := os.Stat(ca); err != nil {
				t.Fatalf("CA file: %v", err)
			}
			p.Close()
			if _, err := os.Stat(ca); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("CA file after Close: %v, want it gone", err)
			}
			if tc.dir != "" {
				if _, err := os.Stat(tc.dir); err != nil {
					t.Errorf("given directory after Close: %v, want it kept", err)
				}
			} else if _, err := os.Stat(filepath.Dir(ca)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temporary directory after Close: %v, want it gone", err)
			}
		})
	}
}

func TestCloseWhileHanging(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mode Mode
	}{
		{"hang", ModeHang},
		{"slow", ModeSlow(time.Hour)},
		{"huge to a stalled reader", ModeHuge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := Start(Options{Realm: testRealm})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if err := p.SetMode(tc.mode); err != nil {
				t.Fatal(err)
			}
			c := newClient(t, 30*time.Second, "")
			done := make(chan error, 1)
			go func() {
				resp, err := c.Get(p.DiscoveryURL())
				if err == nil {
					// Stall, then drain: the read fails once Close
					// drops the connection.
					time.Sleep(100 * time.Millisecond)
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil {
						err = errors.New("body read to the end")
					}
				}
				done <- err
			}()
			waitFor(t, "the request to arrive", func() bool { return p.Requests(PathDiscovery) == 1 })

			start := time.Now()
			p.Close()
			// Close gives handlers closeWait before it gives up on them;
			// returning well before that shows they were released.
			if elapsed := time.Since(start); elapsed >= closeWait {
				t.Errorf("Close took %v, want it to release handlers before %v", elapsed, closeWait)
			}
			if tc.mode != ModeHuge {
				if err := <-done; err == nil {
					t.Errorf("hanging request succeeded after Close, want an error")
				}
			}
			if _, _, err := fetch(newClient(t, time.Second, ""), p.DiscoveryURL()); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("GET after Close: %v, want connection refused", err)
			}
			if err := p.SetMode(ModeNormal); err == nil {
				t.Errorf("SetMode after Close succeeded, want error")
			}
			p.Close() // a second Close does nothing
		})
	}
}

func TestModeString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode Mode
		want string
	}{
		{ModeNormal, "normal"},
		{ModeDown, "down"},
		{ModeHang, "hang"},
		{ModeError500, "error500"},
		{ModeGarbage, "garbage"},
		{ModeHuge, "huge"},
		{ModeIssuerMismatch, "issuer-mismatch"},
		{ModeSlow(1500 * time.Millisecond), "slow(1.5s)"},
		{ModeSlow(0), "normal"},
		{ModeSlow(-time.Second), "normal"},
	}
	for _, tc := range tests {
		if got := tc.mode.String(); got != tc.want {
			t.Errorf("Mode(%d).String() = %q, want %q", int64(tc.mode), got, tc.want)
		}
	}
}
