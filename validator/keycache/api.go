package keycache

import (
	"context"
	"errors"
	"time"
)

// Query names the keys wanted.
type Query struct {
	// Issuer is the issuer exactly as configured in pg_hba.conf.
	Issuer string
	// DiscoveryURL overrides where the discovery document is fetched
	// ("" = Issuer + "/.well-known/openid-configuration"). The document's
	// "issuer" member must still equal Issuer.
	DiscoveryURL string
	// JWKSURI, when set, is used directly and discovery is skipped.
	JWKSURI string
	// MissingKID, when set, says the token's kid is absent from the keys
	// last returned: the cache refetches the JWKS unless a refetch for this
	// issuer happened (in any backend) less than Config.KIDRefetchInterval ago.
	MissingKID string
	// CacheOnly serves from the cache alone: when a fetch would be needed
	// (nothing cached, older than RefreshInterval, an unknown kid due for a
	// refetch), Keys returns ErrNeedsNetwork at once, with no network
	// request, no lock wait and no sleep. The module validates this way on
	// the backend's own thread (signals blocked) and goes to a goroutine it
	// can wait for interruptibly only when the network is really needed.
	CacheOnly bool
}

// Keys is an issuer's key set as served by the cache.
type Keys struct {
	// Set holds the JWKS as fetched (all keys; the caller filters by use/alg).
	Set *KeySet
	// FetchedAt is when the JWKS was fetched from the identity provider.
	FetchedAt time.Time
	// Stale is true when the keys are last-known-good served because a
	// refresh failed; StaleCause says why (no secrets in it).
	Stale      bool
	StaleCause string
	// Fetched is true when this call fetched from the network (for tests
	// and logs: a warm cache must not): it fetched the discovery document
	// or the JWKS successfully itself, rather than reading what it or
	// another backend had stored.
	Fetched bool
	// Unstored says why a document this call fetched could not be written
	// to the cache ("" when everything is stored): the cache directory is
	// no longer writable by the server. The keys are served all the same,
	// but every process fetches for itself until the directory is fixed.
	Unstored string
	// JWKS is the key set as fetched, set only when Unstored is: nothing
	// in the cache holds it, so the fetch helper hands it to the backend.
	JWKS []byte
}

// Source is what the validator needs from a key cache.
type Source interface {
	Keys(ctx context.Context, q Query) (Keys, error)
}

// Errors a Source returns; match with errors.Is.
var (
	// ErrUnavailable: the identity provider could not be reached or
	// answered badly, and no usable cached keys exist (cold cache, or
	// older than the maximum staleness).
	ErrUnavailable = errors.New("identity provider unavailable")
	// ErrDiscoveryMismatch: the discovery document names another issuer.
	ErrDiscoveryMismatch = errors.New("discovery document issuer mismatch")
	// ErrInsecureCache: the cache directory or a file in it is not owned
	// by this OS user or is writable by others; it is never used.
	ErrInsecureCache = errors.New("insecure key cache")
	// ErrTooLarge: a response exceeded the size bound.
	ErrTooLarge = errors.New("response too large")
	// ErrInsecureURL: an http:// URL where https is required.
	ErrInsecureURL = errors.New("insecure url")
	// ErrNeedsNetwork: Query.CacheOnly was set and the answer needs a fetch.
	ErrNeedsNetwork = errors.New("keys need a network fetch")
	// ErrFutureFetch: the cached copy was fetched after the current time
	// (the clock was stepped back, or the cache was copied from another
	// host), so Config.MaxStale cannot be enforced; it is refetched, and
	// not served while the refetch fails. It matches ErrUnavailable.
	ErrFutureFetch error = &subError{msg: "identity provider unavailable: cached copy fetched in the future", is: ErrUnavailable}
)

// subError is a sentinel that also matches a wider one. Built without fmt,
// which would run at package initialisation in every backend.
type subError struct {
	msg string
	is  error
}

func (e *subError) Error() string { return e.msg }
func (e *subError) Unwrap() error { return e.is }

// Config configures a Cache. Zero durations mean the documented defaults.
type Config struct {
	// Dir is the cache directory shared by all backends of one server. It
	// must be owned by the current OS user and not writable by group or
	// others; it is created 0700 when missing.
	Dir string
	// RefreshInterval: cached discovery documents and JWKS younger than
	// this are used without any network request (default 5 min).
	RefreshInterval time.Duration
	// MaxStale: when a refresh fails, keys up to this old (since FetchedAt)
	// are still served, marked Stale (default 1 h).
	MaxStale time.Duration
	// KIDRefetchInterval: the minimum time between two unknown-kid refetches
	// of one issuer's JWKS, server-wide (default 60 s).
	KIDRefetchInterval time.Duration
	// RetryInterval: after a failed fetch, no backend retries that URL for
	// this long; they serve the last-known-good copy (or ErrUnavailable)
	// with the recorded cause instead, so an identity provider that hangs
	// costs one timeout per interval for the whole server, not one per
	// login (default 10 s).
	RetryInterval time.Duration
	// HTTPClient does every fetch; its Timeout bounds each request. Nil
	// means NewHTTPClient(10*time.Second, "", ""). The cache uses a copy
	// whose redirect check also applies the https rule below.
	HTTPClient *HTTPClient
	// MaxBodyBytes bounds every response body (default 1 MiB).
	MaxBodyBytes int64
	// RequireHTTPS refuses every http:// URL. When false, http:// is
	// allowed for loopback hosts only (127.0.0.0/8, ::1, localhost), for
	// tests and same-host identity providers; other hosts always need https.
	RequireHTTPS bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// NeedsNetworkError is what a CacheOnly query returns when the answer needs
// a fetch. It matches ErrNeedsNetwork and carries the query to fetch with
// (CacheOnly cleared): the module hands it to the oauth_jwt_fetch helper,
// then asks the cache again.
type NeedsNetworkError struct {
	Query Query
}

func (e *NeedsNetworkError) Error() string { return ErrNeedsNetwork.Error() }
func (e *NeedsNetworkError) Unwrap() error { return ErrNeedsNetwork }
