package keycache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultRefreshInterval    = 5 * time.Minute
	DefaultMaxStale           = time.Hour
	DefaultKIDRefetchInterval = 60 * time.Second
	DefaultRetryInterval      = 10 * time.Second
	DefaultMaxBodyBytes       = 1 << 20
	DefaultHTTPTimeout        = 10 * time.Second
)

// Polling of a busy lock: start short (a fetch on loopback takes a few
// milliseconds), back off to lockPollMax.
const (
	lockPollMin = 2 * time.Millisecond
	lockPollMax = 50 * time.Millisecond
)

// Cache is a Source that keeps discovery documents and JWK sets in files
// shared by all processes that use the same directory. It is safe for
// concurrent use.
type Cache struct {
	dir          string
	refresh      time.Duration
	maxStale     time.Duration
	kidInterval  time.Duration
	retry        time.Duration
	maxBody      int64
	requireHTTPS bool
	now          func() time.Time
	client       *HTTPClient

	mu      sync.Mutex
	running map[string]chan struct{} // in-process single flight, by entry name
}

var _ Source = (*Cache)(nil)

// New returns a Cache configured by cfg, creating cfg.Dir (mode 0700) when
// it is missing. It fails with ErrInsecureCache when the directory is not
// safe to use.
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("keycache: no cache directory configured")
	}
	if !filepath.IsAbs(cfg.Dir) {
		return nil, fmt.Errorf("keycache: cache directory %q is not an absolute path", cfg.Dir)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"RefreshInterval", cfg.RefreshInterval},
		{"MaxStale", cfg.MaxStale},
		{"KIDRefetchInterval", cfg.KIDRefetchInterval},
		{"RetryInterval", cfg.RetryInterval},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("keycache: %s is negative", d.name)
		}
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, errors.New("keycache: MaxBodyBytes is negative")
	}
	c := &Cache{
		dir:          filepath.Clean(cfg.Dir),
		refresh:      orDefault(cfg.RefreshInterval, DefaultRefreshInterval),
		maxStale:     orDefault(cfg.MaxStale, DefaultMaxStale),
		kidInterval:  orDefault(cfg.KIDRefetchInterval, DefaultKIDRefetchInterval),
		retry:        orDefault(cfg.RetryInterval, DefaultRetryInterval),
		maxBody:      cfg.MaxBodyBytes,
		requireHTTPS: cfg.RequireHTTPS,
		now:          cfg.Now,
		running:      make(map[string]chan struct{}),
	}
	if c.maxBody == 0 {
		c.maxBody = DefaultMaxBodyBytes
	}
	if c.now == nil {
		c.now = time.Now
	}
	base := cfg.HTTPClient
	if base == nil {
		var err error
		if base, err = NewHTTPClient(DefaultHTTPTimeout, "", ""); err != nil {
			return nil, err
		}
	}
	if err := c.setClient(base); err != nil {
		return nil, err
	}
	if err := c.prepareDir(); err != nil {
		return nil, err
	}
	if err := c.checkParents(); err != nil {
		return nil, err
	}
	return c, nil
}

func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// spec says which document get wants and how to check it.
type spec struct {
	kind       string // kindDiscovery or kindJWKS
	issuer     string
	url        string
	missingKID string // jwks only
	cacheOnly  bool   // Query.CacheOnly
	// parse checks and parses a document; object says whether body is a
	// JSON object, and a caller that knows body to be valid JSON (from a
	// validated cache entry) does not pay for validating it again.
	parse func(body []byte, object bool) (any, error)
}

// result is a document as get serves it.
type result struct {
	value     any // jwks_uri string or *KeySet
	fetchedAt time.Time
	fetched   bool // this call fetched it
	stale     bool
	cause     string
	// unstored is why a document this call fetched could not be written
	// to the cache (nil when it was).
	unstored error
	body     []byte // the document as fetched
}

// loaded is an entry as read from disk.
type loaded struct {
	file  *entryFile // nil: absent or corrupt
	value any        // parsed body; nil when the entry has none
}

// Keys returns the key set of q.Issuer, from the cache when fresh enough,
// otherwise from the identity provider (discovery first unless q.JWKSURI is
// set). See the package documentation for the rules. Errors match
// ErrUnavailable, ErrDiscoveryMismatch, ErrInsecureCache, ErrTooLarge and
// ErrInsecureURL with errors.Is; any other error is an internal failure.
func (c *Cache) Keys(ctx context.Context, q Query) (keys Keys, err error) {
	defer func() {
		if r := recover(); r != nil {
			keys, err = Keys{}, fmt.Errorf("keycache: internal error: %v", r)
		}
	}()
	if q.Issuer == "" {
		return Keys{}, errors.New("keycache: no issuer given")
	}
	if err := c.prepareDir(); err != nil {
		return Keys{}, err
	}
	var causes []string
	jwksURL := q.JWKSURI
	if jwksURL == "" {
		docURL := q.DiscoveryURL
		if docURL == "" {
			// OpenID Connect Discovery 1.0 §4: remove a terminating "/"
			// before appending the well-known path.
			docURL = strings.TrimSuffix(q.Issuer, "/") + "/.well-known/openid-configuration"
		}
		if err := c.checkURL(docURL); err != nil {
			return Keys{}, fmt.Errorf("keycache: discovery URL: %w", err)
		}
		res, err := c.get(ctx, spec{
			kind: kindDiscovery, issuer: q.Issuer, url: docURL, cacheOnly: q.CacheOnly,
			parse: func(b []byte, object bool) (any, error) { return c.discoveryJWKSURI(q.Issuer, docURL, b, object) },
		})
		if err != nil {
			return Keys{}, needsNetwork(err, q)
		}
		jwksURL = res.value.(string)
		keys.Fetched = res.fetched
		if res.stale {
			causes = append(causes, res.cause)
		}
		if res.unstored != nil {
			keys.Unstored = truncate(res.unstored.Error(), maxCause)
		}
	} else if err := c.checkURL(jwksURL); err != nil {
		return Keys{}, fmt.Errorf("keycache: JWKS URL: %w", err)
	}
	res, err := c.get(ctx, spec{
		kind: kindJWKS, issuer: q.Issuer, url: jwksURL, missingKID: q.MissingKID, cacheOnly: q.CacheOnly,
		parse: func(b []byte, object bool) (any, error) { return parseJWKS(jwksURL, b, object) },
	})
	if err != nil {
		return Keys{}, needsNetwork(err, q)
	}
	keys.Set = res.value.(*KeySet)
	keys.FetchedAt = res.fetchedAt
	keys.Fetched = keys.Fetched || res.fetched
	if res.unstored != nil {
		keys.Unstored = truncate(res.unstored.Error(), maxCause)
	}
	if keys.Unstored != "" {
		// Nothing in the cache holds these keys: the caller may hand them
		// on (the fetch helper to its backend), as fetched.
		keys.JWKS = res.body
	}
	if res.stale {
		causes = append(causes, res.cause)
	}
	if len(causes) > 0 {
		keys.Stale = true
		keys.StaleCause = strings.Join(causes, "; ")
	}
	return keys, nil
}

// needsNetwork turns ErrNeedsNetwork into a NeedsNetworkError for q.
func needsNetwork(err error, q Query) error {
	if err != ErrNeedsNetwork {
		return err
	}
	q.CacheOnly = false
	return &NeedsNetworkError{Query: q}
}

// get serves the document s names: from disk when fresh enough, else
// fetched by exactly one goroutine of one process at a time (the others
// wait, then read what it wrote).
func (c *Cache) get(ctx context.Context, s spec) (result, error) {
	name := entryName(s.kind, s.issuer, s.url)
	delay := lockPollMin
	for {
		cur, err := c.load(name, s)
		if err != nil {
			return result{}, err
		}
		if now := c.now(); !c.needFetch(cur, s, now) {
			return c.serve(cur, s, now, nil)
		}
		if s.cacheOnly {
			return result{}, ErrNeedsNetwork
		}
		if release, ok := c.tryAcquire(name); ok {
			unlock, locked, err := c.tryLock(name)
			if err != nil && !errors.Is(err, ErrInsecureCache) && !s.cacheOnly {
				// The lock file cannot be created or opened (a directory
				// the server can no longer write): fetch without the
				// cross-process lock rather than fail the login. The
				// write will fail too, and the keys are served unstored.
				unlock, locked, err = func() {}, true, nil
			}
			if err != nil {
				release()
				return result{}, err
			}
			if locked {
				res, err := c.fetchLocked(ctx, name, s)
				unlock()
				release()
				return res, err
			}
			release()
		}
		if err := sleepCtx(ctx, delay+rand.N(delay)); err != nil {
			return result{}, fmt.Errorf("%w: waiting for another backend's fetch of %s: %w",
				ErrUnavailable, redactString(s.url), err)
		}
		delay = min(2*delay, lockPollMax)
	}
}

// tryAcquire is the in-process half of the single flight: one goroutine per
// entry name at a time.
func (c *Cache) tryAcquire(name string) (release func(), ok bool) {
	c.mu.Lock()
	ch, found := c.running[name]
	if !found {
		ch = make(chan struct{}, 1)
		c.running[name] = ch
	}
	c.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, true
	default:
		return nil, false
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// load reads and parses the entry name; a corrupt entry, one that does not
// match s, or one whose body no longer parses is absent.
func (c *Cache) load(name string, s spec) (loaded, error) {
	f, err := c.readEntry(name) // Keys checked the directory
	if err != nil || f == nil {
		return loaded{}, err
	}
	if f.Version != entryVersion || f.Kind != s.kind || f.Issuer != s.issuer || f.URL != s.url {
		return loaded{}, nil
	}
	if len(f.Body) == 0 {
		if f.FetchedAt.IsZero() {
			return loaded{file: f}, nil // failure record only
		}
		return loaded{}, nil
	}
	v, err := s.parse(f.Body, startsObject(f.Body)) // decodeEntry validated the whole entry
	if err != nil {
		return loaded{}, nil
	}
	return loaded{file: f, value: v}, nil
}

// recent reports whether t is set and at most d before now.
func recent(t, now time.Time, d time.Duration) bool {
	age := now.Sub(t)
	return !t.IsZero() && age >= 0 && age < d
}

// needFetch decides whether the entry must be (re)fetched now.
func (c *Cache) needFetch(cur loaded, s spec, now time.Time) bool {
	f := cur.file
	if f == nil {
		return true
	}
	failedRecently := f.LastError != "" && recent(f.AttemptedAt, now, c.retry)
	if cur.value == nil {
		return !failedRecently
	}
	if recent(f.FetchedAt, now, c.refresh) {
		if s.missingKID != "" && !hasKID(cur.value, s.missingKID) {
			return !recent(f.AttemptedAt, now, c.kidInterval)
		}
		return false
	}
	return !failedRecently
}

func hasKID(v any, kid string) bool {
	set, ok := v.(*KeySet)
	if !ok {
		return true
	}
	return set.HasKID(kid)
}

// serve returns what the entry can give at now: fresh, stale (within
// MaxStale) or ErrUnavailable. cause is this call's fetch error, if any;
// otherwise the recorded one is used.
func (c *Cache) serve(cur loaded, s spec, now time.Time, cause error) (result, error) {
	f := cur.file
	if cause == nil && f != nil && f.LastError != "" {
		cause = recordedError(f.LastError, f.LastErrorKind)
	}
	what := "JWKS"
	if s.kind == kindDiscovery {
		what = "discovery document"
	}
	if cur.value == nil {
		if cause == nil {
			cause = errors.New("no cached copy")
		}
		return result{}, fmt.Errorf("%w: no usable %s for issuer %q: %w", ErrUnavailable, what, s.issuer, cause)
	}
	res := result{value: cur.value, fetchedAt: f.FetchedAt, body: f.Body}
	age := now.Sub(f.FetchedAt)
	if age < 0 {
		// Fetched "in the future": the clock was stepped back, or the cache
		// was copied from another host. Its real age is unknown, so
		// MaxStale cannot be shown to hold: it is not served until a
		// refetch replaces it (needFetch asks for one).
		if cause == nil {
			cause = errors.New("refresh failed")
		}
		return result{}, fmt.Errorf("%w: cached %s for issuer %q was fetched at %s, %s after the current time, so its age is unknown; it is not used until a refetch succeeds: %w",
			ErrFutureFetch, what, s.issuer, f.FetchedAt.UTC().Format(time.RFC3339), (-age).Round(time.Second), cause)
	}
	if age >= 0 && age < c.refresh {
		if cause != nil && s.missingKID != "" {
			// Fresh keys, but the unknown-kid refetch failed.
			res.stale, res.cause = true, shortCause("unknown kid refetch failed", cause)
		}
		return res, nil
	}
	if age < c.maxStale {
		if cause == nil {
			cause = errors.New("refresh failed")
		}
		res.stale = true
		res.cause = shortCause(fmt.Sprintf("%s refresh failed, serving a copy fetched %s ago", what, age.Round(time.Second)), cause)
		return res, nil
	}
	if cause == nil {
		cause = errors.New("refresh failed")
	}
	return result{}, fmt.Errorf("%w: cached %s for issuer %q is %s old, beyond the maximum staleness of %s: %w",
		ErrUnavailable, what, s.issuer, age.Round(time.Second), c.maxStale, cause)
}

func shortCause(prefix string, err error) string {
	return truncate(prefix+": "+err.Error(), maxCause)
}

// fetchLocked runs with the entry's lock held: re-check (another process
// may have fetched while we waited), fetch, record the outcome.
func (c *Cache) fetchLocked(ctx context.Context, name string, s spec) (result, error) {
	cur, err := c.load(name, s)
	if err != nil {
		return result{}, err
	}
	if now := c.now(); !c.needFetch(cur, s, now) {
		return c.serve(cur, s, now, nil)
	}
	accept := "application/json"
	if s.kind == kindJWKS {
		accept = "application/jwk-set+json, application/json"
	}
	body, ferr := c.httpGet(ctx, s.url, accept)
	var value any
	if ferr == nil {
		value, ferr = s.parse(body, IsJSONObject(body))
	}
	if ferr == nil && s.kind == kindJWKS {
		ferr = crossCheckJWKS(s.url, body)
	}
	now := c.now()
	if ferr == nil {
		e := &entryFile{
			Version: entryVersion, Kind: s.kind, Issuer: s.issuer, URL: s.url,
			FetchedAt: now, AttemptedAt: now, Body: body,
		}
		res := result{value: value, fetchedAt: now, fetched: true, body: body}
		if err := c.writeEntry(name, e); err != nil {
			// A directory the server can no longer write (read-only mount,
			// wrong owner, full disk) must not fail every login while the
			// identity provider answers: serve what was just fetched and
			// checked, and say that it was not stored. Single flight
			// degrades: every login fetches until the directory is fixed.
			res.unstored = err
		}
		return res, nil
	}
	if ctx.Err() == nil {
		// The identity provider failed (not our caller's deadline): record
		// it so that no backend retries before RetryInterval.
		e := &entryFile{Version: entryVersion, Kind: s.kind, Issuer: s.issuer, URL: s.url}
		if cur.file != nil && cur.value != nil {
			e.FetchedAt, e.Body = cur.file.FetchedAt, cur.file.Body
		}
		e.AttemptedAt = now
		e.LastError = truncate(ferr.Error(), maxCause)
		e.LastErrorKind = errorKind(ferr)
		// Unwritable directory: the fetch error says more than the write's.
		if err := c.writeEntry(name, e); err == nil {
			cur.file = e
		}
	}
	return c.serve(cur, s, now, ferr)
}
