package validator

import (
	"context"
	"testing"
)

// FuzzValidate feeds arbitrary tokens to a verifier with the test key set.
// Validate must never panic or fail internally, must never log the token,
// and must never authorize a token that is not byte-identical to one of the
// valid seeds.
func FuzzValidate(f *testing.F) {
	fx := testFixture(f)
	v := newTestVerifier(f, &memSource{set: fx.set}, nil)
	vd := newTestVerifier(f, &memSource{set: fx.set}, Settings{
		"role_claim": "groups", "role_map": "dba=postgres", "client_role_map": "psql=reader",
		"role_from_identity": "on", "authn_id_claim": "preferred_username",
	})
	valid := map[string]bool{}
	for _, tc := range corpus() {
		token := tc.token(f, fx)
		f.Add(token, false)
		f.Add(token, true)
		for _, ver := range []*Verifier{v, vd} {
			for _, del := range []bool{false, true} {
				res, _ := ver.Validate(context.Background(), Request{Token: token, Issuer: testIssuer, Role: "postgres", Delegate: del})
				if res.Authorized {
					valid[token] = true
				}
			}
		}
	}
	if len(valid) == 0 {
		f.Fatal("no valid seed")
	}
	f.Fuzz(func(t *testing.T, token string, delegated bool) {
		for _, ver := range []*Verifier{v, vd} {
			req := Request{Token: token, Issuer: testIssuer, Role: "postgres", Delegate: delegated}
			res, err := ver.Validate(context.Background(), req)
			if err != nil {
				t.Fatalf("internal error on fuzzed input: %v", err)
			}
			if res.Reason == "" || res.Reason == ReasonInternal {
				t.Fatalf("reason %q", res.Reason)
			}
			if res.Authorized && !valid[token] {
				t.Fatalf("authorized a token that is not a valid seed")
			}
			if res.Authorized != (res.Reason == ReasonOK) {
				t.Fatalf("authorized %v with reason %q", res.Authorized, res.Reason)
			}
			assertNoTokenText(t, token, res, err)
		}
	})
}
