// Package fetchwire is what the module's backend and its fetch helper,
// oauth_jwt_fetch, say to each other over the helper's standard input and
// output: a request (the settings and the key query) and a result.
//
// Both are lists of name/value pairs, each string as a netstring
// ("<length>:<bytes>,"), after a one-line header. Values are carried byte
// for byte (a setting may be any string the server accepted), nothing is
// escaped, and the format needs no JSON encoder in the backend. The bearer
// token is part of an introspection request only (query.token), which
// travels on the helper's standard input and nowhere else.
package fetchwire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	requestHeader = "oauth_jwt fetch request 1\n"
	resultHeader  = "oauth_jwt fetch result 1\n"

	// MaxMessage bounds a message either side reads: a result may carry a
	// JWKS of up to 1 MiB (the key cache's bound) and its framing.
	MaxMessage = 2 << 20
)

// Names of the query members in a request; every other pair is a setting.
const (
	QueryIssuer       = "query.issuer"
	QueryDiscoveryURL = "query.discovery_url"
	QueryJWKSURI      = "query.jwks_uri"
	QueryMissingKID   = "query.missing_kid"
	QueryTimeoutMS    = "query.timeout_ms"
	// QueryKind says what the helper is asked to do: KindKeys (also when
	// absent) or KindIntrospect.
	QueryKind = "query.kind"
	// QueryToken is the token to introspect (KindIntrospect only). It MUST
	// NOT be written anywhere but the helper's standard input.
	QueryToken = "query.token"
)

// Values of QueryKind.
const (
	KindKeys       = "keys"
	KindIntrospect = "introspect"
)

// Result is what the helper reports.
type Result struct {
	// Error is why the keys could not be obtained ("" on success); Kind
	// names the error class (keycache.WireKind), so that the backend can
	// reconstruct it.
	Error string
	Kind  string
	// Answer is the introspection endpoint's answer (KindIntrospect, on
	// success): a JSON object, unjudged.
	Answer string
	// Unstored, on success, says why the keys could not be written to the
	// key cache (its directory is no longer writable); JWKS is then the
	// key set as fetched. The backend parses it and uses it for the login
	// that asked, never stores it. Both are absent from the message when
	// Unstored is "".
	Unstored string
	JWKS     string
}

// Encode appends the pairs to header as netstrings.
func encode(header string, pairs [][2]string) []byte {
	var b strings.Builder
	b.WriteString(header)
	for _, p := range pairs {
		for _, s := range p {
			b.WriteString(strconv.Itoa(len(s)))
			b.WriteByte(':')
			b.WriteString(s)
			b.WriteByte(',')
		}
	}
	return []byte(b.String())
}

func decode(header string, data []byte) ([][2]string, error) {
	if len(data) > MaxMessage {
		return nil, errors.New("message too large")
	}
	s, ok := strings.CutPrefix(string(data), header)
	if !ok {
		return nil, errors.New("not a message of this version")
	}
	var strs []string
	for s != "" {
		colon := strings.IndexByte(s, ':')
		if colon < 1 || colon > 7 {
			return nil, errors.New("malformed length")
		}
		n, err := strconv.Atoi(s[:colon])
		if err != nil || n < 0 || s[0] == '+' || s[0] == '-' || n > len(s)-colon-2 {
			return nil, errors.New("malformed length")
		}
		v := s[colon+1 : colon+1+n]
		if s[colon+1+n] != ',' {
			return nil, errors.New("missing terminator")
		}
		strs = append(strs, v)
		s = s[colon+2+n:]
	}
	if len(strs)%2 != 0 {
		return nil, errors.New("a name without a value")
	}
	pairs := make([][2]string, 0, len(strs)/2)
	for i := 0; i < len(strs); i += 2 {
		pairs = append(pairs, [2]string{strs[i], strs[i+1]})
	}
	return pairs, nil
}

// EncodeRequest encodes settings and query pairs (the Query* names).
func EncodeRequest(settings map[string]string, query map[string]string) []byte {
	pairs := make([][2]string, 0, len(settings)+len(query))
	for k, v := range query {
		pairs = append(pairs, [2]string{k, v})
	}
	for k, v := range settings {
		pairs = append(pairs, [2]string{k, v})
	}
	return encode(requestHeader, pairs)
}

// DecodeRequest splits a request into settings and query members.
func DecodeRequest(data []byte) (settings, query map[string]string, err error) {
	pairs, err := decode(requestHeader, data)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch request: %w", err)
	}
	settings, query = map[string]string{}, map[string]string{}
	for _, p := range pairs {
		dst := settings
		if strings.HasPrefix(p[0], "query.") {
			dst = query
		}
		if _, dup := dst[p[0]]; dup {
			return nil, nil, fmt.Errorf("fetch request: %q given twice", p[0])
		}
		dst[p[0]] = p[1]
	}
	return settings, query, nil
}

// EncodeResult encodes r.
func EncodeResult(r Result) []byte {
	pairs := [][2]string{{"error", r.Error}, {"kind", r.Kind}}
	if r.Answer != "" {
		pairs = append(pairs, [2]string{"answer", r.Answer})
	}
	if r.Unstored != "" {
		pairs = append(pairs, [2]string{"unstored", r.Unstored}, [2]string{"jwks", r.JWKS})
	}
	return encode(resultHeader, pairs)
}

// DecodeResult decodes what EncodeResult wrote.
func DecodeResult(data []byte) (Result, error) {
	pairs, err := decode(resultHeader, data)
	if err != nil {
		return Result{}, fmt.Errorf("fetch result: %w", err)
	}
	var r Result
	seen := map[string]bool{}
	for _, p := range pairs {
		if seen[p[0]] {
			return Result{}, fmt.Errorf("fetch result: %q given twice", p[0])
		}
		seen[p[0]] = true
		switch p[0] {
		case "error":
			r.Error = p[1]
		case "kind":
			r.Kind = p[1]
		case "answer":
			r.Answer = p[1]
		case "unstored":
			r.Unstored = p[1]
		case "jwks":
			r.JWKS = p[1]
		}
	}
	if !seen["error"] {
		return Result{}, errors.New("fetch result: no error member")
	}
	if (r.Unstored == "") != (r.JWKS == "") {
		return Result{}, errors.New("fetch result: unstored and jwks go together")
	}
	return r, nil
}
