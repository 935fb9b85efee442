package keycache

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The cache of positive answers: served before its expiry and while
// younger than the caller's max age, never after; an entry others can
// write is an error that names neither the entry nor the hash.
func TestIntrospectionCache(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig(t, clock)
	c := mustNew(t, cfg)
	key := IntrospectionKey("https://idp", "tok-123456789")
	if other := IntrospectionKey("https://idp2", "tok-123456789"); other == key {
		t.Fatal("the key does not depend on the issuer")
	}
	if _, ok, err := c.LookupIntrospection(key, time.Minute); ok || err != nil {
		t.Fatalf("empty cache: ok %v err %v", ok, err)
	}
	if err := c.StoreIntrospection(key, []byte(`[1]`), clock.Now().Add(time.Minute)); err == nil {
		t.Error("stored an answer that is not a JSON object")
	}
	answer := []byte(`{"active":true,"sub":"a"}`)
	if err := c.StoreIntrospection(key, answer, clock.Now().Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(cfg.Dir, introPrefix+key+entrySuffix))
	if err != nil || strings.Contains(string(data), "tok-123456789") {
		t.Fatalf("entry %q, %v: must exist and not hold the token", data, err)
	}
	cases := []struct {
		name    string
		advance time.Duration
		maxAge  time.Duration
		ok      bool
	}{
		{name: "fresh", maxAge: time.Minute, ok: true},
		{name: "older than a lowered TTL", advance: 10 * time.Second, maxAge: 5 * time.Second},
		{name: "within both", maxAge: time.Minute, ok: true},
		{name: "at its expiry", advance: 20 * time.Second, maxAge: time.Hour},
		{name: "after its expiry", advance: time.Second, maxAge: time.Hour},
	}
	for _, tc := range cases {
		clock.Advance(tc.advance)
		got, ok, err := c.LookupIntrospection(key, tc.maxAge)
		if err != nil || ok != tc.ok || (ok && string(got) != string(answer)) {
			t.Errorf("%s: %q %v %v, want ok %v", tc.name, got, ok, err, tc.ok)
		}
	}
	// An entry others can write.
	if err := c.StoreIntrospection(key, answer, clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.Dir, introPrefix+key+entrySuffix)
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	_, ok, err := c.LookupIntrospection(key, time.Hour)
	if ok || !errors.Is(err, ErrInsecureCache) || strings.Contains(err.Error(), key[:8]) {
		t.Errorf("insecure entry: ok %v err %v (must match ErrInsecureCache and not name the hash)", ok, err)
	}
}

// The request: HTTP Basic with form-urlencoded id and secret (RFC 6749
// section 2.3.1), the token in the form body, and every failure an
// ErrIntrospection without the token or the secret.
func TestIntrospectRequest(t *testing.T) {
	const id, secret, tok = "pg client", "s3c:r+t/=", "opaque-token-value-1234"
	var mode string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
		if r.Header.Get("Authorization") != wantAuth || r.Method != http.MethodPost {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if err := r.ParseForm(); err != nil || r.PostForm.Get("token") != tok {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch mode {
		case "500":
			w.WriteHeader(http.StatusInternalServerError)
		case "huge":
			w.Write([]byte(`{"active":true,"x":"` + strings.Repeat("a", MaxIntrospectionBytes) + `"}`))
		case "html":
			w.Write([]byte("<html>" + tok + "</html>"))
		default:
			w.Write([]byte(`{"active":true}`))
		}
	}))
	defer srv.Close()
	cfg := testConfig(t, newFakeClock())
	c := mustNew(t, cfg)
	q := IntrospectQuery{Issuer: srv.URL, Endpoint: srv.URL + "/introspect", ClientID: id, ClientSecret: secret, Token: tok}
	cases := []struct{ mode, err string }{
		{"500", "status 500"},
		{"huge", "larger than"},
		{"html", "not a JSON object"},
		{"wrong secret", "status 401"},
		{"", ""},
	}
	for _, tc := range cases {
		mode = tc.mode
		qq := q
		if tc.mode == "wrong secret" {
			qq.ClientSecret = "nope"
		}
		got, err := c.Introspect(context.Background(), qq)
		switch {
		case tc.err == "" && (err != nil || string(got) != `{"active":true}`):
			t.Errorf("ok: %q %v", got, err)
		case tc.err != "" && (err == nil || !errors.Is(err, ErrIntrospection) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v, want ErrIntrospection with %q", tc.mode, err, tc.err)
		}
		if err != nil && (strings.Contains(err.Error(), tok) || strings.Contains(err.Error(), secret)) {
			t.Errorf("%s: the error quotes the token or the secret: %v", tc.mode, err)
		}
	}
	// http to a non-loopback host is refused before any request.
	qq := q
	qq.Endpoint = "http://idp.example.com/introspect"
	cfg.RequireHTTPS = true
	c2 := mustNew(t, cfg)
	if _, err := c2.Introspect(context.Background(), qq); !errors.Is(err, ErrInsecureURL) {
		t.Errorf("plain http endpoint: %v, want ErrInsecureURL", err)
	}
}
