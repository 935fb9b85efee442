package hostile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
)

const corpusAud = "pg"

// tok describes a token to build, as in the validator's corpus.
type tok struct {
	hdr map[string]any
	cl  map[string]any
	alg string
	key any
}

type delT struct{}

var del = delT{}

func (t *tok) h(k string, v any) *tok {
	if v == del {
		delete(t.hdr, k)
	} else {
		t.hdr[k] = v
	}
	return t
}

func (t *tok) c(k string, v any) *tok {
	if v == del {
		delete(t.cl, k)
	} else {
		t.cl[k] = v
	}
	return t
}

func (t *tok) signedWith(alg, kid string, key any) *tok {
	t.alg, t.key = alg, key
	t.hdr["alg"] = alg
	if kid == "" {
		delete(t.hdr, "kid")
	} else {
		t.hdr["kid"] = kid
	}
	return t
}

func (t *tok) build(tb testing.TB) string {
	return signRaw(tb, mustJSON(tb, t.hdr), mustJSON(tb, t.cl), t.alg, t.key)
}

// stdClaims are the claims of a Keycloak-like access token, issued now.
func stdClaims(iss string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss, "aud": []any{corpusAud, "account"}, "azp": "psql", "sub": "8d8b6a2c-alice",
		"preferred_username": "alice", "typ": "Bearer",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Add(-10 * time.Second).Unix(), "nbf": now.Add(-10 * time.Second).Unix(),
		"scope": "openid profile db", "groups": []any{"dba", "analysts"},
		"realm_access": map[string]any{"roles": []any{"offline_access", "reader"}},
	}
}

// gen builds a case's token against the corpus issuer.
type gen func(tb testing.TB, ci *corpusIssuer) string

func std(ci *corpusIssuer) *tok {
	return &tok{hdr: map[string]any{"alg": "RS256", "typ": "JWT", "kid": "rsa1"}, cl: stdClaims(ci.issuer("corpus")), alg: "RS256", key: ci.rsa}
}

func desc(mod func(ci *corpusIssuer, t *tok)) gen {
	return func(tb testing.TB, ci *corpusIssuer) string {
		t := std(ci)
		if mod != nil {
			mod(ci, t)
		}
		return t.build(tb)
	}
}

func raw(hdr, payload string) gen {
	return func(tb testing.TB, ci *corpusIssuer) string {
		return signRaw(tb, []byte(hdr), []byte(payload), "RS256", ci.rsa)
	}
}

func edit(fn func(tok string) string) gen {
	return func(tb testing.TB, ci *corpusIssuer) string { return fn(std(ci).build(tb)) }
}

func rawPayload(fn func(p string, ci *corpusIssuer) string) gen {
	return func(tb testing.TB, ci *corpusIssuer) string {
		p := string(mustJSON(tb, stdClaims(ci.issuer("corpus"))))
		return signRaw(tb, []byte(`{"alg":"RS256","kid":"rsa1"}`), []byte(fn(p, ci)), "RS256", ci.rsa)
	}
}

func badB64(seg string) string { return seg[:len(seg)-len(seg)%4] + "A" }

func segs(tok string) []string { return strings.Split(tok, ".") }

// corpusCase is one token and the verdict the server must reach.
type corpusCase struct {
	name     string
	token    gen
	settings map[string]string // oauth_jwt.<name> = value, over the base
	role     string            // delegated login as this role; "" logs in through the ident map
	realm    string            // "" = corpus
	want     string            // reason code, "ok" when accepted
	authnID  string            // system_user is oauth:<authnID> when accepted
	// pg marks tokens PostgreSQL itself refuses before calling the
	// validator (they are not b64token text, RFC 6750 §2.1).
	pg     bool
	before func(ci *corpusIssuer)
}

const alice = "8d8b6a2c-alice"

func sets(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// corpus is the validator's bad-token corpus (validator/validate_test.go)
// rebuilt for a real server: the same tokens, signed by the same kinds of
// key, at the current time. The cases that need a failing key source are
// in test/faults, through a real identity provider.
func corpus() []corpusCase {
	unix := func(d time.Duration) int64 { return time.Now().Add(d).Unix() }
	return []corpusCase{
		// --- algorithm ---
		{name: "alg none", want: "alg_not_allowed", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("none", "rsa1", nil) })},
		{name: "alg none without kid or signature", want: "alg_not_allowed", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("none", "", nil) })},
		{name: "HS256 with RSA public key PEM as secret", want: "alg_not_allowed", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("HS256", "rsa1", pubPEM(ci)) })},
		{name: "HS256 with oct key in JWKS", want: "alg_not_allowed", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("HS256", "hmac1", ci.hmac) })},
		{name: "HS512 with oct key in JWKS", want: "alg_not_allowed", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("HS512", "hmac1", ci.hmac) })},
		{name: "RS256 not in allowed_algorithms", want: "alg_not_allowed", settings: sets("allowed_algorithms", "ES256"), token: desc(nil)},
		{name: "alg lowercase rs256", want: "alg_not_allowed", token: desc(func(ci *corpusIssuer, t *tok) { t.h("alg", "rs256") })},

		// --- keys ---
		{name: "unknown kid", want: "unknown_kid", token: desc(func(ci *corpusIssuer, t *tok) { t.h("kid", "nope") })},
		{name: "kid of a use enc key", want: "kid_not_signing_key", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("RS256", "enc1", ci.enc) })},
		{name: "kid of a key whose key_ops exclude verify", want: "kid_not_signing_key", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("RS256", "ops1", ci.opsEnc) })},
		{name: "kid of a key whose alg differs", want: "key_alg_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("RS256", "rs512only", ci.rs512) })},
		{name: "RS256 header with kid of an EC key", want: "key_type_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("RS256", "ec384", ci.rsa) })},
		{name: "ES256 with P-384 key", want: "key_type_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("ES256", "ec384", ci.ec384) })},
		{name: "PS256 header with kid of an RS256 key", want: "key_alg_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("PS256", "rsa1", ci.rsa) })},
		{name: "weak 1024-bit RSA key", want: "weak_key", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("RS256", "weak1", ci.weak) })},
		{name: "signature from another key with same kid", want: "bad_signature", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("RS256", "rsa1", ci.rsaOther) })},
		{name: "tampered payload", want: "bad_signature", token: func(tb testing.TB, ci *corpusIssuer) string {
			s := segs(std(ci).build(tb))
			cl := stdClaims(ci.issuer("corpus"))
			cl["sub"] = "root"
			return s[0] + "." + b64(mustJSON(tb, cl)) + "." + s[2]
		}},
		{name: "tampered header", want: "bad_signature", token: func(tb testing.TB, ci *corpusIssuer) string {
			s := segs(std(ci).build(tb))
			return b64([]byte(`{"kid":"rsa1","alg":"RS256"}`)) + "." + s[1] + "." + s[2]
		}},
		{name: "truncated signature", want: "bad_signature", token: edit(func(tok string) string { s := segs(tok); return s[0] + "." + s[1] + "." + s[2][:300] })},
		{name: "empty signature", want: "bad_signature", token: edit(func(tok string) string { return tok[:strings.LastIndexByte(tok, '.')+1] })},
		{name: "ES256 signature checked with EdDSA alg header", want: "key_alg_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("ES256", "ed1", ci.ec) })},
		{name: "no kid and several keys", want: "unknown_kid", token: desc(func(ci *corpusIssuer, t *tok) { t.h("kid", del) })},
		{name: "empty kid is no kid", want: "unknown_kid", token: desc(func(ci *corpusIssuer, t *tok) { t.h("kid", "") })},
		{name: "no kid and exactly one signing key", want: "ok", authnID: alice, realm: "single", token: func(tb testing.TB, ci *corpusIssuer) string {
			t := std(ci)
			t.c("iss", ci.issuer("single")).h("kid", del)
			return t.build(tb)
		}},

		// --- header ---
		{name: "crit header", want: "crit_header", token: desc(func(ci *corpusIssuer, t *tok) { t.h("crit", []any{"exp"}).h("exp", 1) })},
		{name: "b64 false", want: "crit_header", token: desc(func(ci *corpusIssuer, t *tok) { t.h("b64", false) })},
		{name: "jku header", want: "untrusted_key_header", token: desc(func(ci *corpusIssuer, t *tok) { t.h("jku", "https://evil.example/jwks") })},
		{name: "x5u header", want: "untrusted_key_header", token: desc(func(ci *corpusIssuer, t *tok) { t.h("x5u", "https://evil.example/cert.pem") })},
		{name: "jwk embedded", want: "untrusted_key_header", token: desc(func(ci *corpusIssuer, t *tok) {
			t.h("jwk", map[string]any{"kty": "RSA", "n": "AQAB", "e": "AQAB"})
		})},
		{name: "x5c header", want: "untrusted_key_header", token: desc(func(ci *corpusIssuer, t *tok) { t.h("x5c", []any{"MIIB"}) })},
		{name: "nested JWT", want: "malformed", token: desc(func(ci *corpusIssuer, t *tok) { t.h("cty", "JWT") })},
		{name: "kid not a string", want: "malformed", token: desc(func(ci *corpusIssuer, t *tok) { t.h("kid", 7) })},
		{name: "no alg", want: "malformed", token: desc(func(ci *corpusIssuer, t *tok) { t.h("alg", del) })},

		// --- structure ---
		{name: "empty token", want: "malformed", pg: true, token: func(testing.TB, *corpusIssuer) string { return "" }},
		{name: "two segments", want: "malformed", token: edit(func(tok string) string { return tok[:strings.LastIndexByte(tok, '.')] })},
		{name: "four segments", want: "malformed", token: edit(func(tok string) string { return tok + ".AAAA" })},
		{name: "five segments (JWE)", want: "malformed", token: func(testing.TB, *corpusIssuer) string {
			return "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ"
		}},
		{name: "malformed base64 in header", want: "malformed", token: edit(func(tok string) string { s := segs(tok); return badB64(s[0]) + "." + s[1] + "." + s[2] })},
		{name: "malformed base64 in payload", want: "malformed", token: edit(func(tok string) string { s := segs(tok); return s[0] + "." + badB64(s[1]) + "." + s[2] })},
		{name: "malformed base64 in signature", want: "malformed", token: edit(func(tok string) string { s := segs(tok); return s[0] + "." + s[1] + "." + badB64(s[2]) })},
		{name: "non-canonical base64 in signature", want: "malformed", token: edit(func(tok string) string {
			s := segs(tok)
			return s[0] + "." + s[1] + "." + s[2][:len(s[2])-1] + "B"
		})},
		{name: "base64 padding", want: "malformed", token: edit(func(tok string) string { return tok + "==" })},
		{name: "standard base64 alphabet", want: "malformed", token: edit(func(tok string) string {
			s := segs(tok)
			return s[0] + "." + s[1] + "." + s[2][:10] + "+/" + s[2][12:]
		})},
		// PostgreSQL skips the blanks after "Bearer": the validator gets the
		// token without them.
		{name: "white space before the token", want: "ok", authnID: alice, token: edit(func(tok string) string { return " " + tok })},
		{name: "white space inside the token", want: "malformed", pg: true, token: edit(func(tok string) string { return tok[:20] + " " + tok[20:] })},
		{name: "white space after the token", want: "malformed", pg: true, token: edit(func(tok string) string { return tok + " " })},
		{name: "empty header segment", want: "malformed", token: edit(func(tok string) string { return tok[strings.IndexByte(tok, '.'):] })},
		{name: "bad JSON in header", want: "malformed", token: raw(`{"alg":"RS256","kid":"rsa1"`, `{"sub":"x"}`)},
		{name: "bad JSON in payload", want: "malformed", token: raw(`{"alg":"RS256","kid":"rsa1"}`, `{"sub":"x",}`)},
		{name: "payload is an array", want: "malformed", token: raw(`{"alg":"RS256","kid":"rsa1"}`, `["sub"]`)},
		{name: "header is a string", want: "malformed", token: raw(`"RS256"`, `{"sub":"x"}`)},
		{name: "payload is not UTF-8", want: "malformed", token: raw(`{"alg":"RS256","kid":"rsa1"}`, "{\"sub\":\"\xff\"}")},
		{name: "oversized token", want: "token_too_large", token: desc(func(ci *corpusIssuer, t *tok) { t.c("pad", strings.Repeat("x", 32<<10)) })},
		{name: "deeply nested claims", want: "malformed", token: rawPayload(func(p string, _ *corpusIssuer) string {
			return p[:len(p)-1] + `,"deep":` + strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40) + "}"
		})},
		{name: "deeply nested arrays", want: "malformed", token: rawPayload(func(p string, _ *corpusIssuer) string {
			return p[:len(p)-1] + `,"deep":` + strings.Repeat(`[`, 5000) + strings.Repeat("]", 5000) + "}"
		})},
		{name: "duplicate claim", want: "malformed", token: rawPayload(func(p string, _ *corpusIssuer) string { return p[:len(p)-1] + `,"sub":"root"}` })},
		{name: "duplicate claim through an escape", want: "malformed", token: rawPayload(func(p string, _ *corpusIssuer) string { return p[:len(p)-1] + `,"s\u0075b":"root"}` })},
		{name: "duplicate header member", want: "malformed", token: raw(`{"alg":"RS256","kid":"rsa1","alg":"none"}`, `{"sub":"x"}`)},

		// --- token type ---
		{name: "Keycloak ID token (typ ID)", want: "id_token", token: desc(func(ci *corpusIssuer, t *tok) { t.c("typ", "ID") })},
		{name: "ID token with nonce", want: "id_token", token: desc(func(ci *corpusIssuer, t *tok) { t.c("typ", del).c("nonce", "n-0S6_WzA2Mj") })},
		{name: "ID token with at_hash", want: "id_token", token: desc(func(ci *corpusIssuer, t *tok) { t.c("typ", del).c("at_hash", "77QmUPtjPfzWtF2AnpK9RQ") })},
		{name: "header typ id_token", want: "id_token", token: desc(func(ci *corpusIssuer, t *tok) { t.h("typ", "id_token") })},
		{name: "Keycloak refresh token (typ Refresh)", want: "wrong_token_type", token: desc(func(ci *corpusIssuer, t *tok) { t.c("typ", "Refresh") })},
		{name: "header typ logout+jwt", want: "wrong_token_type", token: desc(func(ci *corpusIssuer, t *tok) { t.h("typ", "logout+jwt") })},
		{name: "typ claim not a string", want: "invalid_claim", token: desc(func(ci *corpusIssuer, t *tok) { t.c("typ", 1) })},
		{name: "ID token accepted when accept_id_tokens on", want: "ok", authnID: alice, settings: sets("accept_id_tokens", "on"),
			token: desc(func(ci *corpusIssuer, t *tok) { t.c("typ", "ID").c("nonce", "abc") })},
		{name: "typ at+jwt accepted", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.h("typ", "at+jwt").c("typ", del) })},
		{name: "typ application/at+jwt accepted", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.h("typ", "application/at+jwt").c("typ", del) })},
		{name: "no typ anywhere accepted", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.h("typ", del).c("typ", del) })},
		{name: "Keycloak Bearer with nonce accepted", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.c("nonce", "abc") })},

		// --- iss ---
		{name: "wrong iss", want: "iss_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.c("iss", "https://evil.example.com/realms/test") })},
		{name: "trailing-slash iss", want: "iss_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.c("iss", ci.issuer("corpus")+"/") })},
		{name: "missing iss", want: "iss_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.c("iss", del) })},
		{name: "iss not a string", want: "invalid_claim", token: desc(func(ci *corpusIssuer, t *tok) { t.c("iss", []any{ci.issuer("corpus")}) })},
		{name: "token of the single-key realm at the corpus line", want: "iss_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.c("iss", ci.issuer("single")) })},

		// --- aud ---
		{name: "wrong aud string", want: "aud_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.c("aud", "account") })},
		{name: "wrong aud array", want: "aud_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.c("aud", []any{"account", "broker"}) })},
		{name: "empty aud array", want: "aud_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.c("aud", []any{}) })},
		{name: "missing aud", want: "aud_mismatch", token: desc(func(ci *corpusIssuer, t *tok) { t.c("aud", del) })},
		{name: "aud array with a number", want: "invalid_claim", token: desc(func(ci *corpusIssuer, t *tok) { t.c("aud", []any{corpusAud, 1}) })},
		{name: "aud string accepted", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.c("aud", corpusAud) })},
		{name: "second configured audience accepted", want: "ok", authnID: alice, settings: sets("audience", "other, pg"),
			token: desc(func(ci *corpusIssuer, t *tok) { t.c("aud", corpusAud) })},

		// --- time ---
		{name: "expired", want: "expired", token: desc(func(ci *corpusIssuer, t *tok) { t.c("exp", unix(-100*time.Second)) })},
		{name: "expired long ago", want: "expired", token: desc(func(ci *corpusIssuer, t *tok) { t.c("exp", 1) })},
		{name: "expired within leeway accepted", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.c("exp", unix(-10*time.Second)) })},
		{name: "expired with leeway 0", want: "expired", settings: sets("leeway", "0"), token: desc(func(ci *corpusIssuer, t *tok) { t.c("exp", unix(-2*time.Second)) })},
		{name: "no exp", want: "missing_exp", token: desc(func(ci *corpusIssuer, t *tok) { t.c("exp", del) })},
		{name: "exp a string", want: "invalid_claim", token: desc(func(ci *corpusIssuer, t *tok) { t.c("exp", "2099-01-01") })},
		{name: "exp overflowing", want: "invalid_claim", token: func(tb testing.TB, ci *corpusIssuer) string {
			cl := stdClaims(ci.issuer("corpus"))
			delete(cl, "exp")
			p := string(mustJSON(tb, cl))
			return signRaw(tb, []byte(`{"alg":"RS256","kid":"rsa1"}`), []byte(p[:len(p)-1]+`,"exp":1e999}`), "RS256", ci.rsa)
		}},
		{name: "fractional exp accepted", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.c("exp", float64(unix(time.Minute))+0.5) })},
		{name: "nbf in future", want: "not_yet_valid", token: desc(func(ci *corpusIssuer, t *tok) { t.c("nbf", unix(100*time.Second)) })},
		{name: "nbf within leeway accepted", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.c("nbf", unix(20*time.Second)) })},
		{name: "nbf not a number", want: "invalid_claim", token: desc(func(ci *corpusIssuer, t *tok) { t.c("nbf", true) })},
		{name: "iat in future", want: "iat_in_future", token: desc(func(ci *corpusIssuer, t *tok) { t.c("iat", unix(time.Hour)) })},

		// --- client ---
		{name: "wrong azp", want: "azp_not_allowed", settings: sets("allowed_client_ids", "psql-prod, svc"), token: desc(nil)},
		{name: "no azp nor client_id", want: "azp_not_allowed", settings: sets("allowed_client_ids", "psql"), token: desc(func(ci *corpusIssuer, t *tok) { t.c("azp", del) })},
		{name: "azp allowed", want: "ok", authnID: alice, settings: sets("allowed_client_ids", "svc psql"), token: desc(nil)},
		{name: "client_id allowed when no azp", want: "ok", authnID: alice, settings: sets("allowed_client_ids", "svc"),
			token: desc(func(ci *corpusIssuer, t *tok) { t.c("azp", del).c("client_id", "svc") })},
		{name: "azp wins over client_id", want: "azp_not_allowed", settings: sets("allowed_client_ids", "svc"), token: desc(func(ci *corpusIssuer, t *tok) { t.c("client_id", "svc") })},
		{name: "Okta cid allowed when no azp, client_id or appid", want: "ok", authnID: alice, settings: sets("allowed_client_ids", "0oa1okta"),
			token: desc(func(ci *corpusIssuer, t *tok) { t.c("azp", del).c("cid", "0oa1okta") })},
		{name: "Okta cid not allowed", want: "azp_not_allowed", settings: sets("allowed_client_ids", "svc"), token: desc(func(ci *corpusIssuer, t *tok) { t.c("azp", del).c("cid", "0oa1okta") })},
		{name: "azp wins over cid", want: "azp_not_allowed", settings: sets("allowed_client_ids", "0oa1okta"), token: desc(func(ci *corpusIssuer, t *tok) { t.c("cid", "0oa1okta") })},
		{name: "azp not a string", want: "invalid_claim", settings: sets("allowed_client_ids", "psql"), token: desc(func(ci *corpusIssuer, t *tok) { t.c("azp", 5) })},

		// --- scopes ---
		{name: "missing scope", want: "missing_scope", settings: sets("required_scopes", "db admin"), token: desc(nil)},
		{name: "no scope claim", want: "missing_scope", settings: sets("required_scopes", "db"), token: desc(func(ci *corpusIssuer, t *tok) { t.c("scope", del) })},
		{name: "scope present", want: "ok", authnID: alice, settings: sets("required_scopes", "db,openid"), token: desc(nil)},
		{name: "scope via scp array", want: "ok", authnID: alice, settings: sets("required_scopes", "db"),
			token: desc(func(ci *corpusIssuer, t *tok) { t.c("scope", del).c("scp", []any{"user_impersonation", "db"}) })},
		{name: "scope via scp string", want: "ok", authnID: alice, settings: sets("required_scopes", "db"),
			token: desc(func(ci *corpusIssuer, t *tok) { t.c("scope", del).c("scp", "user_impersonation db") })},
		{name: "scope prefix is not the scope", want: "missing_scope", settings: sets("required_scopes", "db"), token: desc(func(ci *corpusIssuer, t *tok) { t.c("scope", "openid dbadmin") })},

		// --- algorithms that must work ---
		{name: "RS256 ok", want: "ok", authnID: alice, token: desc(nil)},
		{name: "PS256 ok", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("PS256", "ps1", ci.ps) })},
		{name: "ES256 ok", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("ES256", "ec1", ci.ec) })},
		{name: "ES384 ok with key without alg", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("ES384", "ec384", ci.ec384) })},
		{name: "EdDSA ok", want: "ok", authnID: alice, token: desc(func(ci *corpusIssuer, t *tok) { t.signedWith("EdDSA", "ed1", ci.ed) })},

		// --- identity ---
		{name: "authn_id from preferred_username", want: "ok", authnID: "alice", settings: sets("authn_id_claim", "preferred_username"), token: desc(nil)},
		{name: "missing authn_id claim", want: "no_identity", settings: sets("authn_id_claim", "preferred_username"), token: desc(func(ci *corpusIssuer, t *tok) { t.c("preferred_username", del) })},
		{name: "missing sub", want: "no_identity", token: desc(func(ci *corpusIssuer, t *tok) { t.c("sub", del) })},
		{name: "empty authn_id", want: "no_identity", token: desc(func(ci *corpusIssuer, t *tok) { t.c("sub", "") })},
		{name: "authn_id an object", want: "no_identity", settings: sets("authn_id_claim", "realm_access"), token: desc(nil)},
		{name: "authn_id with NUL", want: "no_identity", token: desc(func(ci *corpusIssuer, t *tok) { t.c("sub", "admin\x00evil") })},
		{name: "authn_id a number", want: "ok", authnID: "12345", settings: sets("authn_id_claim", "uid"), token: desc(func(ci *corpusIssuer, t *tok) { t.c("uid", 12345) })},
		{name: "authn_id path with escaped dot", want: "ok", authnID: "bob@example.com", settings: sets("authn_id_claim", `https://example\.com/email`),
			token: desc(func(ci *corpusIssuer, t *tok) { t.c("https://example.com/email", "bob@example.com") })},
		{name: "authn_id nested path", want: "ok", authnID: "E42", settings: sets("authn_id_claim", "ext.employee_id"),
			token: desc(func(ci *corpusIssuer, t *tok) { t.c("ext", map[string]any{"employee_id": "E42"}) })},

		// --- delegated mode ---
		{name: "delegated role allowed via group", want: "ok", authnID: alice, role: "c_dba",
			settings: sets("role_claim", "groups", "role_map", "dba=c_dba, analysts=c_reader"), token: desc(nil)},
		{name: "delegated role allowed via second mapping of a value", want: "ok", authnID: alice, role: "c_admin",
			settings: sets("role_claim", "groups", "role_map", "dba=c_dba, dba=c_admin"), token: desc(nil)},
		{name: "delegated role denied", want: "role_not_allowed", role: "c_super",
			settings: sets("role_claim", "groups", "role_map", "dba=c_dba, analysts=c_reader"), token: desc(nil)},
		{name: "delegated role denied without groups claim", want: "role_not_allowed", role: "c_dba",
			settings: sets("role_claim", "groups", "role_map", "dba=c_dba"), token: desc(func(ci *corpusIssuer, t *tok) { t.c("groups", del) })},
		{name: "delegated role via realm_access.roles", want: "ok", authnID: alice, role: "c_reader",
			settings: sets("role_claim", "realm_access.roles", "role_map", "reader=c_reader"), token: desc(nil)},
		{name: "delegated role via escaped-dot group claim", want: "ok", authnID: alice, role: "c_dba",
			settings: sets("role_claim", `https://example\.com/groups`, "role_map", "ops=c_dba"),
			token:    desc(func(ci *corpusIssuer, t *tok) { t.c("https://example.com/groups", []any{"ops"}) })},
		{name: "delegated role via client_role_map", want: "ok", authnID: "service-account-etl", role: "c_loader",
			settings: sets("client_role_map", "etl=c_loader", "authn_id_claim", "preferred_username"),
			token: desc(func(ci *corpusIssuer, t *tok) {
				t.c("azp", "etl").c("preferred_username", "service-account-etl").c("groups", del)
			})},
		{name: "delegated client_role_map other client denied", want: "role_not_allowed", role: "c_loader",
			settings: sets("client_role_map", "etl=c_loader"), token: desc(nil)},
		{name: "delegated role via identity", want: "ok", authnID: "c_alice", role: "c_alice",
			settings: sets("role_from_identity", "on", "authn_id_claim", "preferred_username"),
			token:    desc(func(ci *corpusIssuer, t *tok) { t.c("preferred_username", "c_alice") })},
		{name: "delegated identity differs from role", want: "role_not_allowed", role: "c_bob",
			settings: sets("role_from_identity", "on", "authn_id_claim", "preferred_username"), token: desc(nil)},
		{name: "delegated without any mapping", want: "role_not_allowed", role: "c_dba", token: desc(nil)},
		{name: "delegated to the superuser without a mapping", want: "role_not_allowed", role: "postgres", token: desc(nil)},

		// --- keys that appear later ---
		{name: "kid found after refetch (rotation)", want: "ok", authnID: alice,
			before: func(ci *corpusIssuer) { time.Sleep(1100 * time.Millisecond); ci.rotate() },
			token:  desc(func(ci *corpusIssuer, t *tok) { t.signedWith("RS256", "rsa2", ci.rotated) })},
	}
}

// pubPEM is rsa1's public key as PKIX PEM, the secret of the
// algorithm-confusion attack (RFC 8725 §2.1).
func pubPEM(ci *corpusIssuer) []byte {
	return pemPublic(&ci.rsa.PublicKey)
}

// corpusCluster is a server with the corpus issuer on three pg_hba lines:
// the ident-map line (any identity may log in as corpus_ident), the
// single-key realm, and delegated mode for every other role.
func corpusCluster(t *testing.T, ci *corpusIssuer, conf ...string) *pgtest.Cluster {
	t.Helper()
	c := pgtest.New(t, pgtest.Options{Conf: conf})
	ident := filepath.Join(c.Data, "pg_ident.conf")
	if err := os.WriteFile(ident, []byte("corpus /^(.*)$ corpus_ident\ncorpus /^(.*)$ corpus_single\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loadkit.ServerOwned(t, ident)
	c.SetHBA(
		fmt.Sprintf(`host all corpus_ident 127.0.0.1/32 oauth issuer="%s" scope="openid db" map=corpus`, ci.issuer("corpus")),
		fmt.Sprintf(`host all corpus_single 127.0.0.1/32 oauth issuer="%s" scope="openid db" map=corpus`, ci.issuer("single")),
		loadkit.HBA("all", ci.issuer("corpus")),
	)
	var sql []string
	for _, r := range []string{"corpus_ident", "corpus_single", "c_dba", "c_admin", "c_super", "c_reader", "c_loader", "c_alice", "c_bob"} {
		sql = append(sql, "create role "+r+" login")
	}
	c.Exec(sql...)
	return c
}

// corpusBase are the settings of every corpus case.
func corpusBase() map[string]string {
	return map[string]string{
		"oauth_jwt.audience":             loadkit.Quote(corpusAud),
		"oauth_jwt.require_https":        "off",
		"oauth_jwt.log_accepted":         "on",
		"oauth_jwt.kid_refetch_interval": "1",
	}
}

// The bad-token corpus through real connections: every token is refused
// or accepted by the server as the validator's unit tests say, the log
// names the reason, and no token text reaches the log.
func TestCorpusThroughServer(t *testing.T) {
	ci := startCorpusIssuer(t)
	c := corpusCluster(t, ci)
	watch := loadkit.WatchCrashes(t, c)
	cases := corpus()
	// Group the cases by settings so that the server reloads once per group;
	// the rotation case runs last.
	key := func(cc corpusCase) string {
		if cc.before != nil {
			return "\xff"
		}
		var kv []string
		for k, v := range cc.settings {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		return strings.Join(kv, "\x00")
	}
	sort.SliceStable(cases, func(i, j int) bool { return key(cases[i]) < key(cases[j]) })

	neg, viaPG := 0, 0
	current := "\x01"
	for _, cc := range cases {
		if k := key(cc); k != current {
			kv := corpusBase()
			for name, v := range cc.settings {
				kv["oauth_jwt."+name] = loadkit.Quote(v)
			}
			c.SetConf(kv)
			current = k
		}
		if cc.want != "ok" {
			neg++
		}
		t.Run(cc.name, func(t *testing.T) {
			if cc.before != nil {
				cc.before(ci)
			}
			token := cc.token(t, ci)
			role := cc.role
			if role == "" {
				role = "corpus_ident"
				if cc.realm == "single" {
					role = "corpus_single"
				}
			}
			o := loginOutcome(t, c, role, token)
			if cc.pg {
				viaPG++
				if o.accepted || o.validatorCalled {
					t.Fatalf("want PostgreSQL to refuse the token before the validator; accepted=%v, validator called=%v\n%s", o.accepted, o.validatorCalled, o.log)
				}
				return
			}
			switch {
			case cc.want == "ok" && !o.accepted:
				t.Fatalf("refused, want accepted:\n%s", o.log)
			case cc.want != "ok" && o.accepted:
				t.Fatalf("ACCEPTED, want %s:\n%s", cc.want, o.log)
			case o.reason != cc.want:
				t.Fatalf("reason %q, want %q:\n%s", o.reason, cc.want, o.log)
			}
			if cc.want == "ok" && cc.authnID != "" && o.systemUser != "oauth:"+cc.authnID {
				t.Errorf("system_user %q, want oauth:%s", o.systemUser, cc.authnID)
			}
		})
	}
	watch.Check(t)
	t.Logf("%d corpus cases through the server (%d negative), %d refused by PostgreSQL before the validator", len(cases), neg, viaPG)
	figuresMu.Lock()
	figures.CorpusCases, figures.CorpusNegative, figures.CorpusRefusedByPostgres = len(cases), neg, viaPG
	figures.CorpusReasons = loadkit.Reasons(c.Log())
	figuresMu.Unlock()
}

// outcome is what one login through the server gave.
type outcome struct {
	accepted        bool
	reason          string
	validatorCalled bool
	systemUser      string
	log             string
}

// loginOutcome logs in as role with token and reads the verdict from the
// log (oauth_jwt logs every verdict with log_accepted on).
func loginOutcome(t testing.TB, c *pgtest.Cluster, role, token string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mark := c.LogMark()
	conn, err := c.ConnectOAuth(ctx, role, token)
	var o outcome
	if err == nil {
		o.accepted = true
		if qerr := conn.QueryRow(ctx, "select system_user").Scan(&o.systemUser); qerr != nil {
			t.Errorf("query after login: %v", qerr)
		}
		conn.Close(ctx)
	}
	o.log = waitVerdict(t, c, mark, role)
	if m := reasonRE.FindStringSubmatch(o.log); m != nil {
		o.reason = m[1]
	}
	o.validatorCalled = strings.Contains(o.log, "oauth_jwt:")
	assertNoToken(t, o.log, token)
	return o
}
