package validator

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// TestExplainMatchesValidate runs the whole corpus through Validate and
// Explain: the verdict, identity and log records must be identical, and
// the checks must tell the same story (one failed check with the verdict's
// reason, in the order of CheckNames).
func TestExplainMatchesValidate(t *testing.T) {
	f := testFixture(t)
	for _, tc := range corpus() {
		t.Run(tc.name, func(t *testing.T) {
			token := tc.token(t, f)
			req := Request{Token: token, Issuer: testIssuer, Scope: "openid db"}
			if tc.req != nil {
				tc.req(&req)
			}
			judge := func() *Verifier {
				src := &memSource{set: f.set}
				if tc.src != nil {
					tc.src(src, f)
				}
				return newTestVerifier(t, src, tc.settings)
			}
			want, wantErr := judge().Validate(context.Background(), req)
			exp, err := judge().Explain(context.Background(), req)
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("Explain error %v, Validate error %v", err, wantErr)
			}
			if !reflect.DeepEqual(exp.Result, want) {
				t.Fatalf("Explain result differs from Validate:\n got %+v\nwant %+v", exp.Result, want)
			}
			checkExplanation(t, exp, token)
		})
	}
}

// checkExplanation asserts the shape of an Explanation.
func checkExplanation(tb testing.TB, exp Explanation, token string) {
	tb.Helper()
	var names []string
	failed := 0
	for _, c := range exp.Checks {
		names = append(names, c.Name)
		switch c.Status {
		case CheckFailed:
			failed++
			if c.Reason != exp.Result.Reason {
				tb.Errorf("check %s failed with %q, verdict %q", c.Name, c.Reason, exp.Result.Reason)
			}
			if c.Detail == "" || c.Hint == "" || c.Hint != Hint(c.Reason) {
				tb.Errorf("failed check %s lacks detail or hint: %+v", c.Name, c)
			}
		case CheckPassed, CheckSkipped:
			if c.Reason != "" || c.Hint != "" {
				tb.Errorf("check %s (%s) has a reason or hint: %+v", c.Name, c.Status, c)
			}
		default:
			tb.Errorf("check %s has status %q", c.Name, c.Status)
		}
		for _, s := range []string{c.Got, c.Want, c.Detail} {
			for _, seg := range tokenSegments(token) {
				if len(seg) >= minScrubLen && strings.Contains(s, seg) {
					tb.Errorf("check %s contains token text", c.Name)
				}
			}
		}
	}
	if !slices.Equal(names, checkOrder) {
		tb.Errorf("checks %v, want %v", names, checkOrder)
	}
	if want := 0; exp.Result.Authorized && failed != want {
		tb.Errorf("accepted token with %d failed checks", failed)
	}
	if !exp.Result.Authorized && failed != 1 {
		tb.Errorf("rejected token with %d failed checks, want 1: %+v", failed, exp.Checks)
	}
	for _, part := range [][]byte{exp.Token.Header, exp.Token.Claims} {
		for _, seg := range tokenSegments(token) {
			if len(seg) >= minScrubLen && strings.Contains(string(part), seg) {
				tb.Errorf("decoded token contains token text")
			}
		}
	}
}

func TestExplainRecordsValues(t *testing.T) {
	f := testFixture(t)
	cases := []struct {
		name    string
		token   func(testing.TB, *fixture) string
		set     Settings
		req     func(*Request)
		check   string
		status  CheckStatus
		got     string // substrings
		want    string
		details string
	}{
		{name: "accepted", token: desc(nil), check: "identity", status: CheckPassed,
			got: `"8d8b6a2c-alice"`, want: `claim "sub"`},
		{name: "expired", token: desc(func(f *fixture, t *tok) { t.c("exp", testNow.Add(-312*1e9).Unix()) }),
			check: "exp", status: CheckFailed, got: "(312 s ago)", want: "leeway (30 s)", details: "expired 312 s ago"},
		{name: "iss trailing slash", token: desc(func(f *fixture, t *tok) { t.c("iss", testIssuer+"/") }),
			check: "iss", status: CheckFailed, got: `"` + testIssuer + `/"`, want: `"` + testIssuer + `" (pg_hba.conf issuer)`,
			details: "trailing slash"},
		{name: "azp", token: desc(nil), set: Settings{"allowed_client_ids": "etl, web"},
			check: "client", status: CheckFailed, got: `"psql" (azp)`, want: `"etl", "web"`},
		{name: "unknown kid", token: desc(func(f *fixture, t *tok) { t.h("kid", "nope") }),
			check: "kid", status: CheckFailed, got: `kid "nope"`, want: `"rsa1" (RSA, RS256, use sig)`},
		{name: "hs256", token: desc(func(f *fixture, t *tok) { t.signedWith("HS256", "rsa1", f.pubPEM) }),
			check: "alg", status: CheckFailed, got: `"HS256"`, details: "never accepted"},
		{name: "no client check", token: desc(nil), check: "client", status: CheckSkipped, details: "not checked"},
		{name: "pg_ident mode", token: desc(nil), check: "role", status: CheckSkipped, details: "pg_ident.conf"},
		{name: "role granted", token: desc(nil), set: Settings{"role_claim": "groups", "role_map": "dba=postgres"},
			req: delegate("postgres"), check: "role", status: CheckPassed, details: `Granted: claim "groups" has value "dba"`},
		{name: "not reached", token: desc(func(f *fixture, t *tok) { t.c("aud", "other") }),
			check: "signature", status: CheckSkipped, details: "Not reached"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, &memSource{set: f.set}, tc.set)
			req := Request{Token: tc.token(t, f), Issuer: testIssuer}
			if tc.req != nil {
				tc.req(&req)
			}
			exp, err := v.Explain(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			var c *Check
			for i := range exp.Checks {
				if exp.Checks[i].Name == tc.check {
					c = &exp.Checks[i]
				}
			}
			if c == nil {
				t.Fatalf("no check %s", tc.check)
			}
			if c.Status != tc.status || !strings.Contains(c.Got, tc.got) || !strings.Contains(c.Want, tc.want) ||
				!strings.Contains(c.Detail, tc.details) {
				t.Errorf("check = %+v\nwant status %s, got ~%q, want ~%q, detail ~%q", *c, tc.status, tc.got, tc.want, tc.details)
			}
		})
	}
}

func TestExplainInternalError(t *testing.T) {
	f := testFixture(t)
	v := newTestVerifier(t, &memSource{err: keycache.ErrInsecureCache}, nil)
	exp, err := v.Explain(context.Background(), Request{Token: f.rs256().build(t), Issuer: testIssuer})
	if !errors.Is(err, keycache.ErrInsecureCache) {
		t.Fatalf("err = %v", err)
	}
	c := exp.Failed()
	if c == nil || c.Name != "keys" || c.Reason != ReasonInsecureCache || c.Hint == "" {
		t.Fatalf("failed check = %+v", c)
	}
}

func TestExplainKeys(t *testing.T) {
	f := testFixture(t)
	byKID := map[string]KeyInfo{}
	for _, k := range DescribeKeys(toKeySet(f.set)) {
		byKID[k.KID] = k
	}
	for kid, want := range map[string]string{
		"rsa1": "RS256", "enc1": "", "weak1": "", "ec384": "ES384", "hmac1": "",
	} {
		k := byKID[kid]
		if got := strings.Join(k.Verifies, ","); got != want {
			t.Errorf("%s verifies %q, want %q", kid, got, want)
		}
		if want == "" && k.Problem == "" {
			t.Errorf("%s: no problem given", kid)
		}
	}
	if k := byKID["weak1"]; k.Bits != 1024 || !strings.Contains(k.Problem, "1024-bit") {
		t.Errorf("weak1 = %+v", k)
	}
	if k := byKID["enc1"]; !strings.Contains(k.Problem, "not a signing key") {
		t.Errorf("enc1 = %+v", k)
	}
}

func TestHintsCoverEveryReason(t *testing.T) {
	for _, r := range Reasons() {
		h := Hint(r)
		if h == "" || !strings.HasSuffix(h, ".") || strings.ToUpper(h[:1]) != h[:1] {
			t.Errorf("hint of %s is not a sentence: %q", r, h)
		}
	}
	if len(hints()) != len(reasonOrder) {
		t.Errorf("%d hints for %d reasons", len(hints()), len(reasonOrder))
	}
	if Hint(ReasonOK) != "" {
		t.Error("ReasonOK has a hint")
	}
}

func TestDecodeTokenNeverShowsSignature(t *testing.T) {
	f := testFixture(t)
	tok := f.rs256().build(t)
	d := DecodeToken(tok)
	if d.Segments != 3 || d.SignatureBytes != 256 || d.Header == nil || d.Claims == nil {
		t.Fatalf("decoded = %+v", d)
	}
	// A claim that repeats the header segment is redacted.
	hseg := strings.Split(tok, ".")[0]
	crafted := f.rs256().c("note", hseg).build(t)
	crafted = strings.Replace(crafted, strings.Split(crafted, ".")[0], hseg, 1) // same header
	d = DecodeToken(crafted)
	if strings.Contains(string(d.Claims), hseg) || !strings.Contains(string(d.Claims), redacted) {
		t.Errorf("claims not redacted: %s", d.Claims)
	}
	if DecodeToken("").Segments != 0 || DecodeToken("garbage").Header != nil {
		t.Error("garbage decoded")
	}
}

// FuzzExplain: for any token, Explain gives exactly Validate's result and
// a well-formed account of the checks, without token text.
func FuzzExplain(f *testing.F) {
	fx := testFixture(f)
	settings := Settings{"role_claim": "groups", "role_map": "dba=postgres", "client_role_map": "psql=reader",
		"authn_id_claim": "preferred_username", "allowed_client_ids": "psql", "required_scopes": "db"}
	v := newTestVerifier(f, &memSource{set: fx.set}, settings)
	ve := newTestVerifier(f, &memSource{set: fx.set}, settings)
	for _, tc := range corpus() {
		token := tc.token(f, fx)
		f.Add(token, false)
		f.Add(token, true)
	}
	f.Fuzz(func(t *testing.T, token string, delegated bool) {
		req := Request{Token: token, Issuer: testIssuer, Role: "postgres", Delegate: delegated}
		want, wantErr := v.Validate(context.Background(), req)
		exp, err := ve.Explain(context.Background(), req)
		if (err == nil) != (wantErr == nil) || !reflect.DeepEqual(exp.Result, want) {
			t.Fatalf("Explain %+v, %v; Validate %+v, %v", exp.Result, err, want, wantErr)
		}
		checkExplanation(t, exp, token)
	})
}
