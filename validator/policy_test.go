package validator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// hbaScope sets the pg_hba.conf scope option of the request.
func hbaScope(scope string) func(*Request) {
	return func(r *Request) { r.Scope = scope }
}

// rawClaims signs the standard claims with key k set to the JSON text v
// (for numbers json.Marshal would not write).
func rawClaims(k, v string) func(testing.TB, *fixture) string {
	return func(tb testing.TB, f *fixture) string {
		tb.Helper()
		cl := stdClaims()
		cl[k] = "@@"
		p := strings.Replace(string(mustJSON(tb, cl)), `"@@"`, v, 1)
		return signRaw(tb, []byte(`{"alg":"RS256","kid":"rsa1","typ":"JWT"}`), []byte(p), "RS256", f.rsa)
	}
}

// policyCases are the rules of issue 11 items 1, 2 and 8: the pg_hba
// scope, the token lifetime and identities that must stay on one line.
func policyCases() []corpusCase {
	unix := func(d time.Duration) int64 { return testNow.Add(d).Unix() }
	const ok = "8d8b6a2c-alice"
	entraAud := "11111111-2222-3333-4444-555555555555"
	entra := func(f *fixture, t *tok) {
		t.c("aud", entraAud).c("scope", del).c("scp", "db.login User.Read")
	}
	return []corpusCase{
		// --- pg_hba scope ---
		{name: "hba scope absent from a token without scope", want: ReasonMissingScope,
			detail: `"pg:connect" (required by the pg_hba.conf scope option)`, req: hbaScope("openid pg:connect"),
			token: desc(func(f *fixture, t *tok) { t.c("scope", del) })},
		{name: "hba scope is a whole word, not a prefix", want: ReasonMissingScope, detail: `it has "openid", "pg:connect-admin"`,
			req: hbaScope("pg:connect"), token: desc(func(f *fixture, t *tok) { t.c("scope", "openid pg:connect-admin") })},
		{name: "hba scope not a suffix either", want: ReasonMissingScope,
			req: hbaScope("connect"), token: desc(func(f *fixture, t *tok) { t.c("scope", "pg:connect") })},
		{name: "hba scope matching is case-sensitive", want: ReasonMissingScope,
			req: hbaScope("pg:connect"), token: desc(func(f *fixture, t *tok) { t.c("scope", "PG:CONNECT") })},
		{name: "hba scope missing from scp array", want: ReasonMissingScope,
			req: hbaScope("pg:connect"), token: desc(func(f *fixture, t *tok) { t.c("scope", del).c("scp", []any{"pg:read", "pg"}) })},
		{name: "second hba scope missing", want: ReasonMissingScope, detail: `"pg:write"`,
			req: hbaScope("pg:connect pg:write"), token: desc(func(f *fixture, t *tok) { t.c("scope", "pg:connect") })},
		{name: "hba and required_scopes both named when missing", want: ReasonMissingScope,
			detail:   `"pg:connect" (required by the pg_hba.conf scope option), "audit" (required by "oauth_jwt.required_scopes")`,
			settings: Settings{"required_scopes": "audit"}, req: hbaScope("pg:connect"), token: desc(nil)},
		{name: "required_scopes apply with enforce_hba_scope off", want: ReasonMissingScope, detail: `"oauth_jwt.required_scopes"`,
			settings: Settings{"enforce_hba_scope": "off", "required_scopes": "audit"}, req: hbaScope("pg:connect"), token: desc(nil)},
		{name: "required_scopes do not exempt OIDC scopes", want: ReasonMissingScope,
			settings: Settings{"required_scopes": "email"}, req: hbaScope(""), token: desc(nil)},
		{name: "scope claim not a string", want: ReasonInvalidClaim,
			req: hbaScope("pg:connect"), token: desc(func(f *fixture, t *tok) { t.c("scope", []any{"pg:connect"}) })},
		{name: "hba scope granted in scope string", want: ReasonOK, authnID: ok,
			req: hbaScope("openid pg:connect"), token: desc(func(f *fixture, t *tok) { t.c("scope", "profile pg:connect-admin pg:connect") })},
		{name: "hba scope granted in scp array", want: ReasonOK, authnID: ok,
			req: hbaScope("pg:connect"), token: desc(func(f *fixture, t *tok) { t.c("scope", del).c("scp", []any{"pg:read", "pg:connect"}) })},
		{name: "hba scope granted in scp string", want: ReasonOK, authnID: ok,
			req: hbaScope("pg:connect"), token: desc(func(f *fixture, t *tok) { t.c("scope", del).c("scp", "pg:read pg:connect") })},
		{name: "OIDC request scopes are exempt", want: ReasonOK, authnID: ok,
			req:   hbaScope("openid profile email address phone offline_access"),
			token: desc(func(f *fixture, t *tok) { t.c("scope", del) })},
		{name: "openid alone is exempt", want: ReasonOK, authnID: ok,
			req: hbaScope("openid"), token: desc(func(f *fixture, t *tok) { t.c("scope", del) })},
		{name: "enforce_hba_scope off lets a token without scope in", want: ReasonOK, authnID: ok,
			settings: Settings{"enforce_hba_scope": "off"}, req: hbaScope("pg:connect"),
			token: desc(func(f *fixture, t *tok) { t.c("scope", del) })},

		// --- Entra ID: api://<app>/<name> granted as <name> ---
		{name: "Entra URI scope with aud of another app", want: ReasonMissingScope,
			settings: Settings{"audience": entraAud + " 99999999-0000-0000-0000-000000000000"},
			req:      hbaScope("openid api://99999999-0000-0000-0000-000000000000/db.login"), token: desc(entra)},
		{name: "Entra URI scope whose aud is not a configured audience", want: ReasonMissingScope,
			settings: Settings{"audience": entraAud},
			req:      hbaScope("api://other-app/db.login"),
			token:    desc(func(f *fixture, t *tok) { entra(f, t); t.c("aud", []any{entraAud, "other-app"}) })},
		{name: "Entra URI scope with another last segment", want: ReasonMissingScope,
			settings: Settings{"audience": entraAud}, req: hbaScope("api://" + entraAud + "/db.admin"), token: desc(entra)},
		{name: "Entra URI scope is not granted by a prefix of its name", want: ReasonMissingScope,
			settings: Settings{"audience": entraAud}, req: hbaScope("api://" + entraAud + "/db.login"),
			token: desc(func(f *fixture, t *tok) { entra(f, t); t.c("scp", "db.login-admin") })},
		{name: "URI with an empty authority is no renamed scope", want: ReasonMissingScope,
			settings: Settings{"audience": "api://"}, req: hbaScope("api:///db.login"),
			token: desc(func(f *fixture, t *tok) { entra(f, t); t.c("aud", "api://") })},
		{name: "Entra v2 URI scope granted as its last segment", want: ReasonOK, authnID: ok,
			settings: Settings{"audience": entraAud}, req: hbaScope("openid api://" + entraAud + "/db.login"), token: desc(entra)},
		{name: "Entra v1 URI scope granted when aud is the application ID URI", want: ReasonOK, authnID: ok,
			settings: Settings{"audience": "api://pg-prod"}, req: hbaScope("api://pg-prod/db.login"),
			token: desc(func(f *fixture, t *tok) { entra(f, t); t.c("aud", "api://pg-prod") })},
		{name: "Entra https application ID URI", want: ReasonOK, authnID: ok,
			settings: Settings{"audience": "https://contoso.example/pg"}, req: hbaScope("https://contoso.example/pg/db.login"),
			token: desc(func(f *fixture, t *tok) { entra(f, t); t.c("aud", "https://contoso.example/pg") })},
		{name: "Entra .default granted by the audience alone", want: ReasonOK, authnID: ok,
			settings: Settings{"audience": entraAud}, req: hbaScope("api://" + entraAud + "/.default"),
			token: desc(func(f *fixture, t *tok) { entra(f, t); t.c("scp", del) })},
		{name: "Entra URI scope in required_scopes", want: ReasonOK, authnID: ok,
			settings: Settings{"audience": entraAud, "required_scopes": "api://" + entraAud + "/db.login"},
			req:      hbaScope(""), token: desc(entra)},

		// --- lifetime ---
		{name: "exp 1e30", want: ReasonInvalidClaim, detail: "outside the times accepted", token: rawClaims("exp", "1e30")},
		{name: "exp in the year 10000", want: ReasonInvalidClaim, token: rawClaims("exp", "253402300800")},
		{name: "negative exp", want: ReasonInvalidClaim, detail: "The exp claim", token: rawClaims("exp", "-1")},
		{name: "negative iat", want: ReasonInvalidClaim, detail: "The iat claim", token: rawClaims("iat", "-5")},
		{name: "negative nbf", want: ReasonInvalidClaim, detail: "The nbf claim", token: rawClaims("nbf", "-1e3")},
		{name: "iat 1e30", want: ReasonInvalidClaim, token: rawClaims("iat", "1e30")},
		{name: "exp - iat of 1e9 s", want: ReasonLifetimeTooLong, detail: `"oauth_jwt.max_token_lifetime" allows at most 86400 s`,
			token: desc(func(f *fixture, t *tok) { t.c("exp", unix(1e9*time.Second)).c("iat", unix(-10*time.Second)) })},
		{name: "exp - iat one second over the default", want: ReasonLifetimeTooLong,
			token: desc(func(f *fixture, t *tok) { t.c("iat", unix(-time.Hour)).c("exp", unix(23*time.Hour+time.Second)) })},
		{name: "old iat and near exp still counts the whole lifetime", want: ReasonLifetimeTooLong,
			token: desc(func(f *fixture, t *tok) { t.c("iat", unix(-48*time.Hour)).c("exp", unix(time.Minute)) })},
		{name: "no iat and exp beyond max plus leeway", want: ReasonLifetimeTooLong, detail: "has no iat",
			token: desc(func(f *fixture, t *tok) { t.c("iat", del).c("exp", unix(24*time.Hour+31*time.Second)) })},
		{name: "lifetime over a smaller per-setting max", want: ReasonLifetimeTooLong, settings: Settings{"max_token_lifetime": "300"},
			token: desc(func(f *fixture, t *tok) { t.c("iat", unix(-10*time.Second)).c("exp", unix(291*time.Second)) })},
		{name: "exp - iat exactly the default", want: ReasonOK, authnID: ok,
			token: desc(func(f *fixture, t *tok) { t.c("iat", unix(-time.Hour)).c("exp", unix(23*time.Hour)) })},
		{name: "no iat and exp within max plus leeway", want: ReasonOK, authnID: ok,
			token: desc(func(f *fixture, t *tok) { t.c("iat", del).c("exp", unix(24*time.Hour+29*time.Second)) })},
		{name: "longer lifetime allowed by the setting", want: ReasonOK, authnID: ok, settings: Settings{"max_token_lifetime": "604800"},
			token: desc(func(f *fixture, t *tok) { t.c("iat", unix(-time.Hour)).c("exp", unix(6*24*time.Hour)) })},
		{name: "fractional times within range accepted", want: ReasonOK, authnID: ok,
			token: desc(func(f *fixture, t *tok) {
				t.c("iat", float64(unix(-time.Second))+0.25).c("nbf", 0.5).c("exp", float64(unix(time.Minute))+0.5)
			})},

		// --- identity on one log line ---
		{name: "identity with a newline", want: ReasonInvalidIdentity, detail: "U+000A",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "alice\nLOG:  connection authorized: user=postgres") })},
		{name: "identity with a carriage return", want: ReasonInvalidIdentity, detail: "U+000D",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "alice\r") })},
		{name: "identity with ESC", want: ReasonInvalidIdentity, detail: "U+001B",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "alice\x1b[31m") })},
		{name: "identity with a tab", want: ReasonInvalidIdentity,
			token: desc(func(f *fixture, t *tok) { t.c("sub", "al\tice") })},
		{name: "identity with DEL", want: ReasonInvalidIdentity, detail: "U+007F",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "alice\x7f") })},
		{name: "identity with C1 NEL", want: ReasonInvalidIdentity, detail: "U+0085",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "alice\u0085bob") })},
		{name: "identity with C1 CSI", want: ReasonInvalidIdentity, detail: "U+009B",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "alice\u009b") })},
		{name: "identity with line separator", want: ReasonInvalidIdentity, detail: "U+2028",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "alice\u2028bob") })},
		{name: "identity with right-to-left override", want: ReasonInvalidIdentity, detail: "U+202E",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "admin\u202egnp.exe") })},
		{name: "identity with first strong isolate", want: ReasonInvalidIdentity, detail: "U+2068",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "\u2068alice\u2069") })},
		{name: "identity claim other than sub checked too", want: ReasonInvalidIdentity,
			settings: Settings{"authn_id_claim": "preferred_username"},
			token:    desc(func(f *fixture, t *tok) { t.c("preferred_username", "alice\n") })},
		{name: "identity in a right-to-left script accepted", want: ReasonOK, authnID: "\u05d0\u05dc\u05d9\u05e1",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "\u05d0\u05dc\u05d9\u05e1") })},
		{name: "identity with a right-to-left mark accepted", want: ReasonOK, authnID: "\u05d0\u200f1",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "\u05d0\u200f1") })},
		{name: "identity with spaces and accents accepted", want: ReasonOK, authnID: "Zoë O'Brien",
			token: desc(func(f *fixture, t *tok) { t.c("sub", "Zoë O'Brien") })},
	}
}

func TestPolicyRules(t *testing.T) {
	f := testFixture(t)
	seen := map[string]bool{}
	for _, tc := range policyCases() {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, &memSource{set: f.set}, tc.settings)
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
			for _, l := range res.Logs {
				if s := l.Message + l.Detail; EscapeLogText(s) != s {
					t.Errorf("log record %+v holds a character that breaks log lines", l)
				}
			}
			// Explain reports the same verdict on the check that decided.
			exp, _ := v.Explain(context.Background(), req)
			if exp.Result.Reason != tc.want {
				t.Errorf("Explain: reason %q, want %q", exp.Result.Reason, tc.want)
			}
			if c := exp.Failed(); (c == nil) != (tc.want == ReasonOK) || c != nil && c.Reason != tc.want {
				t.Errorf("Explain: failed check %+v for reason %q", c, tc.want)
			}
		})
	}
}

// TestPolicySettings checks the bounds of the new settings, globally and
// in an issuer_config section.
func TestPolicySettings(t *testing.T) {
	for _, tc := range []struct {
		name     string
		settings Settings
		section  string
		bad      string // the setting a ConfigError must name; "" = accepted
		enforce  bool
		lifetime time.Duration
	}{
		{name: "lifetime below the minimum", settings: Settings{"max_token_lifetime": "59"}, bad: "oauth_jwt.max_token_lifetime"},
		{name: "lifetime above the maximum", settings: Settings{"max_token_lifetime": "31536001"}, bad: "oauth_jwt.max_token_lifetime"},
		{name: "lifetime not a number", settings: Settings{"max_token_lifetime": "1d"}, bad: "oauth_jwt.max_token_lifetime"},
		{name: "enforce_hba_scope not a boolean", settings: Settings{"enforce_hba_scope": "maybe"}, bad: "oauth_jwt.enforce_hba_scope"},
		{name: "bad lifetime in a section", section: "max_token_lifetime = 0", bad: "oauth_jwt.max_token_lifetime"},
		{name: "defaults", enforce: true, lifetime: 24 * time.Hour},
		{name: "bounds accepted", settings: Settings{"max_token_lifetime": "60"}, enforce: true, lifetime: time.Minute},
		{name: "maximum accepted", settings: Settings{"max_token_lifetime": "31536000", "enforce_hba_scope": "off"}, lifetime: 365 * 24 * time.Hour},
		{name: "section overrides", section: "enforce_hba_scope = off\nmax_token_lifetime = 3600", lifetime: time.Hour},
		{name: "section inherits the global values", settings: Settings{"max_token_lifetime": "7200", "enforce_hba_scope": "off"},
			section: "audience = pg", lifetime: 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := baseSettings()
			for k, v := range tc.settings {
				s[k] = v
			}
			if tc.section != "" {
				s["issuer_config"] = writeIssuerConfig(t, fmt.Sprintf("[%s]\n%s\n", testIssuer, tc.section))
			}
			c, err := ParseSettings(s)
			if tc.bad != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Setting != tc.bad {
					t.Fatalf("error %v, want a ConfigError naming %s", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := c.PolicyFor(testIssuer)
			if p.EnforceHBAScope != tc.enforce || p.MaxTokenLifetime != tc.lifetime {
				t.Errorf("enforce_hba_scope %v, max_token_lifetime %v; want %v, %v", p.EnforceHBAScope, p.MaxTokenLifetime, tc.enforce, tc.lifetime)
			}
		})
	}
}

func TestEscapeLogText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"fetch failed:\nLOG:  forged line", `fetch failed:\nLOG:  forged line`},
		{"a\rb\tc\x1b[31md\x00e\x7f", `a\rb\tc\x1b[31md\x00e\x7f`},
		{"nel\u0085 csi\u009b", `nel\u0085 csi\u009b`},
		{"ls\u2028ps\u2029", `ls\u2028ps\u2029`},
		{"rlo\u202e lri\u2066 pdi\u2069 rlm\u200f", `rlo\u202e lri\u2066 pdi\u2069 rlm\u200f`},
		{"bad \xff byte", `bad \xff byte`},
		{`already \n escaped`, `already \n escaped`},
		{"plain text: Zoë, אליס", "plain text: Zoë, אליס"},
	} {
		got := EscapeLogText(tc.in)
		if got != tc.want {
			t.Errorf("EscapeLogText(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if again := EscapeLogText(got); again != got {
			t.Errorf("escaping %q twice gives %q", got, again)
		}
	}
}
