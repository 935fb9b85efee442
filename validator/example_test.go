package validator_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/oauth-jwt/oauth_jwt/validator"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// staticKeys is a key source holding a fixed key set, as an air-gapped
// site or a test would use.
type staticKeys struct{ set *keycache.KeySet }

func (s staticKeys) Keys(context.Context, keycache.Query) (keycache.Keys, error) {
	return keycache.Keys{Set: s.set}, nil
}

const issuer = "https://idp.example.com/realms/db"

var now = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// issue returns an identity provider's key set and a function that signs
// access tokens with its key.
func issue() (*keycache.KeySet, func(exp time.Time) string) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	key, _ := jwk.Import(priv)
	_ = key.Set(jwk.KeyIDKey, "k1")
	pub, _ := key.PublicKey()
	_ = pub.Set(jwk.AlgorithmKey, jwa.ES256())
	_ = pub.Set(jwk.KeyUsageKey, "sig")
	jwks := jwk.NewSet()
	_ = jwks.AddKey(pub)
	js, _ := json.Marshal(jwks)
	set, _ := keycache.ParseKeySet(js)
	sign := func(exp time.Time) string {
		tok, err := jwt.NewBuilder().
			Issuer(issuer).
			Audience([]string{"pg"}).
			Subject("f3a1c2").
			Expiration(exp).
			IssuedAt(now.Add(-time.Minute)).
			Claim("azp", "psql").
			Claim("preferred_username", "alice").
			Claim("groups", []string{"dba"}).
			Build()
		if err != nil {
			panic(err)
		}
		signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), key))
		if err != nil {
			panic(err)
		}
		return string(signed)
	}
	return set, sign
}

// A delegated login (pg_hba.conf delegate_ident_mapping=1): the token's
// "groups" claim grants the role.
func Example() {
	set, sign := issue()
	v, err := validator.New(validator.Settings{
		"audience":       "pg",
		"authn_id_claim": "preferred_username",
		"role_claim":     "groups",
		"role_map":       "dba=postgres, analysts=reader",
	}, validator.WithKeySource(staticKeys{set}), validator.WithClock(func() time.Time { return now }))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, role := range []string{"postgres", "reader"} {
		res, err := v.Validate(context.Background(), validator.Request{
			Token:    sign(now.Add(5 * time.Minute)),
			Issuer:   issuer,
			Role:     role,
			Delegate: true,
		})
		fmt.Println(role, res.Authorized, res.AuthnID, res.Reason, err)
	}
	// Output:
	// postgres true alice ok <nil>
	// reader false alice role_not_allowed <nil>
}

// A rejected token carries a stable reason code; Result.Err turns it into
// an error that errors.Is matches against the reason.
func ExampleResult_Err() {
	set, sign := issue()
	v, _ := validator.New(validator.Settings{"audience": "pg"},
		validator.WithKeySource(staticKeys{set}), validator.WithClock(func() time.Time { return now }))
	res, _ := v.Validate(context.Background(), validator.Request{
		Token:  sign(now.Add(-10 * time.Minute)),
		Issuer: issuer,
	})
	err := res.Err()
	fmt.Println(res.Reason, errors.Is(err, validator.ReasonExpired))
	fmt.Println(res.Logs[0].Message)
	// Output:
	// expired true
	// bearer token rejected
}

// Configuration errors name the setting.
func ExampleNew_configError() {
	_, err := validator.New(validator.Settings{"audience": "pg", "allowed_algorithms": "RS256,HS256"},
		validator.WithKeySource(staticKeys{}))
	var ce *validator.ConfigError
	fmt.Println(errors.As(err, &ce), ce.Setting)
	// Output: true oauth_jwt.allowed_algorithms
}
