package validator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
	"github.com/tidwall/gjson"
)

// CheckStatus is the outcome of one check recorded by Explain.
type CheckStatus string

// Outcomes of a check.
const (
	CheckPassed  CheckStatus = "pass"
	CheckFailed  CheckStatus = "fail"
	CheckSkipped CheckStatus = "skip" // does not apply, or not reached
)

// Names of the checks, in the order Validate runs them.
const (
	checkRequest    = "request"     // the pg_hba issuer, and an audience for it
	checkParse      = "parse"       // size, segments, base64url, JSON
	checkAlg        = "alg"         // allowed_algorithms
	checkCrit       = "crit"        // no crit or b64 header
	checkKeyHeaders = "key_headers" // no jku, x5u, jwk, x5c
	checkCty        = "cty"         // no nested JWT
	checkType       = "token_type"  // access token, not ID or other token
	checkIss        = "iss"
	checkAud        = "aud"
	checkExp        = "exp"
	checkNbf        = "nbf"
	checkIat        = "iat"
	checkLifetime   = "lifetime" // max_token_lifetime
	checkClient     = "client"   // azp / client_id / appid in allowed_client_ids
	checkScope      = "scope"    // pg_hba.conf scope and required_scopes
	checkKeys       = "keys"     // the issuer's key set
	checkKID        = "kid"      // a usable key for the token
	checkSignature  = "signature"
	checkIdentity   = "identity"   // authn_id_claim
	checkRole       = "role"       // delegated role mapping
	checkPrivileges = "privileges" // no privileged role unless allow_privileged_roles
	// checkIntrospection: RFC 7662 (last for introspection = always; for
	// an opaque token it runs right after parse and judges the answer).
	checkIntrospection = "introspection"
)

var checkOrder = []string{
	checkRequest, checkParse, checkAlg, checkCrit, checkKeyHeaders, checkCty,
	checkType, checkIss, checkAud, checkExp, checkNbf, checkIat, checkLifetime, checkClient,
	checkScope, checkKeys, checkKID, checkSignature, checkIdentity, checkRole,
	checkPrivileges,
	checkIntrospection,
}

// CheckNames returns the names of the checks Explain reports, in the order
// Validate runs them: request, parse, alg, crit, key_headers, cty,
// token_type, iss, aud, exp, nbf, iat, lifetime, client, scope, keys, kid,
// signature, identity, role, privileges, introspection.
func CheckNames() []string { return slices.Clone(checkOrder) }

// Check is one rule of Validate applied to one token, as Explain records it.
type Check struct {
	// Name is one of CheckNames.
	Name string
	// Status says whether it passed, failed or was skipped.
	Status CheckStatus
	// Got is what the token (or the key source) offered, and Want what
	// the configuration requires; either may be empty.
	Got, Want string
	// Reason is the reason code of a failed check.
	Reason Reason
	// Detail is, for a failed check, the explanation the server logs after
	// "Reason: <code>." (or the text of the internal error); for a skipped
	// check, why; for a passed one, an optional note.
	Detail string
	// Hint is, for a failed check, what to do about it (Hint(Reason)).
	Hint string
}

// DecodedToken is what a token says, decoded for display. It never holds
// the token, nor its signature.
type DecodedToken struct {
	// Segments is the number of dot-separated segments (3 for a JWS).
	Segments int
	// Header and Claims are the decoded JOSE header and payload when they
	// are JSON; nil otherwise.
	Header, Claims json.RawMessage
	// SignatureBytes is the length of the decoded signature; -1 when there
	// is none or it is not base64url.
	SignatureBytes int
}

// KeyInfo describes one key of an issuer's key set.
type KeyInfo struct {
	// KID, Type (kty), Alg and Use are the key's members ("" if absent).
	KID, Type, Alg, Use string
	// Bits is the RSA modulus or EC curve size, 0 when unknown.
	Bits int
	// Verifies lists the algorithms this key may verify under the rules of
	// Validate (use, key_ops, alg, type, curve, size).
	Verifies []string
	// Problem says, when Verifies is empty, why the key verifies nothing.
	Problem string
}

// Explanation is the account of one Explain call.
type Explanation struct {
	// Result is exactly what Validate returns for the same request.
	Result Result
	// Now is the time the lifetime checks used.
	Now time.Time
	// Token is the decoded token.
	Token DecodedToken
	// Policy is the policy applied to the request's issuer (nil when the
	// request names no issuer). Do not modify it.
	Policy *Policy
	// Checks are every check in the order of CheckNames: those that ran,
	// then those not reached (skipped).
	Checks []Check
	// Keys describes the issuer's key set as last served to the check, nil
	// when no key set was obtained.
	Keys []KeyInfo
	// KeysFetchedAt, KeysStale and KeysStaleCause are those of the key set.
	KeysFetchedAt  time.Time
	KeysStale      bool
	KeysStaleCause string
}

// Failed returns the check that failed, or nil.
func (e *Explanation) Failed() *Check {
	for i := range e.Checks {
		if e.Checks[i].Status == CheckFailed {
			return &e.Checks[i]
		}
	}
	return nil
}

// Explain judges req exactly as Validate does, through the same code, and
// also records every check it ran: for a troubleshooting tool. The error
// is the one Validate would return; the Explanation is filled in any case.
// Like the log records, the Explanation never contains the token or a
// segment of it.
func (v *Verifier) Explain(ctx context.Context, req Request) (Explanation, error) {
	tr := &tracer{}
	res, err := v.judge(ctx, req, tr)
	if err != nil && tr.open {
		tr.fail(res.Reason, err.Error()) // an error that made no verdict
	}
	tr.open = false
	e := Explanation{Result: res, Token: DecodeToken(req.Token), Checks: tr.checks, Now: tr.now, Policy: tr.pol}
	if k := tr.keys; k != nil {
		e.Keys = DescribeKeys(k.Set)
		e.KeysFetchedAt, e.KeysStale, e.KeysStaleCause = k.FetchedAt, k.Stale, k.StaleCause
	}
	seen := map[string]bool{}
	for _, c := range e.Checks {
		seen[c.Name] = true
	}
	for _, name := range checkOrder {
		if !seen[name] {
			e.Checks = append(e.Checks, Check{Name: name, Status: CheckSkipped,
				Detail: "Not reached: an earlier check decided."})
		}
	}
	segs := tokenSegments(req.Token)
	for i := range e.Checks {
		c := &e.Checks[i]
		c.Got, c.Want = scrubText(c.Got, segs), scrubText(c.Want, segs)
		c.Detail = scrubText(c.Detail, segs)
	}
	for i := range e.Keys {
		e.Keys[i].KID = scrubText(e.Keys[i].KID, segs)
		e.Keys[i].Problem = scrubText(e.Keys[i].Problem, segs)
	}
	return e, err
}

// tracer records the checks of one Explain call. The run methods below do
// nothing when run.tr is nil, which is what Validate uses.
type tracer struct {
	checks []Check
	open   bool // the last check is running
	// What the run knew at its end (set by judge).
	now  time.Time
	pol  *Policy
	keys *keycache.Keys
}

// begin starts check name, ending the previous one as passed.
func (r *run) begin(name string) {
	if r.tr == nil {
		return
	}
	r.closeCheck()
	r.tr.checks = append(r.tr.checks, Check{Name: name, Status: CheckPassed})
	r.tr.open = true
}

// skip records that check name does not apply, and why.
func (r *run) skip(name, why string) {
	if r.tr == nil {
		return
	}
	r.closeCheck()
	r.tr.checks = append(r.tr.checks, Check{Name: name, Status: CheckSkipped, Detail: why})
}

// note adds a sentence to the running check.
func (r *run) note(s string) {
	if r.tr == nil || !r.tr.open {
		return
	}
	c := &r.tr.checks[len(r.tr.checks)-1]
	if c.Detail != "" {
		c.Detail += " "
	}
	c.Detail += s
}

// closeCheck ends the running check as passed.
func (r *run) closeCheck() {
	if t := r.tr; t != nil && t.open {
		t.open = false
		r.describe(&t.checks[len(t.checks)-1])
	}
}

// failCheck ends the running check as failed with reason.
func (r *run) failCheck(reason Reason, detail string) {
	if r.tr == nil {
		return
	}
	r.tr.fail(reason, detail)
	r.describe(&r.tr.checks[len(r.tr.checks)-1])
}

// fail ends the running check (or a "verdict" pseudo-check) as failed.
func (t *tracer) fail(reason Reason, detail string) {
	if t == nil {
		return
	}
	if !t.open {
		t.checks = append(t.checks, Check{Name: "verdict"})
	}
	t.open = false
	c := &t.checks[len(t.checks)-1]
	c.Status, c.Reason, c.Detail, c.Hint = CheckFailed, reason, detail, Hint(reason)
}

// describe fills Got and Want of a finished check: what was compared, for
// display. It decides nothing.
func (r *run) describe(c *Check) {
	// Display only: a fault here must never reach the verdict.
	defer func() { _ = recover() }()
	var h *header
	var cl *claims
	if r.tok != nil {
		h, cl = &r.tok.hdr, &r.tok.claims
	}
	now := float64(r.now.UnixNano()) / 1e9
	leeway := "?"
	if r.pol != nil {
		leeway = seconds(r.pol.Leeway.Seconds())
	}
	switch c.Name {
	case checkRequest:
		c.Got = "pg_hba.conf issuer " + quoteOrNone(r.req.Issuer)
		if r.pol != nil {
			c.Want = "an issuer with a configured audience: " + quoteList(r.pol.Audiences)
		}
	case checkParse:
		c.Want = fmt.Sprintf("a signed JWT (compact JWS) of at most %d bytes", MaxTokenBytes)
		if r.tok != nil {
			c.Got = fmt.Sprintf("3 segments, JSON header and payload, %d-byte signature", len(r.tok.sig))
		}
	case checkAlg:
		c.Got = quote(h.alg)
		c.Want = "one of " + strings.Join(r.pol.AllowedAlgorithms, ", ")
	case checkCrit:
		c.Got = "absent"
		switch {
		case h.crit:
			c.Got = "\"crit\" present"
		case h.b64Bad:
			c.Got = "\"b64\" present"
		}
		c.Want = "absent"
	case checkKeyHeaders:
		c.Got = "none"
		if len(h.keyHeaders) > 0 {
			c.Got = strings.Join(h.keyHeaders, ", ")
		}
		c.Want = "none of jku, x5u, jwk, x5c"
	case checkCty:
		c.Got = "absent"
		if h.cty != "" {
			c.Got = quote(h.cty)
		}
		c.Want = "not \"JWT\""
	case checkType:
		var parts []string
		if h.hasTyp {
			parts = append(parts, "header typ "+quote(h.typ))
		} else {
			parts = append(parts, "no header typ")
		}
		if cl.typ.Exists() {
			parts = append(parts, "typ claim "+quoteClaim(cl.typ))
		}
		for _, x := range [...]struct {
			name string
			v    gjson.Result
		}{{"nonce", cl.nonce}, {"at_hash", cl.atHash}, {"c_hash", cl.cHash}} {
			if x.v.Exists() {
				parts = append(parts, x.name+" claim")
			}
		}
		c.Got = strings.Join(parts, ", ")
		c.Want = "an access token"
		if r.pol.AcceptIDTokens {
			c.Want += " or an ID token (accept_id_tokens on)"
		}
	case checkIss:
		c.Got = claimOrAbsent(cl.iss)
		c.Want = quote(r.req.Issuer) + " (pg_hba.conf issuer)"
	case checkAud:
		c.Got = claimOrAbsent(cl.aud)
		c.Want = "one of " + quoteList(r.pol.Audiences)
	case checkExp:
		c.Got = dateOrAbsent(cl.exp, now)
		c.Want = fmt.Sprintf("after %s minus the leeway (%s)", formatDate(now), leeway)
	case checkNbf:
		c.Got = dateOrAbsent(cl.nbf, now)
		c.Want = fmt.Sprintf("not after %s plus the leeway (%s)", formatDate(now), leeway)
	case checkIat:
		c.Got = dateOrAbsent(cl.iat, now)
		c.Want = fmt.Sprintf("not after %s plus the leeway (%s)", formatDate(now), leeway)
	case checkLifetime:
		if exp, ok := numericDate(cl.exp); ok {
			if iat, ok := numericDate(cl.iat); ok {
				c.Got = fmt.Sprintf("valid for %s (exp - iat)", seconds(exp-iat))
			} else {
				c.Got = fmt.Sprintf("valid for %s more (no iat: exp - now)", seconds(exp-now))
			}
		}
		c.Want = fmt.Sprintf("at most %s (%q)", seconds(r.pol.MaxTokenLifetime.Seconds()), SettingPrefix+"max_token_lifetime")
	case checkClient:
		if client, name, _ := r.client(); name != "" {
			c.Got = quote(client) + " (" + name + ")"
		} else {
			c.Got = "no azp, client_id or appid"
		}
		c.Want = "one of " + quoteList(r.pol.AllowedClientIDs)
	case checkScope:
		if have, ok := r.scopes(); ok {
			c.Got = quoteList(have)
		} else {
			c.Got = "scope " + claimOrAbsent(cl.scope) + ", scp " + claimOrAbsent(cl.scp)
		}
		var want []string
		for _, s := range r.requiredScopes() {
			want = append(want, quote(s.name)+" ("+strings.TrimPrefix(s.from, "the ")+")")
		}
		c.Want = "all of " + strings.Join(want, ", ")
	case checkKeys:
		c.Want = "the key set of issuer " + quote(r.req.Issuer) + " from " + keySourceText(r.pol, r.req.Issuer)
		if k := r.keys; k != nil && k.Set != nil {
			c.Got = fmt.Sprintf("%d keys", k.Set.Len())
			if !k.FetchedAt.IsZero() {
				c.Got += ", fetched at " + k.FetchedAt.UTC().Format(time.RFC3339)
			}
			if k.Stale {
				c.Got += " (stale: " + k.StaleCause + ")"
			}
		}
	case checkKID:
		c.Got = "no kid"
		if h.hasKID {
			c.Got = "kid " + quote(h.kid)
		}
		c.Got += " with alg " + quote(h.alg)
		c.Want = "a usable signing key"
		if r.keys != nil && r.keys.Set != nil {
			c.Want += " among " + keyList(r.keys.Set)
		}
	case checkSignature:
		c.Got = fmt.Sprintf("%s signature of %d bytes", h.alg, len(r.tok.sig))
		c.Want = "verifies with the issuer's key"
		if r.kid != "" {
			c.Want += " " + quote(r.kid)
		} else if h.hasKID {
			c.Want += " " + quote(h.kid)
		}
	case checkIdentity:
		c.Got = claimOrAbsent(gjson.GetBytes(r.tok.payload, r.pol.AuthnIDClaim))
		c.Want = fmt.Sprintf("claim %s (%q): a non-empty string or a number, without control or bidirectional formatting characters", quote(r.pol.AuthnIDClaim), SettingPrefix+"authn_id_claim")
	case checkIntrospection:
		c.Want = "the issuer's introspection endpoint reports the token active (the JSON boolean true)"
		if r.pol != nil {
			c.Got = "introspection " + quote(r.pol.Introspection)
			if r.pol.IntrospectionEndpoint != "" {
				c.Got += " at " + r.pol.IntrospectionEndpoint
			}
		}
	case checkRole:
		var parts []string
		if r.pol.RoleClaim != "" {
			parts = append(parts, "claim "+quote(r.pol.RoleClaim)+" "+claimOrAbsent(gjson.GetBytes(r.tok.payload, r.pol.RoleClaim)))
		}
		if client, name, _ := r.client(); name != "" {
			parts = append(parts, "client "+quote(client))
		}
		parts = append(parts, "identity "+quoteOrNone(r.authnID))
		c.Got = strings.Join(parts, ", ")
		c.Want = "role " + quote(r.req.Role) + " granted by role_map, client_role_map or role_from_identity"
	case checkPrivileges:
		c.Got = r.req.RolePrivileges.describe(r.req.Role)
		if r.req.RolePrivileges == nil || len(r.req.RolePrivileges.List) == 0 {
			c.Got = "role " + quote(r.req.Role) + " has none of SUPERUSER, BYPASSRLS, CREATEROLE"
		}
		c.Want = fmt.Sprintf("no SUPERUSER, BYPASSRLS or CREATEROLE, nor membership in a role with one (unless %q is on)", SettingPrefix+"allow_privileged_roles")
	}
}

func quoteOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return quote(s)
}

func claimOrAbsent(v gjson.Result) string {
	if !v.Exists() {
		return "absent"
	}
	return quoteClaim(v)
}

// dateOrAbsent renders a NumericDate claim with its distance from now.
func dateOrAbsent(v gjson.Result, now float64) string {
	if !v.Exists() {
		return "absent"
	}
	t, ok := numericDate(v)
	if !ok {
		return quoteClaim(v) + " (not a number)"
	}
	if !saneDate(t) {
		return formatDate(t) + " (out of range)"
	}
	switch d := t - now; {
	case d >= 0.5:
		return fmt.Sprintf("%s (%s from now)", formatDate(t), seconds(d))
	case d <= -0.5:
		return fmt.Sprintf("%s (%s ago)", formatDate(t), seconds(-d))
	}
	return formatDate(t) + " (now)"
}

// keySourceText says where the key source looks for an issuer's keys.
func keySourceText(p *Policy, issuer string) string {
	switch {
	case p.JWKSFile != "":
		return fmt.Sprintf("the file %s (%q; no network request is made)", p.JWKSFile, SettingPrefix+"jwks_file")
	case p.JWKSURI != "":
		return fmt.Sprintf("%s (%q)", p.JWKSURI, SettingPrefix+"jwks_uri")
	case p.DiscoveryURL != "":
		return fmt.Sprintf("the jwks_uri of the discovery document %s (%q)", p.DiscoveryURL, SettingPrefix+"discovery_url")
	}
	return "the jwks_uri of the discovery document " + strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// keyList names the keys of a set for a check: kid, type, alg, use.
func keyList(set *keycache.KeySet) string {
	infos := DescribeKeys(set)
	if len(infos) == 0 {
		return "no keys"
	}
	var parts []string
	for i, k := range infos {
		if i == 10 {
			parts = append(parts, fmt.Sprintf("... (%d keys)", len(infos)))
			break
		}
		attrs := []string{k.Type}
		if k.Alg != "" {
			attrs = append(attrs, k.Alg)
		}
		if k.Use != "" {
			attrs = append(attrs, "use "+k.Use)
		}
		parts = append(parts, quoteOrNone(k.KID)+" ("+strings.Join(attrs, ", ")+")")
	}
	return strings.Join(parts, ", ")
}

// DescribeKeys describes every key of set, applying to each the same key
// rules as Validate, for every supported algorithm.
func DescribeKeys(set *keycache.KeySet) []KeyInfo {
	if set == nil {
		return nil
	}
	var out []KeyInfo
	for _, k := range set.Keys {
		ki := KeyInfo{KID: k.KID, Type: k.Kty, Alg: k.Alg, Use: k.Use, Bits: k.Bits}
		var worst *keyProblem
		for _, alg := range supportedAlgorithms {
			_, p := usable(k, alg)
			if p == nil {
				ki.Verifies = append(ki.Verifies, alg)
				continue
			}
			// Prefer the problem with the key's own alg, else the worst.
			if worst == nil || p.rank > worst.rank || alg == ki.Alg {
				worst = p
			}
		}
		if len(ki.Verifies) == 0 && worst != nil {
			ki.Problem = worst.detail
		}
		out = append(out, ki)
	}
	return out
}

// DecodeToken decodes what a token shows, for display: the header and
// claims when they are JSON, and the size of the signature. It checks
// nothing (Validate and Explain do). Any text repeating a segment of the
// token is replaced by "[redacted]", as in log records.
func DecodeToken(tok string) DecodedToken {
	d := DecodedToken{SignatureBytes: -1}
	if tok == "" {
		return d
	}
	segs := strings.Split(tok, ".")
	d.Segments = len(segs)
	scrubSegs := tokenSegments(tok)
	decode := func(s string) json.RawMessage {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil || !json.Valid(b) {
			return nil
		}
		out := scrubText(string(b), scrubSegs)
		if !json.Valid([]byte(out)) {
			out = `"` + redacted + `"`
		}
		return json.RawMessage(out)
	}
	d.Header = decode(segs[0])
	if len(segs) > 1 {
		d.Claims = decode(segs[1])
	}
	if len(segs) == 3 && segs[2] != "" {
		if sig, err := b64.DecodeString(segs[2]); err == nil {
			d.SignatureBytes = len(sig)
		}
	}
	return d
}

// scrubText replaces every segment of the token in s by "[redacted]".
func scrubText(s string, segs []string) string {
	if len(segs) == 0 || len(segs[0]) < minScrubLen {
		return s
	}
	for _, seg := range segs {
		if strings.Contains(s, seg) {
			s = strings.ReplaceAll(s, seg, redacted)
		}
	}
	return s
}
