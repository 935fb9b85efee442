package validator

import (
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
)

// maxRoleValues bounds the role claim values considered.
const maxRoleValues = 256

// checkType tells access tokens from ID tokens and other JWTs; the rules
// are in the package documentation ("Token type").
func (r *run) checkType() (Reason, string) {
	h := &r.tok.hdr
	c := &r.tok.claims
	accept := r.pol.AcceptIDTokens
	explicitAccess := false
	if h.hasTyp {
		switch t := strings.TrimPrefix(strings.ToLower(h.typ), "application/"); t {
		case "jwt":
		case "at+jwt":
			explicitAccess = true
		case "id_token", "id-token", "id+jwt", "idtoken":
			if !accept {
				return ReasonIDToken, fmt.Sprintf("The token header says typ %s: it is an ID token, not an access token. %s", quote(h.typ), hintIDToken)
			}
		default:
			return ReasonWrongTokenType, fmt.Sprintf("The token header says typ %s; an access token (typ \"at+jwt\" or \"JWT\", or none) is required.", quote(h.typ))
		}
	}
	if c.typ.Exists() {
		if c.typ.Type != gjson.String {
			return ReasonInvalidClaim, "The typ claim is not a string."
		}
		switch strings.ToLower(c.typ.Str) {
		case "bearer":
			explicitAccess = true
		case "id":
			if !accept {
				return ReasonIDToken, "The token's typ claim is \"ID\" (Keycloak): it is an ID token, not an access token. " + hintIDToken
			}
		default:
			return ReasonWrongTokenType, fmt.Sprintf("The token's typ claim is %s; an access token (\"Bearer\") is required.", quote(c.typ.Str))
		}
	}
	if !explicitAccess && !accept {
		for _, x := range [...]struct {
			name string
			v    gjson.Result
		}{{"nonce", c.nonce}, {"at_hash", c.atHash}, {"c_hash", c.cHash}} {
			if x.v.Exists() {
				return ReasonIDToken, fmt.Sprintf("The token has the claim %s, which only OpenID Connect ID tokens carry: it is an ID token, not an access token. %s", x.name, hintIDToken)
			}
		}
	}
	return "", ""
}

// stringOrArray returns a claim that is a string or an array of strings as
// a list; an absent claim is an empty list; ok is false for other types.
func stringOrArray(v gjson.Result) (vals []string, ok bool) {
	switch {
	case !v.Exists():
		return nil, true
	case v.Type == gjson.String:
		return []string{v.Str}, true
	case v.IsArray():
		ok = true
		v.ForEach(func(_, e gjson.Result) bool {
			if e.Type != gjson.String {
				ok = false
				return false
			}
			vals = append(vals, e.Str)
			return true
		})
		return vals, ok
	}
	return nil, false
}

// checkIdentity takes authn_id from the configured claim. It runs only
// after the signature verified, so the identity is trustworthy.
func (r *run) checkIdentity() (Reason, string) {
	r.begin(checkIdentity)
	path := r.pol.AuthnIDClaim
	v := gjson.GetBytes(r.tok.payload, path)
	var id string
	switch v.Type {
	case gjson.String:
		id = v.Str
	case gjson.Number:
		id = v.Raw
	default:
		if !v.Exists() {
			return ReasonNoIdentity, fmt.Sprintf("The token has no claim %s (%q).", quote(path), SettingPrefix+"authn_id_claim")
		}
		return ReasonNoIdentity, fmt.Sprintf("The claim %s (%q) is not a string or a number.", quote(path), SettingPrefix+"authn_id_claim")
	}
	switch {
	case id == "":
		return ReasonNoIdentity, fmt.Sprintf("The claim %s (%q) is empty.", quote(path), SettingPrefix+"authn_id_claim")
	case strings.IndexByte(id, 0) >= 0:
		return ReasonNoIdentity, fmt.Sprintf("The claim %s (%q) contains a NUL character.", quote(path), SettingPrefix+"authn_id_claim")
	case containsTokenText(id, r.req.Token):
		// PostgreSQL logs the identity ("connection authenticated"): an
		// identity made of the token (an introspection answer echoing it,
		// a claim repeating the header segment) would put it in the log.
		return ReasonNoIdentity, fmt.Sprintf("The claim %s (%q) holds the token itself, or a part of it; it cannot be an identity.", quote(path), SettingPrefix+"authn_id_claim")
	}
	if why := identityProblem(id); why != "" {
		return ReasonInvalidIdentity, fmt.Sprintf("The claim %s (%q) contains %s; the identity is written into the server's log lines and must not break or reorder them.",
			quote(path), SettingPrefix+"authn_id_claim", why)
	}
	r.authnID = id
	return "", ""
}

// checkRole decides, in delegated mode, whether the token may log in as
// the requested role. grant says what allowed it.
func (r *run) checkRole() (grant string, reason Reason, detail string) {
	p := r.pol
	role := r.req.Role
	var why []string

	if p.RoleClaim != "" {
		v := gjson.GetBytes(r.tok.payload, p.RoleClaim)
		vals := roleValues(v)
		for _, val := range vals {
			for _, g := range p.RoleMap[val] {
				if g == role {
					return fmt.Sprintf("claim %s has value %s, which %q maps to this role", quote(p.RoleClaim), quote(val), SettingPrefix+"role_map"), "", ""
				}
			}
		}
		switch {
		case !v.Exists():
			why = append(why, fmt.Sprintf("the token has no claim %s", quote(p.RoleClaim)))
		case len(vals) == 0:
			why = append(why, fmt.Sprintf("the claim %s holds no string", quote(p.RoleClaim)))
		default:
			if roles := mappedRoles(p.RoleMap, vals); len(roles) > 0 {
				why = append(why, fmt.Sprintf("the values %s of claim %s map to roles %s", quoteList(vals), quote(p.RoleClaim), quoteList(roles)))
			} else {
				why = append(why, fmt.Sprintf("the values %s of claim %s map to no role in %q", quoteList(vals), quote(p.RoleClaim), SettingPrefix+"role_map"))
			}
		}
	}
	if len(p.ClientRoleMap) > 0 {
		client, name, ok := r.client()
		switch {
		case !ok || name == "":
			why = append(why, "the token names no client (azp, client_id or appid)")
		default:
			for _, g := range p.ClientRoleMap[client] {
				if g == role {
					return fmt.Sprintf("client %s (%s) is mapped to this role by %q", quote(client), name, SettingPrefix+"client_role_map"), "", ""
				}
			}
			if roles := p.ClientRoleMap[client]; len(roles) > 0 {
				why = append(why, fmt.Sprintf("client %s maps to roles %s", quote(client), quoteList(roles)))
			} else {
				why = append(why, fmt.Sprintf("client %s is not in %q", quote(client), SettingPrefix+"client_role_map"))
			}
		}
	}
	if p.RoleFromIdentity {
		if r.authnID == role && role != "" {
			return fmt.Sprintf("the identity equals the role (%q)", SettingPrefix+"role_from_identity"), "", ""
		}
		why = append(why, "the identity differs from the role")
	}
	if len(why) == 0 {
		return "", ReasonRoleNotAllowed, fmt.Sprintf("The token does not grant role %s: with delegate_ident_mapping=1 a role is granted only by %q with %q, by %q or by %q, and none is set.",
			quote(role), SettingPrefix+"role_claim", SettingPrefix+"role_map", SettingPrefix+"client_role_map", SettingPrefix+"role_from_identity")
	}
	return "", ReasonRoleNotAllowed, fmt.Sprintf("The token of identity %s does not grant role %s: %s.", quote(r.authnID), quote(role), strings.Join(why, "; "))
}

// roleValues returns the strings of a role claim (a string or an array;
// non-string elements are ignored).
func roleValues(v gjson.Result) []string {
	switch {
	case v.Type == gjson.String:
		return []string{v.Str}
	case v.IsArray():
		var vals []string
		v.ForEach(func(_, e gjson.Result) bool {
			if e.Type == gjson.String {
				vals = append(vals, e.Str)
			}
			return len(vals) < maxRoleValues
		})
		return vals
	}
	return nil
}

func mappedRoles(m map[string][]string, vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, g := range m[v] {
			if !containsString(out, g) {
				out = append(out, g)
			}
		}
	}
	return out
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
