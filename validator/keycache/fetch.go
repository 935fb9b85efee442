package keycache

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/tidwall/gjson"
)

// MaxKeys is the largest JWKS the cache accepts.
const MaxKeys = 100

// maxCause bounds the length of a cause recorded in the cache and returned
// in Keys.StaleCause.
const maxCause = 400

// isLoopback reports whether host (without port) is a loopback name or address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// checkURL refuses URLs that are not absolute http(s) URLs, and http URLs
// unless RequireHTTPS is off and the host is loopback.
func (c *Cache) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%w: %q is not an absolute URL", ErrInsecureURL, truncate(raw, 200))
	}
	return c.checkParsedURL(u)
}

func (c *Cache) checkParsedURL(u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if !c.requireHTTPS && isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%w: %s: https is required", ErrInsecureURL, redact(u))
	default:
		return fmt.Errorf("%w: %s: unsupported scheme %q", ErrInsecureURL, redact(u), u.Scheme)
	}
}

// redact shows a URL without user information, query or fragment, which may
// carry secrets.
func redact(u *url.URL) string {
	v := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return v.String()
}

func redactString(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return redact(u)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// parseDiscovery checks a discovery document fetched for issuer and returns
// its jwks_uri.
func (c *Cache) parseDiscovery(issuer, docURL string, body []byte) (string, error) {
	return c.discoveryJWKSURI(issuer, docURL, body, IsJSONObject(body))
}

// discoveryJWKSURI is parseDiscovery for a body already known to be valid
// JSON (a member of a cache entry, which decodeEntry validated as a whole):
// object says whether it is an object, and the body is not validated again.
func (c *Cache) discoveryJWKSURI(issuer, docURL string, body []byte, object bool) (string, error) {
	shown := redactString(docURL)
	// gjson rather than encoding/json: this runs on every login (the
	// cached copy is re-checked), and reflection-based decoding was the
	// largest part of a first validation in a fresh backend.
	if !object {
		return "", fmt.Errorf("discovery document at %s is not a JSON object", shown)
	}
	m := gjson.GetManyBytes(body, "issuer", "jwks_uri")
	if !m[0].Exists() {
		return "", fmt.Errorf("%w: the document at %s has no \"issuer\" member", ErrDiscoveryMismatch, shown)
	}
	if m[0].Type != gjson.String {
		return "", fmt.Errorf("%w: the document at %s has a non-string \"issuer\" member", ErrDiscoveryMismatch, shown)
	}
	if got := m[0].Str; got != issuer {
		hint := ""
		if strings.TrimSuffix(got, "/") == strings.TrimSuffix(issuer, "/") {
			hint = " (they differ only by a trailing slash)"
		}
		return "", fmt.Errorf("%w: the document at %s names issuer %q, not the configured %q%s",
			ErrDiscoveryMismatch, shown, truncate(got, 200), issuer, hint)
	}
	jwksURI := m[1].Str
	if m[1].Type != gjson.String || jwksURI == "" {
		return "", fmt.Errorf("discovery document at %s has no string \"jwks_uri\" member", shown)
	}
	if err := c.checkURL(jwksURI); err != nil {
		return "", fmt.Errorf("jwks_uri of the discovery document at %s: %w", shown, err)
	}
	return jwksURI, nil
}

// parseJWKS parses a JWK set, refusing an empty set, one of more than
// MaxKeys keys, or one in which no key can be decoded. object says whether
// body is a JSON object: IsJSONObject for a body as fetched, startsObject
// for one from a cache entry decodeEntry validated (see spec.parse).
//
// Lenient: an entry that cannot be used (a 1024-bit RSA key, an unknown
// curve) stays in the set and can verify nothing (the validator reports
// weak_key or key_type_mismatch for tokens naming it), instead of failing
// the whole set and with it every login for the issuer.
func parseJWKS(jwksURL string, body []byte, object bool) (*KeySet, error) {
	shown := redactString(jwksURL)
	set, err := parseKeySet(body, object)
	if err != nil {
		return nil, fmt.Errorf("JWKS at %s %s", shown, err)
	}
	switch {
	case set.Len() == 0:
		return nil, fmt.Errorf("JWKS at %s contains no keys", shown)
	case set.Usable() == 0:
		return nil, fmt.Errorf("JWKS at %s contains no usable keys", shown)
	}
	return set, nil
}

// errorKinds names the sentinel errors a process may have to rebuild from
// text: the cache file records the first three (fileKind), the fetch
// helper reports any. The order is that of KeySourceReason in the
// validator, so an error matching several is classed the same everywhere.
var errorKinds = []struct {
	kind     string
	sentinel error
}{
	{"insecure_cache", ErrInsecureCache},
	{"insecure_url", ErrInsecureURL},
	{"discovery_mismatch", ErrDiscoveryMismatch},
	{"too_large", ErrTooLarge},
	{"future_fetch", ErrFutureFetch}, // before "unavailable", which it matches
	{"unavailable", ErrUnavailable},
	{"timeout", context.DeadlineExceeded},
	{"canceled", context.Canceled},
}

// fileKind says whether a failure record in the cache file may carry kind.
// A switch, not a map: a map variable is built at package initialisation,
// in every backend.
func fileKind(kind string) bool {
	switch kind {
	case "discovery_mismatch", "too_large", "insecure_url":
		return true
	}
	return false
}

// kindOf is the first kind err matches among those only accepts (nil: any),
// "" for none.
func kindOf(err error, only func(string) bool) string {
	for _, k := range errorKinds {
		if (only == nil || only(k.kind)) && errors.Is(err, k.sentinel) {
			return k.kind
		}
	}
	return ""
}

// ofKind rebuilds an error from its text and kind: the same text, matching
// the same sentinel (none for an unknown kind).
func ofKind(text, kind string) error {
	for _, k := range errorKinds {
		if k.kind == kind {
			return &recorded{text: text, sentinel: k.sentinel}
		}
	}
	return errors.New(text)
}

// errorKind names the sentinel an error matches, for the cache file.
func errorKind(err error) string { return kindOf(err, fileKind) }

// recordedError rebuilds an error read from the cache file.
func recordedError(text, kind string) error {
	if text == "" {
		text = "no cached copy"
	}
	if !fileKind(kind) {
		kind = ""
	}
	return ofKind(text, kind)
}

// recorded is an error read back from the cache: its text as it was
// recorded, matching the sentinel it matched then.
type recorded struct {
	text     string
	sentinel error
}

func (r *recorded) Error() string { return r.text }
func (r *recorded) Unwrap() error { return r.sentinel }

// WireKind names the class of an error of Keys for a process that must
// rebuild it (the fetch helper reports it to the backend): one of
// "insecure_cache", "insecure_url", "discovery_mismatch", "too_large",
// "future_fetch", "unavailable", "timeout", "canceled", or "" for anything
// else.
func WireKind(err error) string { return kindOf(err, nil) }

// FromWireKind rebuilds an error that WireKind classified: its text as it
// was, matching the same sentinel.
func FromWireKind(text, kind string) error { return ofKind(text, kind) }
