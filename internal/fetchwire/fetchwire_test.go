package fetchwire

import (
	"strings"
	"testing"
)

func TestRequestRoundTrip(t *testing.T) {
	settings := map[string]string{
		"audience":              "db",
		"http_proxy":            "http://user:p%40ss@proxy:3128",
		"ca_file":               "/etc/ssl/with,comma:and\nnewline",
		"empty":                 "",
		"server.data_directory": "/var/lib/postgresql/18/main",
		"latin1":                "caf\xe9", // not UTF-8: carried byte for byte
	}
	query := map[string]string{QueryIssuer: "https://idp/realms/r", QueryMissingKID: "k2", QueryTimeoutMS: "5000"}
	s, q, err := DecodeRequest(EncodeRequest(settings, query))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != len(settings) || len(q) != len(query) {
		t.Fatalf("got %d settings and %d query members, want %d and %d", len(s), len(q), len(settings), len(query))
	}
	for k, v := range settings {
		if s[k] != v {
			t.Errorf("setting %q = %q, want %q", k, s[k], v)
		}
	}
	for k, v := range query {
		if q[k] != v {
			t.Errorf("query %q = %q, want %q", k, q[k], v)
		}
	}
}

// An introspection request carries the kind and the token (on the
// helper's standard input only), beside the key query members.
func TestIntrospectRequestRoundTrip(t *testing.T) {
	tok := "opq_abc.def-ghi~+/="
	query := map[string]string{QueryKind: KindIntrospect, QueryIssuer: "https://idp/realms/r", QueryToken: tok, QueryTimeoutMS: "900"}
	_, q, err := DecodeRequest(EncodeRequest(map[string]string{"audience": "db"}, query))
	if err != nil {
		t.Fatal(err)
	}
	if q[QueryKind] != KindIntrospect || q[QueryToken] != tok {
		t.Errorf("query %v", q)
	}
	// A key request has no kind (the helper's default) and no token.
	_, q, _ = DecodeRequest(EncodeRequest(nil, map[string]string{QueryIssuer: "i"}))
	if _, ok := q[QueryKind]; ok {
		t.Errorf("a key request carries a kind")
	}
	if _, ok := q[QueryToken]; ok {
		t.Errorf("a key request carries a token")
	}
}

func TestResultRoundTrip(t *testing.T) {
	for _, r := range []Result{
		{},
		{Error: "x"},
		{Error: "GET https://idp/x: status 503, retry later", Kind: "unavailable"},
		{Unstored: "open /c/.x.tmp1: permission denied", JWKS: `{"keys":[{"kty":"EC","kid":"k1"}]}`},
		{Unstored: "u", JWKS: strings.Repeat("k", 1<<20)}, // a JWKS as large as the cache takes
		{Answer: `{"active":true,"sub":"a"}`},
		{Error: "introspection failed: POST https://idp/i: status 401 Unauthorized", Kind: ""},
	} {
		got, err := DecodeResult(EncodeResult(r))
		if err != nil || got != r {
			t.Errorf("round trip of %+v = %+v, %v", r, got, err)
		}
	}
}

func TestDecodeRefusesMalformed(t *testing.T) {
	good := string(EncodeResult(Result{Error: "x", Kind: "unavailable"}))
	body := strings.TrimPrefix(good, resultHeader)
	for name, msg := range map[string]string{
		"empty":                 "",
		"other version":         "oauth_jwt fetch result 2\n" + body,
		"request as result":     string(EncodeRequest(nil, map[string]string{QueryIssuer: "i"})),
		"truncated":             good[:len(good)-1],
		"length too long":       resultHeader + "99:error,",
		"negative length":       resultHeader + "-1:,",
		"plus sign":             resultHeader + "+5:error,0:,",
		"no terminator":         resultHeader + "5:errorX0:,",
		"odd count":             resultHeader + "5:error,",
		"no error member":       resultHeader + "7:fetched,1:1,",
		"duplicate member":      resultHeader + "5:error,0:,5:error,1:x,",
		"huge length":           resultHeader + "99999999:x,",
		"non-digit length":      resultHeader + "1a:x,",
		"missing length":        resultHeader + ":x,",
		"trailing garbage":      good + "x",
		"header without body":   strings.TrimSuffix(resultHeader, "\n"),
		"unstored without jwks": resultHeader + "5:error,0:,8:unstored,1:u,",
		"jwks without unstored": resultHeader + "5:error,0:,4:jwks,2:{},",
	} {
		if r, err := DecodeResult([]byte(msg)); err == nil {
			t.Errorf("%s: accepted as %+v", name, r)
		}
	}
	if _, _, err := DecodeRequest([]byte(requestHeader + "11:query.issuer,1:a,11:query.issuer,1:b,")); err == nil {
		t.Error("a request naming the issuer twice was accepted")
	}
}

func FuzzDecodeResult(f *testing.F) {
	f.Add(EncodeResult(Result{Error: "e", Kind: "k"}))
	f.Add([]byte(resultHeader + "3:abc,"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeResult(data)
		if err != nil {
			return
		}
		again, err := DecodeResult(EncodeResult(r))
		if err != nil || again != r {
			t.Fatalf("re-encoding %+v gave %+v, %v", r, again, err)
		}
	})
}
