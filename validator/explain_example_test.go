package validator_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/oauth-jwt/oauth_jwt/validator"
)

// Explain runs the checks of Validate and says what each one compared:
// what oauth_jwt_check prints.
func ExampleVerifier_Explain() {
	set, sign := issue()
	v, _ := validator.New(validator.Settings{"audience": "pg", "allowed_client_ids": "etl"},
		validator.WithKeySource(staticKeys{set}), validator.WithClock(func() time.Time { return now }))
	exp, _ := v.Explain(context.Background(), validator.Request{
		Token:  sign(now.Add(5 * time.Minute)),
		Issuer: issuer,
	})
	for _, c := range exp.Checks[7:] {
		fmt.Println(strings.TrimSpace(fmt.Sprintf("%-4s %-9s %s", c.Status, c.Name, c.Got)))
	}
	failed := exp.Failed()
	fmt.Println(failed.Reason, "-", failed.Want)
	fmt.Println(failed.Hint)
	// Output:
	// pass iss       "https://idp.example.com/realms/db"
	// pass aud       ["pg"]
	// pass exp       2026-11-24T10:05:00Z (300 s from now)
	// skip nbf
	// pass iat       2026-11-24T09:59:00Z (60 s ago)
	// pass lifetime  valid for 360 s (exp - iat)
	// fail client    "psql" (azp)
	// skip scope
	// skip keys
	// skip kid
	// skip signature
	// skip identity
	// skip role
	// skip privileges
	// skip introspection
	// azp_not_allowed - one of "etl"
	// Add the client id to "oauth_jwt.allowed_client_ids", or make the program use an allowed client (libpq's oauth_client_id).
}
