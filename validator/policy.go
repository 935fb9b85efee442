package validator

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// oidcRequestScopes are the OpenID Connect request scopes (OpenID Connect
// Core 1.0 sections 3.1.2.1, 5.4 and 11): they ask for claims or a refresh
// token, and providers do not echo them into access tokens (Okta, Entra ID
// and Auth0 leave them out; Keycloak echoes some). A pg_hba.conf scope
// option needs them for psql to get an ID token at all, so they are never
// required of the token.
var oidcRequestScopes = []string{"openid", "profile", "email", "address", "phone", "offline_access"}

// Where a required scope comes from, for the log.
const (
	scopeFromHBA     = "the pg_hba.conf scope option"
	scopeFromSetting = `"` + SettingPrefix + `required_scopes"`
)

// requiredScope is one scope the token must grant.
type requiredScope struct {
	name, from string
}

// requiredScopes returns the scopes the token must grant: those of the
// pg_hba.conf line (unless enforce_hba_scope is off), without the OpenID
// Connect request scopes, then those of required_scopes; each once.
func (r *run) requiredScopes() []requiredScope {
	var out []requiredScope
	if r.pol.EnforceHBAScope {
		for s := range strings.FieldsSeq(r.req.Scope) {
			if !slices.Contains(oidcRequestScopes, s) {
				out = addScope(out, s, scopeFromHBA)
			}
		}
	}
	for _, s := range r.pol.RequiredScopes {
		out = addScope(out, s, scopeFromSetting)
	}
	return out
}

// addScope appends scope name, required by from, unless it is in l.
func addScope(l []requiredScope, name, from string) []requiredScope {
	for _, s := range l {
		if s.name == name {
			return l
		}
	}
	return append(l, requiredScope{name, from})
}

// checkScopes applies the scope rule: every required scope is granted by
// the token (see grantsScope).
func (r *run) checkScopes() (Reason, string) {
	req := r.requiredScopes()
	if len(req) == 0 {
		why := `The pg_hba.conf scope option asks only for OpenID Connect scopes (or none), and "` + SettingPrefix + `required_scopes" is empty: scopes are not checked.`
		if !r.pol.EnforceHBAScope {
			why = `"` + SettingPrefix + `enforce_hba_scope" is off and "` + SettingPrefix + `required_scopes" is empty: scopes are not checked.`
		}
		r.skip(checkScope, why)
		return "", ""
	}
	r.begin(checkScope)
	have, ok := r.scopes()
	if !ok {
		return ReasonInvalidClaim, "The scope claim is not a string, or the scp claim is neither a string nor an array of strings."
	}
	var missing []string
	for _, s := range req {
		if !grantsScope(have, s.name, r.tok.claims.aud, r.pol.Audiences) {
			missing = append(missing, quote(s.name)+" (required by "+s.from+")")
		}
	}
	if len(missing) > 0 {
		return ReasonMissingScope, fmt.Sprintf("The token lacks the scope %s; it has %s.", strings.Join(missing, ", "), quoteList(have))
	}
	return "", ""
}

// grantsScope reports whether a token with the scopes have and the
// audiences auds grants the scope want. Scopes are whole words, never
// prefixes. One renaming is understood, Entra ID's: a scope requested as
// "<application ID URI>/<name>" is granted in scp as "<name>". So a
// URI-shaped want ("scheme://authority/.../name") is also granted by its
// last path segment alone, but only when the rest names the token's
// audience: a value of aud that is also a configured audience, either
// equal to it (v1 tokens carry the application ID URI as aud) or with
// "api://" before it (v2 tokens carry the application's client id, and
// "api://<client id>" is Entra's default application ID URI). A
// "<URI>/.default" scope (Entra's "every permission granted to the
// client") is granted by that audience alone: it never appears in tokens.
func grantsScope(have []string, want string, aud gjson.Result, configured []string) bool {
	if slices.Contains(have, want) {
		return true
	}
	prefix, name, ok := uriScope(want)
	if !ok {
		return false
	}
	auds, _ := stringOrArray(aud) // its type was checked before
	forUs := false
	for _, a := range auds {
		if slices.Contains(configured, a) && (prefix == a || prefix == "api://"+a) {
			forUs = true
			break
		}
	}
	if !forUs {
		return false
	}
	return name == ".default" || slices.Contains(have, name)
}

// uriScope splits a URI-shaped scope "scheme://authority/path/name" into
// the resource URI and the name; ok is false for other scopes.
func uriScope(s string) (prefix, name string, ok bool) {
	i := strings.Index(s, "://")
	if i <= 0 {
		return "", "", false
	}
	j := strings.LastIndexByte(s, '/')
	if j <= i+3 || j == len(s)-1 {
		return "", "", false // no authority, no path, or an empty name
	}
	return s[:j], s[j+1:], true
}

// identityProblem says why id cannot be an identity on a log line, or "":
// PostgreSQL writes authn_id unescaped into its own log lines ("connection
// authenticated: identity=...", pg_ident.conf mismatches), so it must not
// contain a character that ends a line or changes how the rest of the line
// is displayed. Refused are the C0 controls (with NUL, already refused as
// no_identity), DEL, the C1 controls (U+0080 to U+009F, NEL among them),
// the Unicode line and paragraph separators U+2028 and U+2029, and the
// bidirectional embeddings, overrides and isolates (U+202A to U+202E,
// U+2066 to U+2069), which reorder the display of everything after them on
// the line ("Trojan Source", CVE-2021-42574). Names in right-to-left
// scripts never need those: the bidirectional algorithm orders them
// without explicit controls. The marks U+200E, U+200F and U+061C are
// allowed: they affect only the neutral characters next to them.
func identityProblem(id string) string {
	for i, c := range id {
		switch {
		case c == utf8.RuneError && !strings.HasPrefix(id[i:], "\uFFFD"):
			return fmt.Sprintf("an invalid UTF-8 byte at byte %d", i+1)
		case c < 0x20 || c == 0x7f || c >= 0x80 && c <= 0x9f:
			return fmt.Sprintf("the control character U+%04X at byte %d", c, i+1)
		case c == 0x2028 || c == 0x2029:
			return fmt.Sprintf("the line separator U+%04X at byte %d", c, i+1)
		case c >= 0x202a && c <= 0x202e || c >= 0x2066 && c <= 0x2069:
			return fmt.Sprintf("the bidirectional control U+%04X at byte %d", c, i+1)
		}
	}
	return ""
}

// saneDate reports whether a NumericDate is a time the validator accepts:
// not negative and before MaxNumericDate (the year 10000). A token valid
// until 1e30 is a forgery or a broken provider, never a real token.
func saneDate(t float64) bool { return t >= 0 && t < MaxNumericDate }

// dateRangeProblem ends the sentence of an out-of-range NumericDate.
func dateRangeProblem(t float64) string {
	return fmt.Sprintf("is %s, outside the times accepted (from 0 to %d, before the year 10000).",
		formatDate(t), int64(MaxNumericDate)-1)
}

// lifetimeProblem applies max_token_lifetime: exp - iat, or exp - now when
// iat is absent (then with the leeway, since the clocks may differ), must
// not exceed max (seconds).
func lifetimeProblem(exp, iat float64, hasIat bool, now, leeway, max float64) (Reason, string) {
	setting := SettingPrefix + "max_token_lifetime"
	if hasIat {
		if life := exp - iat; life > max {
			return ReasonLifetimeTooLong, fmt.Sprintf("The token is valid for %s (exp %s minus iat %s); %q allows at most %s.",
				seconds(life), formatDate(exp), formatDate(iat), setting, seconds(max))
		}
		return "", ""
	}
	if life := exp - now; life > max+leeway {
		return ReasonLifetimeTooLong, fmt.Sprintf("The token has no iat and stays valid for %s more (exp %s); %q allows at most %s, plus the leeway of %s.",
			seconds(life), formatDate(exp), setting, seconds(max), seconds(leeway))
	}
	return "", ""
}
