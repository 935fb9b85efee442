package validator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/oauth-jwt/oauth_jwt/internal/trustedfile"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// MaxKeyFileBytes bounds a jwks_file, as a fetched JWKS is bounded.
const MaxKeyFileBytes = keycache.DefaultMaxBodyBytes

// keyFileSource serves an issuer's keys from a JWK set on disk
// (oauth_jwt.jwks_file). It never makes a network request and never
// reports keycache.ErrNeedsNetwork, so the module never starts the fetch
// helper for such an issuer. Every failure matches keycache.ErrUnavailable
// and names the file: the login is refused with keys_unavailable.
type keyFileSource struct {
	path string
}

// keyFileError is a jwks_file that cannot be used; its text names the file
// and what is wrong. It matches keycache.ErrUnavailable: the login is
// refused with keys_unavailable.
type keyFileError struct{ msg string }

func (e *keyFileError) Error() string { return e.msg }
func (e *keyFileError) Unwrap() error { return keycache.ErrUnavailable }

// keyFileRule is the trusted-file rule of a jwks_file: whoever can change
// it can make the server accept tokens they forged.
var keyFileRule = trustedfile.Rule{What: "key file", Setting: SettingPrefix + "jwks_file", MaxBytes: MaxKeyFileBytes}

// fileStamp identifies one version of a file: any change of contents,
// replacement (rename), owner or mode changes it.
type fileStamp struct {
	dev, ino, size uint64
	mtime, ctime   int64
	mode, uid      uint32
}

type keyFileEntry struct {
	stamp fileStamp
	set   *keycache.KeySet
	at    time.Time
}

// keyFiles remembers the last parse of each key file in this process, so
// that a long-lived process (oauth_jwt_check, tests) re-reads a file only
// when it changed. A backend judges one login and exits, so there it is
// read once per login.
var keyFiles struct {
	sync.Mutex
	m map[string]keyFileEntry
}

func stampOf(st *syscall.Stat_t) fileStamp {
	return fileStamp{
		dev: uint64(st.Dev), ino: uint64(st.Ino), size: uint64(st.Size),
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
		mode: uint32(st.Mode), uid: st.Uid,
	}
}

// Keys returns the key set in the file, re-read when the file changed.
func (s keyFileSource) Keys(_ context.Context, q keycache.Query) (keycache.Keys, error) {
	fail := func(format string, args ...any) (keycache.Keys, error) {
		return keycache.Keys{}, &keyFileError{msg: fmt.Sprintf("key file %s %s", s.path, fmt.Sprintf(format, args...))}
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(s.path, &st); err != nil {
		return fail("cannot be examined: %v", err)
	}
	stamp := stampOf(&st)
	keyFiles.Lock()
	e, ok := keyFiles.m[s.path]
	keyFiles.Unlock()
	if ok && e.stamp == stamp {
		return keycache.Keys{Set: e.set, FetchedAt: e.at}, nil
	}
	body, err := keyFileRule.Read(s.path)
	var te *trustedfile.Error
	if errors.As(err, &te) {
		// It names the file, what is wrong and the fix.
		return keycache.Keys{}, &keyFileError{msg: err.Error()}
	}
	if err != nil {
		return fail("cannot be read: %v", err)
	}
	set, err := keycache.ParseKeySet(body)
	if err != nil {
		return fail("%v", err)
	}
	at := time.Unix(0, st.Mtim.Nano())
	keyFiles.Lock()
	if keyFiles.m == nil {
		keyFiles.m = map[string]keyFileEntry{}
	}
	// Stamped with what Lstat saw before the read: when the file changed
	// in between, the next call sees another stamp and reads it again.
	keyFiles.m[s.path] = keyFileEntry{stamp: stamp, set: set, at: at}
	keyFiles.Unlock()
	return keycache.Keys{Set: set, FetchedAt: at}, nil
}

// ReadKeyFile reads and parses a jwks_file with the checks the module
// applies (for oauth_jwt_check).
func ReadKeyFile(path string) (*keycache.KeySet, error) {
	k, err := keyFileSource{path: path}.Keys(context.Background(), keycache.Query{})
	return k.Set, err
}
