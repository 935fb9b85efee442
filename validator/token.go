package validator

import (
	"encoding/base64"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Bounds on what comes from outside.
const (
	// MaxTokenBytes is the largest token accepted (32 KiB).
	MaxTokenBytes = 32 << 10
	// MaxJSONDepth is the deepest nesting of objects and arrays accepted in
	// the header or the claims (the top-level object is depth 1).
	MaxJSONDepth = 16
)

var b64 = base64.RawURLEncoding.Strict()

// header holds the JOSE header members that matter.
type header struct {
	alg        string
	kid        string
	hasKID     bool
	typ        string
	hasTyp     bool
	crit       bool
	b64Bad     bool
	keyHeaders []string // jku, x5u, jwk, x5c present
	cty        string
}

// claims holds the registered claims found at the top level of the payload.
// A zero gjson.Result (Type Null, Exists false) means absent.
type claims struct {
	iss, sub, aud, azp, clientID, appID, cid gjson.Result
	exp, nbf, iat                            gjson.Result
	typ, nonce, atHash, cHash                gjson.Result
	scope, scp                               gjson.Result
}

// token is a parsed compact JWS. It refers to the request's token string
// without copying it.
type token struct {
	signingInput string // header "." payload, exactly as received
	sig          []byte
	hdr          header
	payload      []byte
	claims       claims
}

// parseError is a malformed or oversized token.
type parseError struct {
	reason Reason
	detail string
}

// parseToken splits and decodes a compact JWS and checks its JSON. The
// detail of an error never quotes the token.
func parseToken(s string) (*token, *parseError) {
	bad := func(format string, args ...any) (*token, *parseError) {
		return nil, &parseError{reason: ReasonMalformed, detail: fmt.Sprintf(format, args...)}
	}
	if len(s) == 0 {
		return bad("The token is empty.")
	}
	if len(s) > MaxTokenBytes {
		return nil, &parseError{reason: ReasonTokenTooLarge,
			detail: fmt.Sprintf("The token is %d bytes long; at most %d are accepted.", len(s), MaxTokenBytes)}
	}
	dots := strings.Count(s, ".")
	switch {
	case dots == 4:
		return bad("The token has 5 segments: it is an encrypted token (JWE), which is not supported; a signed JWT (JWS, 3 segments) is required.")
	case dots != 2:
		return bad("The token has %d dot-separated segments; a signed JWT has 3.", dots+1)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return bad("The token contains a character that is not base64url (byte %d of %d); padding, white space and standard base64 are not accepted.", i+1, len(s))
		}
	}
	d1 := strings.IndexByte(s, '.')
	d2 := d1 + 1 + strings.IndexByte(s[d1+1:], '.')
	hseg, pseg, sseg := s[:d1], s[d1+1:d2], s[d2+1:]

	t := &token{signingInput: s[:d2]}
	hjson, err := b64.DecodeString(hseg)
	if err != nil || len(hseg) == 0 {
		return bad("The header segment is not valid base64url.")
	}
	if msg := checkJSON(hjson); msg != "" {
		return bad("The header %s.", msg)
	}
	t.payload, err = b64.DecodeString(pseg)
	if err != nil || len(pseg) == 0 {
		return bad("The payload segment is not valid base64url.")
	}
	if msg := checkJSON(t.payload); msg != "" {
		return bad("The payload %s.", msg)
	}
	// An empty signature is "valid" here so that alg "none" is reported as
	// alg_not_allowed; it can never verify.
	t.sig, err = b64.DecodeString(sseg)
	if err != nil {
		return bad("The signature segment is not valid base64url.")
	}
	if pe := t.parseHeader(hjson); pe != nil {
		return nil, pe
	}
	t.collectClaims()
	return t, nil
}

// checkJSON checks that b is one UTF-8 JSON object, nested at most
// MaxJSONDepth deep, without duplicate member names at any level. It
// returns a fragment saying what is wrong, or "".
func checkJSON(b []byte) string {
	if !utf8.Valid(b) {
		return "is not valid UTF-8"
	}
	if d := jsonDepth(b); d > MaxJSONDepth {
		return fmt.Sprintf("is nested more than %d levels deep", MaxJSONDepth)
	}
	if !gjson.ValidBytes(b) {
		return "is not valid JSON"
	}
	r := gjson.ParseBytes(b)
	if !r.IsObject() {
		return "is not a JSON object"
	}
	if !uniqueMembers(r) {
		return "has duplicate member names"
	}
	return ""
}

// jsonDepth returns the deepest nesting of objects and arrays in b, without
// recursion. It stops counting once past MaxJSONDepth.
func jsonDepth(b []byte) int {
	depth, max := 0, 0
	inStr, esc := false, false
	for _, c := range b {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
			if depth > max {
				max = depth
				if max > MaxJSONDepth {
					return max
				}
			}
		case '}', ']':
			depth--
		}
	}
	return max
}

// uniqueMembers reports whether no object in v repeats a member name
// (compared after unescaping). Parsers disagree on duplicates (first or
// last wins), so a token with them is ambiguous and refused. The depth is
// already bounded by jsonDepth.
func uniqueMembers(v gjson.Result) bool {
	ok := true
	switch {
	case v.IsObject():
		var small [16]string
		seen := small[:0]
		var big map[string]struct{}
		v.ForEach(func(k, val gjson.Result) bool {
			name := k.String()
			if big != nil {
				if _, dup := big[name]; dup {
					ok = false
					return false
				}
				big[name] = struct{}{}
			} else {
				for _, s := range seen {
					if s == name {
						ok = false
						return false
					}
				}
				seen = append(seen, name)
				if len(seen) == cap(small) {
					big = make(map[string]struct{}, 2*len(seen))
					for _, s := range seen {
						big[s] = struct{}{}
					}
				}
			}
			if val.IsObject() || val.IsArray() {
				ok = uniqueMembers(val)
			}
			return ok
		})
	case v.IsArray():
		v.ForEach(func(_, val gjson.Result) bool {
			if val.IsObject() || val.IsArray() {
				ok = uniqueMembers(val)
			}
			return ok
		})
	}
	return ok
}

// parseHeader extracts the header members.
func (t *token) parseHeader(hjson []byte) *parseError {
	var pe *parseError
	h := &t.hdr
	hasAlg := false
	gjson.ParseBytes(hjson).ForEach(func(k, v gjson.Result) bool {
		wantString := func(dst *string) bool {
			if v.Type != gjson.String {
				pe = &parseError{reason: ReasonMalformed,
					detail: fmt.Sprintf("The header member %q is not a string.", k.String())}
				return false
			}
			*dst = v.Str
			return true
		}
		switch k.String() {
		case "alg":
			hasAlg = true
			return wantString(&h.alg)
		case "kid":
			h.hasKID = true
			return wantString(&h.kid)
		case "typ":
			h.hasTyp = true
			return wantString(&h.typ)
		case "cty":
			return wantString(&h.cty)
		case "crit":
			h.crit = true
		case "b64":
			if v.Type != gjson.True {
				h.b64Bad = true
			}
		case "jku", "x5u", "jwk", "x5c":
			h.keyHeaders = append(h.keyHeaders, k.String())
		}
		return true
	})
	if pe != nil {
		return pe
	}
	if h.hasKID && h.kid == "" {
		h.hasKID = false // an empty kid names no key; treat it as absent
	}
	if !hasAlg {
		return &parseError{reason: ReasonMalformed, detail: "The header has no \"alg\" member."}
	}
	return nil
}

// collectClaims records the registered claims at the top level.
func (t *token) collectClaims() {
	c := &t.claims
	gjson.ParseBytes(t.payload).ForEach(func(k, v gjson.Result) bool {
		switch k.String() {
		case "iss":
			c.iss = v
		case "sub":
			c.sub = v
		case "aud":
			c.aud = v
		case "azp":
			c.azp = v
		case "client_id":
			c.clientID = v
		case "appid":
			c.appID = v
		case "cid":
			c.cid = v
		case "exp":
			c.exp = v
		case "nbf":
			c.nbf = v
		case "iat":
			c.iat = v
		case "typ":
			c.typ = v
		case "nonce":
			c.nonce = v
		case "at_hash":
			c.atHash = v
		case "c_hash":
			c.cHash = v
		case "scope":
			c.scope = v
		case "scp":
			c.scp = v
		}
		return true
	})
}

// numericDate returns a NumericDate claim in seconds; ok is false when the
// claim is not a finite JSON number.
func numericDate(r gjson.Result) (float64, bool) {
	if r.Type != gjson.Number || math.IsInf(r.Num, 0) || math.IsNaN(r.Num) {
		return 0, false
	}
	return r.Num, true
}
