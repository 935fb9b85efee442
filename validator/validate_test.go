package validator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// corpusCase is one named token and the verdict it must get.
type corpusCase struct {
	name     string
	token    func(tb testing.TB, f *fixture) string
	settings Settings                       // added to baseSettings
	req      func(r *Request)               // adjusts the request
	src      func(m *memSource, f *fixture) // adjusts the key source
	want     Reason
	authnID  string // expected AuthnID ("" = none)
	detail   string // substring the rejection detail must contain
}

// desc builds a token from a description changed by mod.
func desc(mod func(f *fixture, t *tok)) func(testing.TB, *fixture) string {
	return func(tb testing.TB, f *fixture) string {
		tb.Helper()
		t := f.rs256()
		if mod != nil {
			mod(f, t)
		}
		return t.build(tb)
	}
}

// raw builds a token from header and payload JSON text, signed with rsa1.
func raw(hdr, payload string) func(testing.TB, *fixture) string {
	return func(tb testing.TB, f *fixture) string {
		tb.Helper()
		return signRaw(tb, []byte(hdr), []byte(payload), "RS256", f.rsa)
	}
}

// valid returns the standard valid token, then lets edit change its text.
func edit(fn func(tok string) string) func(testing.TB, *fixture) string {
	return func(tb testing.TB, f *fixture) string {
		tb.Helper()
		return fn(f.rs256().build(tb))
	}
}

// badB64 makes a segment whose length no base64url text can have.
func badB64(seg string) string { return seg[:len(seg)-len(seg)%4] + "A" }

func segments(tok string) []string { return strings.Split(tok, ".") }

func validPayloadJSON(tb testing.TB) string {
	tb.Helper()
	return string(mustJSON(tb, stdClaims()))
}

// corpus is the bad-token corpus plus the positive cases.
func corpus() []corpusCase {
	unix := func(d time.Duration) int64 { return testNow.Add(d).Unix() }
	return []corpusCase{
		// --- algorithm ---
		{name: "alg none", want: ReasonAlgNotAllowed, detail: "Unsigned tokens are never accepted",
			token: desc(func(f *fixture, t *tok) { t.signedWith("none", "rsa1", nil) })},
		{name: "alg none without kid or signature", want: ReasonAlgNotAllowed,
			token: desc(func(f *fixture, t *tok) { t.signedWith("none", "", nil) })},
		{name: "HS256 with RSA public key PEM as secret", want: ReasonAlgNotAllowed, detail: "Symmetric",
			token: desc(func(f *fixture, t *tok) { t.signedWith("HS256", "rsa1", f.pubPEM) })},
		{name: "HS256 with oct key in JWKS", want: ReasonAlgNotAllowed,
			token: desc(func(f *fixture, t *tok) { t.signedWith("HS256", "hmac1", f.hmac) })},
		{name: "HS512 with oct key in JWKS", want: ReasonAlgNotAllowed,
			token: desc(func(f *fixture, t *tok) { t.signedWith("HS512", "hmac1", f.hmac) })},
		{name: "RS256 not in allowed_algorithms", want: ReasonAlgNotAllowed,
			settings: Settings{"allowed_algorithms": "ES256"}, token: desc(nil)},
		{name: "alg lowercase rs256", want: ReasonAlgNotAllowed,
			token: desc(func(f *fixture, t *tok) { t.h("alg", "rs256") })},

		// --- keys ---
		{name: "unknown kid", want: ReasonUnknownKID, detail: `kid "nope"`,
			token: desc(func(f *fixture, t *tok) { t.h("kid", "nope") })},
		{name: "kid of a use enc key", want: ReasonKIDNotSigningKey,
			token: desc(func(f *fixture, t *tok) { t.signedWith("RS256", "enc1", f.enc) })},
		{name: "kid of a key whose key_ops exclude verify", want: ReasonKIDNotSigningKey,
			token: desc(func(f *fixture, t *tok) { t.signedWith("RS256", "ops1", f.opsEnc) })},
		{name: "kid of a key whose alg differs", want: ReasonKeyAlgMismatch,
			token: desc(func(f *fixture, t *tok) { t.signedWith("RS256", "rs512only", f.rs512) })},
		{name: "RS256 header with kid of an EC key", want: ReasonKeyTypeMismatch,
			token: desc(func(f *fixture, t *tok) { t.signedWith("RS256", "ec384", f.rsa) })},
		{name: "ES256 with P-384 key", want: ReasonKeyTypeMismatch, detail: "P-384",
			token: desc(func(f *fixture, t *tok) { t.signedWith("ES256", "ec384", f.ec384) })},
		{name: "PS256 header with kid of an RS256 key", want: ReasonKeyAlgMismatch,
			token: desc(func(f *fixture, t *tok) { t.signedWith("PS256", "rsa1", f.rsa) })},
		{name: "weak 1024-bit RSA key", want: ReasonWeakKey, detail: "1024-bit",
			token: desc(func(f *fixture, t *tok) { t.signedWith("RS256", "weak1", f.weak) })},
		{name: "signature from another key with same kid", want: ReasonBadSignature,
			token: desc(func(f *fixture, t *tok) { t.signedWith("RS256", "rsa1", f.rsaOther) })},
		{name: "tampered payload", want: ReasonBadSignature,
			token: func(tb testing.TB, f *fixture) string {
				s := segments(f.rs256().build(tb))
				cl := stdClaims()
				cl["sub"] = "root"
				return s[0] + "." + b64url(mustJSON(tb, cl)) + "." + s[2]
			}},
		{name: "tampered header", want: ReasonBadSignature,
			token: func(tb testing.TB, f *fixture) string {
				s := segments(f.rs256().build(tb))
				return b64url([]byte(`{"kid":"rsa1","alg":"RS256"}`)) + "." + s[1] + "." + s[2]
			}},
		{name: "truncated signature", want: ReasonBadSignature,
			token: edit(func(tok string) string { s := segments(tok); return s[0] + "." + s[1] + "." + s[2][:300] })},
		{name: "empty signature", want: ReasonBadSignature,
			token: edit(func(tok string) string { return tok[:strings.LastIndexByte(tok, '.')+1] })},
		{name: "ES256 signature checked with EdDSA alg header", want: ReasonKeyAlgMismatch,
			token: desc(func(f *fixture, t *tok) { t.signedWith("ES256", "ed1", f.ec) })},
		{name: "no kid and several keys", want: ReasonUnknownKID, detail: "no kid",
			token: desc(func(f *fixture, t *tok) { t.h("kid", del) })},
		{name: "empty kid is no kid", want: ReasonUnknownKID, detail: "no kid",
			token: desc(func(f *fixture, t *tok) { t.h("kid", "") })},
		{name: "no kid and exactly one signing key", want: ReasonOK, authnID: "8d8b6a2c-alice",
			src:   func(m *memSource, f *fixture) { m.set = singleKeySet(f) },
			token: desc(func(f *fixture, t *tok) { t.h("kid", del) })},
		{name: "kid found after refetch (rotation)", want: ReasonOK, authnID: "8d8b6a2c-alice",
			src:   func(m *memSource, f *fixture) { m.afterKID = f.rotatedTo },
			token: desc(func(f *fixture, t *tok) { t.signedWith("RS256", "rsa2", f.rotated) })},

		// --- header ---
		{name: "crit header", want: ReasonCritHeader,
			token: desc(func(f *fixture, t *tok) { t.h("crit", []any{"exp"}).h("exp", 1) })},
		{name: "b64 false", want: ReasonCritHeader,
			token: desc(func(f *fixture, t *tok) { t.h("b64", false) })},
		{name: "jku header", want: ReasonUntrustedKeyHeader, detail: "jku",
			token: desc(func(f *fixture, t *tok) { t.h("jku", "https://evil.example/jwks") })},
		{name: "x5u header", want: ReasonUntrustedKeyHeader,
			token: desc(func(f *fixture, t *tok) { t.h("x5u", "https://evil.example/cert.pem") })},
		{name: "jwk embedded", want: ReasonUntrustedKeyHeader,
			token: desc(func(f *fixture, t *tok) {
				t.h("jwk", map[string]any{"kty": "RSA", "n": "AQAB", "e": "AQAB"})
			})},
		{name: "x5c header", want: ReasonUntrustedKeyHeader,
			token: desc(func(f *fixture, t *tok) { t.h("x5c", []any{"MIIB"}) })},
		{name: "nested JWT", want: ReasonMalformed, detail: "nested",
			token: desc(func(f *fixture, t *tok) { t.h("cty", "JWT") })},
		{name: "kid not a string", want: ReasonMalformed,
			token: desc(func(f *fixture, t *tok) { t.h("kid", 7) })},
		{name: "no alg", want: ReasonMalformed,
			token: desc(func(f *fixture, t *tok) { t.h("alg", del) })},

		// --- structure ---
		{name: "empty token", want: ReasonMalformed, token: func(testing.TB, *fixture) string { return "" }},
		{name: "two segments", want: ReasonMalformed, detail: "2 dot-separated",
			token: edit(func(tok string) string { return tok[:strings.LastIndexByte(tok, '.')] })},
		{name: "four segments", want: ReasonMalformed,
			token: edit(func(tok string) string { return tok + ".AAAA" })},
		{name: "five segments (JWE)", want: ReasonMalformed, detail: "JWE",
			token: func(testing.TB, *fixture) string {
				return "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ"
			}},
		{name: "malformed base64 in header", want: ReasonMalformed, detail: "header segment",
			token: edit(func(tok string) string { s := segments(tok); return badB64(s[0]) + "." + s[1] + "." + s[2] })},
		{name: "malformed base64 in payload", want: ReasonMalformed, detail: "payload segment",
			token: edit(func(tok string) string { s := segments(tok); return s[0] + "." + badB64(s[1]) + "." + s[2] })},
		{name: "malformed base64 in signature", want: ReasonMalformed, detail: "signature segment",
			token: edit(func(tok string) string { s := segments(tok); return s[0] + "." + s[1] + "." + badB64(s[2]) })},
		{name: "non-canonical base64 in signature", want: ReasonMalformed, detail: "signature segment",
			token: edit(func(tok string) string { s := segments(tok); return s[0] + "." + s[1] + "." + s[2][:len(s[2])-1] + "B" })},
		{name: "base64 padding", want: ReasonMalformed,
			token: edit(func(tok string) string { return tok + "==" })},
		{name: "standard base64 alphabet", want: ReasonMalformed,
			token: edit(func(tok string) string {
				s := segments(tok)
				return s[0] + "." + s[1] + "." + s[2][:10] + "+/" + s[2][12:]
			})},
		{name: "white space", want: ReasonMalformed,
			token: edit(func(tok string) string { return " " + tok })},
		{name: "empty header segment", want: ReasonMalformed,
			token: edit(func(tok string) string { return tok[strings.IndexByte(tok, '.'):] })},
		{name: "bad JSON in header", want: ReasonMalformed, detail: "header is not valid JSON",
			token: raw(`{"alg":"RS256","kid":"rsa1"`, `{"sub":"x"}`)},
		{name: "bad JSON in payload", want: ReasonMalformed, detail: "payload is not valid JSON",
			token: raw(`{"alg":"RS256","kid":"rsa1"}`, `{"sub":"x",}`)},
		{name: "payload is an array", want: ReasonMalformed, detail: "not a JSON object",
			token: raw(`{"alg":"RS256","kid":"rsa1"}`, `["sub"]`)},
		{name: "header is a string", want: ReasonMalformed,
			token: raw(`"RS256"`, `{"sub":"x"}`)},
		{name: "payload is not UTF-8", want: ReasonMalformed, detail: "UTF-8",
			token: raw(`{"alg":"RS256","kid":"rsa1"}`, "{\"sub\":\"\xff\"}")},
		{name: "oversized token", want: ReasonTokenTooLarge,
			token: desc(func(f *fixture, t *tok) { t.c("pad", strings.Repeat("x", MaxTokenBytes)) })},
		{name: "deeply nested claims", want: ReasonMalformed, detail: "nested more than",
			token: func(tb testing.TB, f *fixture) string {
				p := validPayloadJSON(tb)
				deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
				return signRaw(tb, []byte(`{"alg":"RS256","kid":"rsa1"}`), []byte(p[:len(p)-1]+`,"deep":`+deep+"}"), "RS256", f.rsa)
			}},
		{name: "deeply nested arrays", want: ReasonMalformed,
			token: func(tb testing.TB, f *fixture) string {
				p := validPayloadJSON(tb)
				deep := strings.Repeat(`[`, 5000) + strings.Repeat("]", 5000)
				return signRaw(tb, []byte(`{"alg":"RS256","kid":"rsa1"}`), []byte(p[:len(p)-1]+`,"deep":`+deep+"}"), "RS256", f.rsa)
			}},
		{name: "duplicate claim", want: ReasonMalformed, detail: "duplicate",
			token: func(tb testing.TB, f *fixture) string {
				p := validPayloadJSON(tb)
				return signRaw(tb, []byte(`{"alg":"RS256","kid":"rsa1"}`), []byte(p[:len(p)-1]+`,"sub":"root"}`), "RS256", f.rsa)
			}},
		{name: "duplicate claim through an escape", want: ReasonMalformed, detail: "duplicate",
			token: func(tb testing.TB, f *fixture) string {
				p := validPayloadJSON(tb)
				return signRaw(tb, []byte(`{"alg":"RS256","kid":"rsa1"}`), []byte(p[:len(p)-1]+`,"s\u0075b":"root"}`), "RS256", f.rsa)
			}},
		{name: "duplicate header member", want: ReasonMalformed,
			token: raw(`{"alg":"RS256","kid":"rsa1","alg":"none"}`, `{"sub":"x"}`)},

		// --- token type ---
		{name: "Keycloak ID token (typ ID)", want: ReasonIDToken, detail: `"ID"`,
			token: desc(func(f *fixture, t *tok) { t.c("typ", "ID") })},
		{name: "ID token with nonce", want: ReasonIDToken, detail: "nonce",
			token: desc(func(f *fixture, t *tok) { t.c("typ", del).c("nonce", "n-0S6_WzA2Mj") })},
		{name: "ID token with at_hash", want: ReasonIDToken, detail: "at_hash",
			token: desc(func(f *fixture, t *tok) { t.c("typ", del).c("at_hash", "77QmUPtjPfzWtF2AnpK9RQ") })},
		{name: "header typ id_token", want: ReasonIDToken,
			token: desc(func(f *fixture, t *tok) { t.h("typ", "id_token") })},
		{name: "Keycloak refresh token (typ Refresh)", want: ReasonWrongTokenType,
			token: desc(func(f *fixture, t *tok) { t.c("typ", "Refresh") })},
		{name: "header typ logout+jwt", want: ReasonWrongTokenType,
			token: desc(func(f *fixture, t *tok) { t.h("typ", "logout+jwt") })},
		{name: "typ claim not a string", want: ReasonInvalidClaim,
			token: desc(func(f *fixture, t *tok) { t.c("typ", 1) })},
		{name: "ID token accepted when accept_id_tokens on", want: ReasonOK, authnID: "8d8b6a2c-alice",
			settings: Settings{"accept_id_tokens": "on"},
			token:    desc(func(f *fixture, t *tok) { t.c("typ", "ID").c("nonce", "abc") })},
		{name: "typ at+jwt accepted", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.h("typ", "at+jwt").c("typ", del) })},
		{name: "typ application/at+jwt accepted", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.h("typ", "application/at+jwt").c("typ", del) })},
		{name: "no typ anywhere accepted", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.h("typ", del).c("typ", del) })},
		{name: "Keycloak Bearer with nonce accepted", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.c("nonce", "abc") })},

		// --- iss ---
		{name: "wrong iss", want: ReasonIssMismatch,
			token: desc(func(f *fixture, t *tok) { t.c("iss", "https://evil.example.com/realms/test") })},
		{name: "trailing-slash iss", want: ReasonIssMismatch, detail: "trailing slash",
			token: desc(func(f *fixture, t *tok) { t.c("iss", testIssuer+"/") })},
		{name: "missing iss", want: ReasonIssMismatch, detail: "no iss",
			token: desc(func(f *fixture, t *tok) { t.c("iss", del) })},
		{name: "iss not a string", want: ReasonInvalidClaim,
			token: desc(func(f *fixture, t *tok) { t.c("iss", []any{testIssuer}) })},

		// --- aud ---
		{name: "wrong aud string", want: ReasonAudMismatch,
			token: desc(func(f *fixture, t *tok) { t.c("aud", "account") })},
		{name: "wrong aud array", want: ReasonAudMismatch,
			token: desc(func(f *fixture, t *tok) { t.c("aud", []any{"account", "broker"}) })},
		{name: "empty aud array", want: ReasonAudMismatch, detail: "no audience",
			token: desc(func(f *fixture, t *tok) { t.c("aud", []any{}) })},
		{name: "missing aud", want: ReasonAudMismatch,
			token: desc(func(f *fixture, t *tok) { t.c("aud", del) })},
		{name: "aud array with a number", want: ReasonInvalidClaim,
			token: desc(func(f *fixture, t *tok) { t.c("aud", []any{testAud, 1}) })},
		{name: "aud string accepted", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.c("aud", testAud) })},
		{name: "second configured audience accepted", want: ReasonOK, authnID: "8d8b6a2c-alice",
			settings: Settings{"audience": "other, pg"},
			token:    desc(func(f *fixture, t *tok) { t.c("aud", testAud) })},

		// --- time ---
		{name: "expired", want: ReasonExpired, detail: "expired 100 s ago (exp 2026-11-24T09:58:20Z)",
			token: desc(func(f *fixture, t *tok) { t.c("exp", unix(-100*time.Second)) })},
		{name: "expired long ago", want: ReasonExpired,
			token: desc(func(f *fixture, t *tok) { t.c("exp", 1) })},
		{name: "expired within leeway accepted", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.c("exp", unix(-10*time.Second)) })},
		{name: "expired with leeway 0", want: ReasonExpired, settings: Settings{"leeway": "0"},
			token: desc(func(f *fixture, t *tok) { t.c("exp", unix(-1*time.Second)) })},
		{name: "no exp", want: ReasonMissingExp,
			token: desc(func(f *fixture, t *tok) { t.c("exp", del) })},
		{name: "exp a string", want: ReasonInvalidClaim,
			token: desc(func(f *fixture, t *tok) { t.c("exp", "2099-01-01") })},
		{name: "exp overflowing", want: ReasonInvalidClaim,
			token: func(tb testing.TB, f *fixture) string {
				p := validPayloadJSON(tb)
				p = strings.Replace(p, fmt.Sprintf(`"exp":%d`, unix(5*time.Minute)), `"exp":1e999`, 1)
				return signRaw(tb, []byte(`{"alg":"RS256","kid":"rsa1"}`), []byte(p), "RS256", f.rsa)
			}},
		{name: "fractional exp accepted", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.c("exp", float64(unix(time.Minute))+0.5) })},
		{name: "nbf in future", want: ReasonNotYetValid,
			token: desc(func(f *fixture, t *tok) { t.c("nbf", unix(100*time.Second)) })},
		{name: "nbf within leeway accepted", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.c("nbf", unix(20*time.Second)) })},
		{name: "nbf not a number", want: ReasonInvalidClaim,
			token: desc(func(f *fixture, t *tok) { t.c("nbf", true) })},
		{name: "iat in future", want: ReasonIatInFuture,
			token: desc(func(f *fixture, t *tok) { t.c("iat", unix(time.Hour)) })},

		// --- client ---
		{name: "wrong azp", want: ReasonAzpNotAllowed, settings: Settings{"allowed_client_ids": "psql-prod, svc"},
			token: desc(nil)},
		{name: "no azp nor client_id", want: ReasonAzpNotAllowed, settings: Settings{"allowed_client_ids": "psql"},
			token: desc(func(f *fixture, t *tok) { t.c("azp", del) })},
		{name: "azp allowed", want: ReasonOK, authnID: "8d8b6a2c-alice", settings: Settings{"allowed_client_ids": "svc psql"},
			token: desc(nil)},
		{name: "client_id allowed when no azp", want: ReasonOK, authnID: "8d8b6a2c-alice", settings: Settings{"allowed_client_ids": "svc"},
			token: desc(func(f *fixture, t *tok) { t.c("azp", del).c("client_id", "svc") })},
		{name: "azp wins over client_id", want: ReasonAzpNotAllowed, settings: Settings{"allowed_client_ids": "svc"},
			token: desc(func(f *fixture, t *tok) { t.c("client_id", "svc") })},
		{name: "Okta cid allowed when no azp, client_id or appid", want: ReasonOK, authnID: "8d8b6a2c-alice", settings: Settings{"allowed_client_ids": "0oa1okta"},
			token: desc(func(f *fixture, t *tok) { t.c("azp", del).c("cid", "0oa1okta") })},
		{name: "Okta cid not allowed", want: ReasonAzpNotAllowed, settings: Settings{"allowed_client_ids": "svc"},
			token: desc(func(f *fixture, t *tok) { t.c("azp", del).c("cid", "0oa1okta") })},
		{name: "azp wins over cid", want: ReasonAzpNotAllowed, settings: Settings{"allowed_client_ids": "0oa1okta"},
			token: desc(func(f *fixture, t *tok) { t.c("cid", "0oa1okta") })},
		{name: "azp not a string", want: ReasonInvalidClaim, settings: Settings{"allowed_client_ids": "psql"},
			token: desc(func(f *fixture, t *tok) { t.c("azp", 5) })},

		// --- scopes ---
		{name: "missing scope", want: ReasonMissingScope, detail: `"admin"`, settings: Settings{"required_scopes": "db admin"},
			token: desc(nil)},
		{name: "no scope claim", want: ReasonMissingScope, settings: Settings{"required_scopes": "db"},
			token: desc(func(f *fixture, t *tok) { t.c("scope", del) })},
		{name: "scope present", want: ReasonOK, authnID: "8d8b6a2c-alice", settings: Settings{"required_scopes": "db,openid"},
			token: desc(nil)},
		{name: "scope via scp array", want: ReasonOK, authnID: "8d8b6a2c-alice", settings: Settings{"required_scopes": "db"},
			token: desc(func(f *fixture, t *tok) { t.c("scope", del).c("scp", []any{"user_impersonation", "db"}) })},
		{name: "scope via scp string", want: ReasonOK, authnID: "8d8b6a2c-alice", settings: Settings{"required_scopes": "db"},
			token: desc(func(f *fixture, t *tok) { t.c("scope", del).c("scp", "user_impersonation db") })},
		{name: "scope prefix is not the scope", want: ReasonMissingScope, settings: Settings{"required_scopes": "db"},
			token: desc(func(f *fixture, t *tok) { t.c("scope", "openid dbadmin") })},

		// --- algorithms that must work ---
		{name: "RS256 ok", want: ReasonOK, authnID: "8d8b6a2c-alice", token: desc(nil)},
		{name: "PS256 ok", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.signedWith("PS256", "ps1", f.ps) })},
		{name: "ES256 ok", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.signedWith("ES256", "ec1", f.ec) })},
		{name: "ES384 ok with key without alg", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.signedWith("ES384", "ec384", f.ec384) })},
		{name: "EdDSA ok", want: ReasonOK, authnID: "8d8b6a2c-alice",
			token: desc(func(f *fixture, t *tok) { t.signedWith("EdDSA", "ed1", f.ed) })},

		// --- identity ---
		{name: "authn_id from preferred_username", want: ReasonOK, authnID: "alice",
			settings: Settings{"authn_id_claim": "preferred_username"}, token: desc(nil)},
		{name: "missing authn_id claim", want: ReasonNoIdentity, detail: "preferred_username",
			settings: Settings{"authn_id_claim": "preferred_username"},
			token:    desc(func(f *fixture, t *tok) { t.c("preferred_username", del) })},
		{name: "missing sub", want: ReasonNoIdentity,
			token: desc(func(f *fixture, t *tok) { t.c("sub", del) })},
		{name: "empty authn_id", want: ReasonNoIdentity,
			token: desc(func(f *fixture, t *tok) { t.c("sub", "") })},
		{name: "authn_id an object", want: ReasonNoIdentity, settings: Settings{"authn_id_claim": "realm_access"},
			token: desc(nil)},
		{name: "authn_id with NUL", want: ReasonNoIdentity, detail: "NUL",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "admin\x00evil") })},
		{name: "authn_id a number", want: ReasonOK, authnID: "12345",
			settings: Settings{"authn_id_claim": "uid"}, token: desc(func(f *fixture, t *tok) { t.c("uid", 12345) })},
		{name: "authn_id path with escaped dot", want: ReasonOK, authnID: "bob@example.com",
			settings: Settings{"authn_id_claim": `https://example\.com/email`},
			token:    desc(func(f *fixture, t *tok) { t.c("https://example.com/email", "bob@example.com") })},
		{name: "authn_id nested path", want: ReasonOK, authnID: "E42",
			settings: Settings{"authn_id_claim": `ext.employee_id`},
			token:    desc(func(f *fixture, t *tok) { t.c("ext", map[string]any{"employee_id": "E42"}) })},

		// --- delegated mode ---
		{name: "delegated role allowed via group", want: ReasonOK, authnID: "8d8b6a2c-alice",
			settings: Settings{"role_claim": "groups", "role_map": "dba=postgres, analysts=reader"},
			req:      delegate("postgres"), token: desc(nil)},
		{name: "delegated role allowed via second mapping of a value", want: ReasonOK, authnID: "8d8b6a2c-alice",
			settings: Settings{"role_claim": "groups", "role_map": "dba=postgres, dba=admin"},
			req:      delegate("admin"), token: desc(nil)},
		{name: "delegated role denied", want: ReasonRoleNotAllowed, authnID: "8d8b6a2c-alice", detail: `"dba"`,
			settings: Settings{"role_claim": "groups", "role_map": "dba=postgres, analysts=reader"},
			req:      delegate("superuser"), token: desc(nil)},
		{name: "delegated role denied without groups claim", want: ReasonRoleNotAllowed, authnID: "8d8b6a2c-alice",
			settings: Settings{"role_claim": "groups", "role_map": "dba=postgres"},
			req:      delegate("postgres"), token: desc(func(f *fixture, t *tok) { t.c("groups", del) })},
		{name: "delegated role via realm_access.roles", want: ReasonOK, authnID: "8d8b6a2c-alice",
			settings: Settings{"role_claim": "realm_access.roles", "role_map": "reader=reader"},
			req:      delegate("reader"), token: desc(nil)},
		{name: "delegated role via escaped-dot group claim", want: ReasonOK, authnID: "8d8b6a2c-alice",
			settings: Settings{"role_claim": `https://example\.com/groups`, "role_map": "ops=postgres"},
			req:      delegate("postgres"),
			token:    desc(func(f *fixture, t *tok) { t.c("https://example.com/groups", []any{"ops"}) })},
		{name: "delegated role via client_role_map", want: ReasonOK, authnID: "service-account-etl",
			settings: Settings{"client_role_map": "etl=loader", "authn_id_claim": "preferred_username"},
			req:      delegate("loader"),
			token: desc(func(f *fixture, t *tok) {
				t.c("azp", "etl").c("preferred_username", "service-account-etl").c("groups", del)
			})},
		{name: "delegated client_role_map other client denied", want: ReasonRoleNotAllowed, authnID: "8d8b6a2c-alice",
			settings: Settings{"client_role_map": "etl=loader"},
			req:      delegate("loader"), token: desc(nil)},
		{name: "delegated role via identity", want: ReasonOK, authnID: "alice",
			settings: Settings{"role_from_identity": "on", "authn_id_claim": "preferred_username"},
			req:      delegate("alice"), token: desc(nil)},
		{name: "delegated identity differs from role", want: ReasonRoleNotAllowed, authnID: "alice",
			settings: Settings{"role_from_identity": "on", "authn_id_claim": "preferred_username"},
			req:      delegate("bob"), token: desc(nil)},
		{name: "delegated without any mapping", want: ReasonRoleNotAllowed, authnID: "8d8b6a2c-alice", detail: "none is set",
			req: delegate("postgres"), token: desc(nil)},

		// --- delegated mode: privileged roles (the shim reads pg_authid) ---
		{name: "role_map grants a superuser", want: ReasonPrivilegedRole, authnID: "8d8b6a2c-alice",
			detail:   `role "postgres" has SUPERUSER`,
			settings: Settings{"role_claim": "groups", "role_map": "dba=postgres"},
			req:      delegatePriv("postgres", "SUPERUSER"), token: desc(nil)},
		{name: "client_role_map grants a BYPASSRLS role", want: ReasonPrivilegedRole, authnID: "service-account-etl",
			detail:   `role "loader" has BYPASSRLS`,
			settings: Settings{"client_role_map": "etl=loader", "authn_id_claim": "preferred_username"},
			req:      delegatePriv("loader", "BYPASSRLS"),
			token:    desc(func(f *fixture, t *tok) { t.c("azp", "etl").c("preferred_username", "service-account-etl") })},
		{name: "role_from_identity grants a CREATEROLE role", want: ReasonPrivilegedRole, authnID: "alice",
			detail:   `role "alice" has CREATEROLE`,
			settings: Settings{"role_from_identity": "on", "authn_id_claim": "preferred_username"},
			req:      delegatePriv("alice", "CREATEROLE"), token: desc(nil)},
		{name: "role_map grants a member of a superuser role", want: ReasonPrivilegedRole, authnID: "8d8b6a2c-alice",
			detail:   `role "ops" is a member of "admins", which has SUPERUSER`,
			settings: Settings{"role_claim": "groups", "role_map": "dba=ops"},
			req:      delegatePriv("ops", "SUPERUSER:admins"), token: desc(nil)},
		{name: "several attributes are all named", want: ReasonPrivilegedRole, authnID: "8d8b6a2c-alice",
			detail:   `role "postgres" has SUPERUSER, BYPASSRLS and CREATEROLE and is a member of "a,b", which has BYPASSRLS`,
			settings: Settings{"role_claim": "groups", "role_map": "dba=postgres"},
			req:      delegatePriv("postgres", "SUPERUSER,BYPASSRLS,CREATEROLE,BYPASSRLS:a%2Cb"), token: desc(nil)},
		{name: "privileged role not granted is role_not_allowed", want: ReasonRoleNotAllowed, authnID: "8d8b6a2c-alice",
			settings: Settings{"role_claim": "groups", "role_map": "dba=reader"},
			req:      delegatePriv("postgres", "SUPERUSER"), token: desc(nil)},
		{name: "allow_privileged_roles lets role_map grant a superuser", want: ReasonOK, authnID: "8d8b6a2c-alice",
			settings: Settings{"role_claim": "groups", "role_map": "dba=postgres", "allow_privileged_roles": "on"},
			req:      delegatePriv("postgres", "SUPERUSER"), token: desc(nil)},
		{name: "plain role granted", want: ReasonOK, authnID: "8d8b6a2c-alice",
			settings: Settings{"role_claim": "groups", "role_map": "dba=reader"},
			req:      delegatePriv("reader", ""), token: desc(nil)},
		{name: "not delegated: privileges are the pg_ident map's business", want: ReasonOK, authnID: "8d8b6a2c-alice",
			req: func(r *Request) { r.Role = "postgres"; r.RolePrivileges, _ = ParseRolePrivileges("SUPERUSER") }, token: desc(nil)},
		{name: "not delegated: role is the server's business", want: ReasonOK, authnID: "8d8b6a2c-alice",
			req: func(r *Request) { r.Role = "anything" }, token: desc(nil)},

		// --- key source ---
		{name: "keys unavailable", want: ReasonKeysUnavailable,
			src:   func(m *memSource, f *fixture) { m.err = fmt.Errorf("fetching jwks: %w", keycache.ErrUnavailable) },
			token: desc(nil)},
		{name: "keys response too large", want: ReasonKeysUnavailable,
			src:   func(m *memSource, f *fixture) { m.err = fmt.Errorf("jwks: %w", keycache.ErrTooLarge) },
			token: desc(nil)},
		{name: "discovery issuer mismatch", want: ReasonDiscoveryIssuerMismatch,
			src:   func(m *memSource, f *fixture) { m.err = keycache.ErrDiscoveryMismatch },
			token: desc(nil)},
		{name: "stale keys still verify", want: ReasonOK, authnID: "8d8b6a2c-alice",
			src:   func(m *memSource, f *fixture) { m.stale, m.cause = true, "GET jwks: connection refused" },
			token: desc(nil)},
		{name: "cheap checks before keys", want: ReasonExpired,
			src:   func(m *memSource, f *fixture) { m.err = keycache.ErrUnavailable },
			token: desc(func(f *fixture, t *tok) { t.c("exp", 1) })},
	}
}

func delegate(role string) func(*Request) {
	return func(r *Request) { r.Delegate, r.Role = true, role }
}

// delegatePriv is delegate with the role's privileges as the shim passes
// them (ParseRolePrivileges format).
func delegatePriv(role, privileges string) func(*Request) {
	return func(r *Request) {
		p, err := ParseRolePrivileges(privileges)
		if err != nil {
			panic(err)
		}
		r.Delegate, r.Role, r.RolePrivileges = true, role, p
	}
}

// singleKeySet is a key set with only the rsa1 key.
func singleKeySet(f *fixture) jwk.Set {
	k, _ := f.set.LookupKeyID("rsa1")
	s := jwk.NewSet()
	_ = s.AddKey(k)
	return s
}

func TestCorpus(t *testing.T) {
	f := testFixture(t)
	cases := corpus()
	neg := 0
	for _, tc := range cases {
		if tc.want != ReasonOK {
			neg++
		}
	}
	if neg < 45 {
		t.Fatalf("the bad-token corpus has %d cases, want at least 45", neg)
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			src := &memSource{set: f.set}
			if tc.src != nil {
				tc.src(src, f)
			}
			v := newTestVerifier(t, src, tc.settings)
			token := tc.token(t, f)
			req := Request{Token: token, Issuer: testIssuer, Scope: "openid db"}
			if tc.req != nil {
				tc.req(&req)
			}
			res, err := v.Validate(context.Background(), req)
			assertNoTokenText(t, token, res, err)
			if err != nil {
				t.Fatalf("Validate: unexpected error %v", err)
			}
			checkVerdict(t, res, tc.want, tc.authnID, tc.detail)
		})
	}
}

// checkVerdict asserts the reason, the authorization, AuthnID and the
// shape of the verdict's log record.
func checkVerdict(tb testing.TB, res Result, want Reason, authnID, detail string) {
	tb.Helper()
	if res.Reason != want {
		tb.Fatalf("reason = %q, want %q; logs: %+v", res.Reason, want, res.Logs)
	}
	if res.Authorized != (want == ReasonOK) {
		tb.Fatalf("authorized = %v for reason %q", res.Authorized, want)
	}
	if res.AuthnID != authnID {
		tb.Errorf("authn_id = %q, want %q", res.AuthnID, authnID)
	}
	var verdict []LogRecord
	for _, l := range res.Logs {
		if l.Message == msgRejected || l.Message == msgAccepted {
			verdict = append(verdict, l)
		}
	}
	if len(verdict) != 1 {
		tb.Fatalf("want exactly one verdict record, got %+v", res.Logs)
	}
	l := verdict[0]
	prefix := "Reason: " + string(want) + ". "
	if !strings.HasPrefix(l.Detail, prefix) {
		tb.Errorf("detail %q does not start with %q", l.Detail, prefix)
	}
	if !strings.HasSuffix(l.Detail, ".") {
		tb.Errorf("detail %q is not a sentence", l.Detail)
	}
	if detail != "" && !strings.Contains(l.Detail, detail) {
		tb.Errorf("detail %q does not contain %q", l.Detail, detail)
	}
	if want == ReasonOK {
		if l.Level != LevelDebug || l.Message != msgAccepted {
			tb.Errorf("acceptance record = %+v, want DEBUG %q", l, msgAccepted)
		}
		if res.Err() != nil {
			tb.Errorf("Err() = %v for an accepted token", res.Err())
		}
	} else {
		if l.Level != LevelLog || l.Message != msgRejected {
			tb.Errorf("rejection record = %+v, want LOG %q", l, msgRejected)
		}
		if err := res.Err(); !errors.Is(err, want) {
			tb.Errorf("Err() = %v, not matching %q", err, want)
		}
	}
}

func TestUnknownKIDAsksForRefetch(t *testing.T) {
	f := testFixture(t)
	src := &memSource{set: f.set}
	v := newTestVerifier(t, src, nil)
	tk := f.rs256().signedWith("RS256", "rsa2", f.rotated).build(t)
	res, err := v.Validate(context.Background(), Request{Token: tk, Issuer: testIssuer})
	if err != nil || res.Reason != ReasonUnknownKID {
		t.Fatalf("got %q, %v; want unknown_kid", res.Reason, err)
	}
	if len(src.queries) != 2 || src.queries[0].MissingKID != "" || src.queries[1].MissingKID != "rsa2" {
		t.Fatalf("queries = %+v, want a plain query then one with MissingKID rsa2", src.queries)
	}
	// A known kid never causes a second query.
	src.queries = nil
	res, _ = v.Validate(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer})
	if !res.Authorized || len(src.queries) != 1 {
		t.Fatalf("authorized=%v queries=%d, want true and 1", res.Authorized, len(src.queries))
	}
}

func TestQueryCarriesIssuerURLs(t *testing.T) {
	f := testFixture(t)
	src := &memSource{set: f.set}
	v := newTestVerifier(t, src, Settings{"jwks_uri": "https://keys.example.com/jwks", "discovery_url": "https://internal.example.com/.well-known/openid-configuration"})
	if _, err := v.Validate(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer}); err != nil {
		t.Fatal(err)
	}
	want := keycache.Query{Issuer: testIssuer, JWKSURI: "https://keys.example.com/jwks", DiscoveryURL: "https://internal.example.com/.well-known/openid-configuration"}
	if src.queries[0] != want {
		t.Fatalf("query = %+v, want %+v", src.queries[0], want)
	}
}

func TestStaleKeysWarn(t *testing.T) {
	f := testFixture(t)
	src := &memSource{set: f.set, stale: true, cause: "GET https://idp.example.com/certs: 503"}
	v := newTestVerifier(t, src, nil)
	res, err := v.Validate(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer})
	if err != nil || !res.Authorized {
		t.Fatalf("got %+v, %v", res, err)
	}
	if len(res.Logs) != 2 || res.Logs[0].Level != LevelWarning ||
		!strings.Contains(res.Logs[0].Detail, testIssuer) || !strings.Contains(res.Logs[0].Detail, "503") {
		t.Fatalf("want a warning naming the issuer and cause first, got %+v", res.Logs)
	}
}

func TestLogAccepted(t *testing.T) {
	f := testFixture(t)
	v := newTestVerifier(t, &memSource{set: f.set}, Settings{"log_accepted": "on"})
	res, _ := v.Validate(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer})
	if len(res.Logs) != 1 || res.Logs[0].Level != LevelLog || res.Logs[0].Message != msgAccepted {
		t.Fatalf("logs = %+v, want one LOG acceptance", res.Logs)
	}
}

func TestRejectionDetailNamesClaims(t *testing.T) {
	f := testFixture(t)
	v := newTestVerifier(t, &memSource{set: f.set}, nil)
	tk := f.rs256().c("exp", testNow.Add(-312*time.Second).Unix()).build(t)
	res, _ := v.Validate(context.Background(), Request{Token: tk, Issuer: testIssuer})
	want := `Reason: expired. The token expired 312 s ago (exp 2026-11-24T09:54:48Z); the leeway is 30 s. ` +
		`Token claims (signature not verified): iss "https://idp.example.com/realms/test", sub "8d8b6a2c-alice", azp "psql", aud ["pg", "account"], exp 2026-11-24T09:54:48Z.`
	if res.Logs[0].Detail != want {
		t.Fatalf("detail:\n got %s\nwant %s", res.Logs[0].Detail, want)
	}
	if res.AuthnID != "" {
		t.Fatalf("authn_id %q from a token whose signature was not verified", res.AuthnID)
	}
}

func TestInternalErrors(t *testing.T) {
	f := testFixture(t)
	tk := f.rs256().build(t)
	cases := []struct {
		name   string
		err    error
		reason Reason
		config bool
	}{
		{"insecure cache", fmt.Errorf("dir mode 0777: %w", keycache.ErrInsecureCache), ReasonInsecureCache, false},
		{"insecure url", fmt.Errorf("http://idp: %w", keycache.ErrInsecureURL), ReasonConfig, true},
		{"unexpected source error", errors.New("boom"), ReasonInternal, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, &memSource{err: tc.err}, nil)
			res, err := v.Validate(context.Background(), Request{Token: tk, Issuer: testIssuer})
			assertNoTokenText(t, tk, res, err)
			if err == nil || res.Authorized || res.Reason != tc.reason {
				t.Fatalf("got %+v, %v; want error with reason %q", res, err, tc.reason)
			}
			if !errors.Is(err, tc.err) && !errors.Is(err, errors.Unwrap(tc.err)) {
				t.Errorf("error %v does not wrap the source error", err)
			}
			var ce *ConfigError
			if errors.As(err, &ce) != tc.config {
				t.Errorf("config error = %v, want %v", !tc.config, tc.config)
			}
		})
	}
	t.Run("empty issuer", func(t *testing.T) {
		v := newTestVerifier(t, &memSource{set: f.set}, nil)
		res, err := v.Validate(context.Background(), Request{Token: tk})
		if err == nil || res.Reason != ReasonConfig {
			t.Fatalf("got %+v, %v", res, err)
		}
	})
}

func TestValidateIsConcurrent(t *testing.T) {
	f := testFixture(t)
	v := newTestVerifier(t, &memSource{set: f.set}, nil)
	good := f.rs256().build(t)
	bad := f.rs256().c("aud", "x").build(t)
	done := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			tk, want := good, true
			if i%2 == 1 {
				tk, want = bad, false
			}
			for j := 0; j < 20; j++ {
				res, err := v.Validate(context.Background(), Request{Token: tk, Issuer: testIssuer})
				if err != nil || res.Authorized != want {
					done <- fmt.Errorf("got %v, %v", res.Authorized, err)
					return
				}
			}
			done <- nil
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestCraftedClaimIsRedacted(t *testing.T) {
	f := testFixture(t)
	v := newTestVerifier(t, &memSource{set: f.set}, nil)
	tk := f.rs256().c("exp", 1)
	hdrSeg := b64url(mustJSON(t, tk.hdr))
	tk.c("sub", hdrSeg) // a claim repeating the token's own header segment
	token := tk.build(t)
	if !strings.HasPrefix(token, hdrSeg+".") {
		t.Fatal("header segment changed")
	}
	res, err := v.Validate(context.Background(), Request{Token: token, Issuer: testIssuer})
	assertNoTokenText(t, token, res, err)
	if res.Reason != ReasonExpired || !strings.Contains(res.Logs[0].Detail, `sub "[redacted]"`) {
		t.Fatalf("got %q: %+v", res.Reason, res.Logs)
	}
}

func TestCorpusCounts(t *testing.T) {
	neg, pos := 0, 0
	for _, tc := range corpus() {
		if tc.want == ReasonOK {
			pos++
		} else {
			neg++
		}
	}
	t.Logf("corpus: %d rejections, %d acceptances", neg, pos)
}

func TestParseRolePrivileges(t *testing.T) {
	for _, tc := range []struct {
		name, in, err, out string
	}{
		{name: "empty attribute", in: "SUPERUSER,,BYPASSRLS", err: "expected ATTRIBUTE"},
		{name: "attribute with space", in: "SUPER USER", err: "expected ATTRIBUTE"},
		{name: "bad escape", in: "SUPERUSER:a%zz", err: "invalid URL escape"},
		{name: "none", in: "none", out: "none"},
		{name: "empty", in: " ", out: "none"},
		{name: "own and via", in: "superuser,BYPASSRLS:admins", out: "SUPERUSER,BYPASSRLS:admins"},
		{name: "escaped via", in: "CREATEROLE:a%2Cb%3Ac%25", out: "CREATEROLE:a%2Cb:c%25"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseRolePrivileges(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseRolePrivileges(%q) = %v, want error with %q", tc.in, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.String(); got != tc.out {
				t.Errorf("String() = %q, want %q", got, tc.out)
			}
			if back, err := ParseRolePrivileges(p.String()); err != nil || back.String() != tc.out {
				t.Errorf("round trip of %q: %v, %v", p.String(), back, err)
			}
		})
	}
}
