package validator

import (
	"context"
	"testing"

	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// warmSource serves a fixed key set, like a warm cache.
type warmSource struct{ set *keycache.KeySet }

func (w warmSource) Keys(context.Context, keycache.Query) (keycache.Keys, error) {
	return keycache.Keys{Set: w.set, FetchedAt: testNow}, nil
}

func benchValidate(b *testing.B, t *tok) {
	b.Helper()
	f := testFixture(b)
	v := newTestVerifier(b, warmSource{toKeySet(f.set)}, Settings{"required_scopes": "db", "allowed_client_ids": "psql"})
	req := Request{Token: t.build(b), Issuer: testIssuer}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := v.Validate(ctx, req)
		if err != nil || !res.Authorized {
			b.Fatalf("not authorized: %v %v", res, err)
		}
	}
}

func BenchmarkValidateRS256(b *testing.B) {
	benchValidate(b, testFixture(b).rs256())
}

func BenchmarkValidateES256(b *testing.B) {
	f := testFixture(b)
	benchValidate(b, f.rs256().signedWith("ES256", "ec1", f.ec))
}

func BenchmarkValidateEdDSA(b *testing.B) {
	f := testFixture(b)
	benchValidate(b, f.rs256().signedWith("EdDSA", "ed1", f.ed))
}

// BenchmarkRejectExpired measures a rejection by the cheap checks (no
// signature verification).
func BenchmarkRejectExpired(b *testing.B) {
	f := testFixture(b)
	v := newTestVerifier(b, warmSource{toKeySet(f.set)}, nil)
	req := Request{Token: f.rs256().c("exp", 1).build(b), Issuer: testIssuer}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res, _ := v.Validate(ctx, req); res.Reason != ReasonExpired {
			b.Fatal(res.Reason)
		}
	}
}
