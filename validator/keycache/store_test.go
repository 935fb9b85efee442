package keycache

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestDecodeEntry checks the reflection-free reader against what
// encodeEntry (writeEntry's encoding) produces, and that every malformed entry is
// treated as corrupt (nil) rather than partly read.
func TestDecodeEntry(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 30, 0, 123456789, time.FixedZone("x", 3600))
	entries := map[string]*entryFile{
		"success": {Version: entryVersion, Kind: kindJWKS, Issuer: "https://idp.example.com/realms/a", URL: "https://idp.example.com/certs",
			FetchedAt: at, AttemptedAt: at, Body: json.RawMessage(`{"keys":[{"kty":"RSA","kid":"k\"1","n":"AQAB","e":"AQAB"}]}`)},
		"failure record without body": {Version: entryVersion, Kind: kindDiscovery, Issuer: "https://idp.example.com/é", URL: "https://idp.example.com/.well-known/openid-configuration",
			AttemptedAt: at, LastError: "GET https://idp.example.com: status 503 <Service Unavailable> & \"more\"", LastErrorKind: "unavailable"},
		"stale body with a failure": {Version: entryVersion, Kind: kindJWKS, Issuer: "i", URL: "u", FetchedAt: at.Add(-time.Hour), AttemptedAt: at,
			Body: json.RawMessage(`{"keys":[]}`), LastError: "timeout", LastErrorKind: "unavailable"},
	}
	for name, want := range entries {
		t.Run(name, func(t *testing.T) {
			data, err := encodeEntry(want)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeEntry(data)
			if got == nil {
				t.Fatalf("decodeEntry(%s) = nil", data)
			}
			if !got.FetchedAt.Equal(want.FetchedAt) || !got.AttemptedAt.Equal(want.AttemptedAt) {
				t.Errorf("times = %v, %v; want %v, %v", got.FetchedAt, got.AttemptedAt, want.FetchedAt, want.AttemptedAt)
			}
			got.FetchedAt, got.AttemptedAt = want.FetchedAt, want.AttemptedAt
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decodeEntry = %+v\nwant %+v", got, want)
			}
		})
	}

	corrupt := []string{
		``,
		`null`,
		`[]`,
		`{"version":1,"kind":"jwks"`,
		`{"version":"1","kind":"jwks","issuer":"i","url":"u"}`,
		`{"version":1.5,"kind":"jwks","issuer":"i","url":"u"}`,
		`{"kind":"jwks","issuer":"i","url":"u"}`,
		`{"version":1,"kind":7,"issuer":"i","url":"u"}`,
		`{"version":1,"kind":"jwks","issuer":null,"url":"u"}`,
		`{"version":1,"kind":"jwks","issuer":"i","url":"u","fetched_at":"yesterday"}`,
		`{"version":1,"kind":"jwks","issuer":"i","url":"u","fetched_at":""}`,
		`{"version":1,"kind":"jwks","issuer":"i","url":"u","attempted_at":12}`,
		`{"version":1,"kind":"jwks","issuer":"i","url":"u","body":null}`,
		`{"version":1,"kind":"jwks","issuer":"i","url":"u","last_error":false}`,
		`{"version":1,"kind":"jwks","issuer":"i","url":"u","body":{"keys":[}`,
	}
	for _, c := range corrupt {
		if got := decodeEntry([]byte(c)); got != nil {
			t.Errorf("decodeEntry(%q) = %+v; want nil (corrupt)", c, got)
		}
	}
}

// TestDecodeEntryOnePass pins what the single pass over an entry's members
// must keep from the lookups by name it replaced: the first of duplicate
// members counts, white space and unknown members are skipped, the body is
// the document's bytes exactly, and a body that is not an object is told
// apart without validating the document again.
func TestDecodeEntryOnePass(t *testing.T) {
	data := []byte(" \n{ \"extra\": {\"body\": 1}, \"version\" : 1, \"kind\":\"jwks\", \"kind\":\"discovery\", \"issuer\":\"i\"," +
		"\"url\":\"u\", \"fetched_at\":\"2026-11-24T10:30:00Z\", \"body\" :\t{\"keys\" : [ {\"kid\":\"a\"} ]} , \"body\":[]}\n")
	e := decodeEntry(data)
	if e == nil {
		t.Fatalf("decodeEntry(%q) = nil", data)
	}
	if e.Version != 1 || e.Kind != kindJWKS || e.Issuer != "i" || e.URL != "u" {
		t.Errorf("decodeEntry = %+v; want version 1, the first kind (jwks), issuer i, url u", e)
	}
	if want := `{"keys" : [ {"kid":"a"} ]}`; string(e.Body) != want {
		t.Errorf("body = %q; want %q", e.Body, want)
	}
	if !startsObject(e.Body) || startsObject([]byte(` [{}]`)) || startsObject([]byte(" \t")) || !startsObject([]byte("\r\n {}")) {
		t.Error("startsObject does not tell an object from other JSON values")
	}
	if IsJSONObject([]byte(`{"a":}`)) || IsJSONObject([]byte(`"{"`)) || !IsJSONObject([]byte(` {"a":[1]} `)) {
		t.Error("IsJSONObject does not tell one valid JSON object from other input")
	}
}
