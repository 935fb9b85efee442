package keycache

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/oauth-jwt/oauth_jwt/internal/trustedfile"
	"github.com/tidwall/gjson"
)

// Introspection (RFC 7662): the cache of positive answers, shared by all
// backends in the key cache directory, and (in the full build) the request
// itself. An entry is keyed by a hash of the issuer and the token; the
// token is never stored, and neither the entry's name nor the hash is ever
// put in an error text (a hash prefix would identify the token in a log).

// MaxIntrospectionBytes bounds an introspection answer.
const MaxIntrospectionBytes = 64 << 10

// ErrIntrospection: the introspection endpoint could not be reached,
// answered with another status than 200, too much, or not a JSON object,
// or the client credentials were refused.
var ErrIntrospection = errors.New("introspection failed")

// IntrospectQuery is one introspection request.
type IntrospectQuery struct {
	// Issuer is the pg_hba issuer; it also finds the discovery document
	// when Endpoint is empty.
	Issuer string
	// DiscoveryURL overrides where the discovery document is fetched.
	DiscoveryURL string
	// Endpoint is the introspection endpoint; "" means the discovery
	// document's introspection_endpoint.
	Endpoint string
	// ClientID and ClientSecret authenticate the resource server (HTTP
	// Basic, RFC 7662 section 2.1 and RFC 6749 section 2.3.1).
	ClientID     string
	ClientSecret string
	// Token is the token to ask about. It MUST NOT appear in any error.
	Token string
}

const introPrefix = "introspect-"

// IntrospectionKey is the cache key of token for issuer: a hash, never
// to be logged.
func IntrospectionKey(issuer, token string) string {
	h := sha256.Sum256([]byte("oauth_jwt introspection 1\x00" + issuer + "\x00" + token))
	return hex.EncodeToString(h[:])
}

// LookupIntrospection returns the positive answer cached under key when it
// is still valid: before its expiry, and stored less than maxAge ago (so
// that lowering the TTL takes effect at once); ok is false when there is
// none, it expired or it is corrupt. An entry that must not be used (not
// owned by this user, writable by others) is an error matching
// ErrInsecureCache that does not name it.
func (c *Cache) LookupIntrospection(key string, maxAge time.Duration) (answer []byte, ok bool, err error) {
	if err := c.prepareDir(); err != nil {
		return nil, false, err
	}
	path := filepath.Join(c.dir, introPrefix+key+entrySuffix)
	r := entryRule
	r.What = "introspection cache file"
	r.MaxBytes = MaxIntrospectionBytes + 4096
	data, err := r.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		if errors.Is(err, trustedfile.ErrUntrusted) {
			return nil, false, fmt.Errorf("%w: an introspection cache entry in %s is not owned by the server's user or is writable by others", ErrInsecureCache, c.dir)
		}
		return nil, false, nil // unreadable: ask again
	}
	if !IsJSONObject(data) {
		return nil, false, nil
	}
	m := gjson.GetManyBytes(data, "version", "expires_at", "answer", "stored_at")
	if m[0].Raw != "1" || m[1].Type != gjson.Number || !m[2].IsObject() || m[3].Type != gjson.Number {
		return nil, false, nil
	}
	now := c.now()
	if !now.Before(time.Unix(m[1].Int(), 0)) {
		_ = syscall.Unlink(path) // expired for everyone
		return nil, false, nil
	}
	if !now.Before(time.Unix(0, m[3].Int()).Add(maxAge)) {
		return nil, false, nil // older than this caller's TTL
	}
	return []byte(m[2].Raw), true, nil
}

// StoreIntrospection caches a positive answer under key until expires
// (which the caller bounds by the TTL and the token's exp).
func (c *Cache) StoreIntrospection(key string, answer []byte, expires time.Time) error {
	if !IsJSONObject(answer) || len(answer) > MaxIntrospectionBytes {
		return errors.New("keycache: refusing to cache an answer that is not a bounded JSON object")
	}
	if err := c.prepareDir(); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString(`{"version":1,"expires_at":`)
	b.WriteString(strconv.FormatInt(expires.Unix(), 10))
	b.WriteString(`,"stored_at":`)
	b.WriteString(strconv.FormatInt(c.now().UnixNano(), 10))
	b.WriteString(`,"answer":`)
	b.Write(answer)
	b.WriteString("}\n")
	// Raw system calls: this runs in the backend, where an *os.File would
	// set up the runtime's network poller and attach a finalizer.
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(c.dir, ".introspect.tmp"+hex.EncodeToString(rnd[:]))
	fd, err := syscall.Open(tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return errors.New("keycache: writing an introspection cache entry failed")
	}
	data := []byte(b.String())
	for len(data) > 0 && err == nil {
		var n int
		n, err = syscall.Write(fd, data)
		if err == syscall.EINTR {
			err = nil
			continue
		}
		data = data[n:]
	}
	if cerr := syscall.Close(fd); err == nil {
		err = cerr
	}
	if err == nil {
		err = syscall.Rename(tmp, filepath.Join(c.dir, introPrefix+key+entrySuffix))
	}
	if err != nil {
		_ = syscall.Unlink(tmp)
		return errors.New("keycache: writing an introspection cache entry failed")
	}
	return nil
}

// introspectionEndpointFromCache returns the introspection_endpoint of the
// discovery document the key cache holds for q, "" when there is none.
func (c *Cache) introspectionEndpointFromCache(issuer, docURL string) string {
	e, err := c.readEntry(entryName(kindDiscovery, issuer, docURL))
	if err != nil || e == nil || len(e.Body) == 0 {
		return ""
	}
	v := gjson.GetBytes(e.Body, "introspection_endpoint")
	if v.Type != gjson.String {
		return ""
	}
	return v.Str
}

// discoveryURLOf is where the discovery document of q is fetched.
func discoveryURLOf(issuer, discoveryURL string) string {
	if discoveryURL != "" {
		return discoveryURL
	}
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}
