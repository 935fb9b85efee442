package keycache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/oauth-jwt/oauth_jwt/internal/trustedfile"
	"github.com/tidwall/gjson"
)

const (
	entryVersion = 1
	entrySuffix  = ".json"
	lockSuffix   = ".lock"

	kindDiscovery = "discovery"
	kindJWKS      = "jwks"
)

// entryFile is the on-disk form of one cached document (see the package
// documentation).
type entryFile struct {
	Version   int             `json:"version"`
	Kind      string          `json:"kind"`
	Issuer    string          `json:"issuer"`
	URL       string          `json:"url"`
	FetchedAt time.Time       `json:"fetched_at,omitzero"`
	Body      json.RawMessage `json:"body,omitempty"`
	// AttemptedAt is when the last fetch attempt ended, successful or not.
	AttemptedAt time.Time `json:"attempted_at,omitzero"`
	// LastError is why the last attempt failed ("" when it succeeded);
	// LastErrorKind names the sentinel it matched, so that errors.Is
	// still works for the processes that read it.
	LastError     string `json:"last_error,omitempty"`
	LastErrorKind string `json:"last_error_kind,omitempty"`
}

// entryName is the file name (without suffix) of the document of this kind
// for this issuer and URL.
func entryName(kind, issuer, url string) string {
	h := sha256.Sum256([]byte(kind + "\x00" + issuer + "\x00" + url))
	return hex.EncodeToString(h[:])
}

func insecuref(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInsecureCache}, args...)...)
}

// The rule for the cache (package trustedfile): only the server's OS user
// may own the directory and its files, not even root, since only the
// server writes them. The directories above it are checked once per
// Cache (New), the directory once per query, each file as it is opened.
var (
	dirRule   = trustedfile.Rule{What: "key cache directory", Dir: true, SelfOnly: true, ParentsChecked: true}
	entryRule = trustedfile.Rule{What: "key cache file", SelfOnly: true, ParentsChecked: true}
)

// insecure marks a failed check of the trusted-file rule as ErrInsecureCache.
func insecure(err error) error {
	if errors.Is(err, trustedfile.ErrUntrusted) {
		return fmt.Errorf("%w: %w", ErrInsecureCache, err)
	}
	return err
}

// checkOwned says whether fi (from Lstat or Fstat of path) may be trusted:
// of the wanted type, not a symbolic link, owned by the effective user and
// not writable by group or others.
func checkOwned(path string, fi fs.FileInfo, wantDir bool) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return insecuref("cannot determine the owner of %s", path)
	}
	return checkStat(path, st, wantDir)
}

// checkStat is checkOwned for a raw stat(2) result.
func checkStat(path string, st *syscall.Stat_t, wantDir bool) error {
	r := entryRule
	if wantDir {
		r = dirRule
	}
	return insecure(r.Check(path, st))
}

// checkParents checks the directories above the cache directory: someone
// who can rename an entry of one of them can swap the whole cache between
// a check and a use.
func (c *Cache) checkParents() error {
	r := dirRule
	r.ParentsChecked = false
	return insecure(r.CheckParents(c.dir))
}

// prepareDir creates the cache directory (0700) when missing and checks it.
// New and every Keys call run it. Raw system calls: a login runs it twice.
func (c *Cache) prepareDir() error {
	var st syscall.Stat_t
	err := ignoringEINTR(func() error { return syscall.Lstat(c.dir, &st) })
	if err == syscall.ENOENT {
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return fmt.Errorf("keycache: creating the cache directory: %w", err)
		}
		err = ignoringEINTR(func() error { return syscall.Lstat(c.dir, &st) })
	}
	if err != nil {
		return fmt.Errorf("keycache: cache directory: %w", &fs.PathError{Op: "lstat", Path: c.dir, Err: err})
	}
	return checkStat(c.dir, &st, true)
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

// openChecked opens path without following symbolic links and checks the
// opened file itself (fstat), so the check and the use cannot race.
func openChecked(path string, flag int, perm fs.FileMode) (*os.File, error) {
	fi, err := os.Lstat(path)
	if err == nil {
		if err := checkOwned(path, fi, false); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) || flag&os.O_CREATE == 0 {
		return nil, err
	}
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, perm)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, insecuref("%s is a symbolic link", path)
		}
		return nil, err
	}
	fi, err = f.Stat()
	if err == nil {
		err = checkOwned(path, fi, false)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readEntry returns the entry stored under name, nil when there is none or
// it is corrupt (it will be refetched and overwritten), or an error when the
// file must not be used (ErrInsecureCache) or cannot be read.
func (c *Cache) readEntry(name string) (*entryFile, error) {
	path := filepath.Join(c.dir, name+entrySuffix)
	// The body is stored compacted, so the file exceeds it by the metadata.
	limit := c.maxBody + 64<<10
	r := entryRule
	r.MaxBytes = limit
	// trustedfile reads with raw system calls: an *os.File would register
	// the descriptor with the runtime's network poller (setting the poller
	// up on the first read in every backend) and attach a finalizer.
	data, err := r.Read(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case errors.Is(err, trustedfile.ErrTooLarge):
		return nil, nil // corrupt: larger than anything we write
	case errors.Is(err, trustedfile.ErrUntrusted):
		return nil, insecure(err)
	case err != nil:
		return nil, fmt.Errorf("keycache: reading %s: %w", path, err)
	}
	return decodeEntry(data), nil
}

// IsJSONObject reports whether b is one valid JSON object: one validating
// pass, then a look at the first byte (gjson.ParseBytes would copy all of b
// to say the same). The validator checks introspection answers with it.
func IsJSONObject(b []byte) bool {
	return gjson.ValidBytes(b) && startsObject(b)
}

// startsObject reports whether the JSON value b (known to be valid) is an
// object: its first byte after white space is '{'.
func startsObject(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '{'
	}
	return false
}

// entryFields are the members of an entry file, in the order of the
// results decodeEntry collects.
var entryFields = [...]string{"version", "kind", "issuer", "url", "fetched_at", "body",
	"attempted_at", "last_error", "last_error_kind"}

// decodeEntry parses what encodeEntry wrote, or returns nil when it is
// corrupt: not one JSON object, or a member of the wrong type. It uses gjson
// rather than encoding/json because it runs on every login: no reflection
// and no decoder state. One validating pass, then one pass over the
// members (a lookup per field would walk past the body again for each
// field after it); of a member given twice the first counts, as a lookup
// by name would find.
func decodeEntry(data []byte) *entryFile {
	if !IsJSONObject(data) {
		return nil
	}
	var r [len(entryFields)]gjson.Result
	gjson.Parse(string(data)).ForEach(func(k, v gjson.Result) bool {
		for i, name := range entryFields {
			if k.Str == name && !r[i].Exists() {
				r[i] = v
				break
			}
		}
		return true
	})
	var e entryFile
	str := func(x gjson.Result, dst *string) bool {
		switch x.Type {
		case gjson.Null:
			return !x.Exists() // absent is "", an explicit null is corrupt
		case gjson.String:
			*dst = x.Str
			return true
		}
		return false
	}
	when := func(x gjson.Result, dst *time.Time) bool {
		var s string
		if !str(x, &s) {
			return false
		}
		if s == "" {
			return !x.Exists()
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		*dst = t
		return err == nil
	}
	if r[0].Type != gjson.Number || r[0].Raw != strconv.Itoa(int(r[0].Int())) {
		return nil
	}
	e.Version = int(r[0].Int())
	if !str(r[1], &e.Kind) || !str(r[2], &e.Issuer) || !str(r[3], &e.URL) ||
		!when(r[4], &e.FetchedAt) || !when(r[6], &e.AttemptedAt) ||
		!str(r[7], &e.LastError) || !str(r[8], &e.LastErrorKind) {
		return nil
	}
	if b := r[5]; b.Exists() {
		if b.Type == gjson.Null {
			return nil
		}
		// The body's bytes as read (no copy): b.Index is its offset in data.
		if end := b.Index + len(b.Raw); b.Index > 0 && end <= len(data) {
			e.Body = json.RawMessage(data[b.Index:end:end])
		} else {
			e.Body = json.RawMessage(b.Raw)
		}
	}
	return &e
}

// encodeEntry is the on-disk form of e, which decodeEntry reads back.
func encodeEntry(e *entryFile) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep the body as the provider sent it (compacted)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// createTemp is os.CreateTemp; tests make it fail as an unwritable
// directory would (they run as root, whom chmod does not stop).
var createTemp = os.CreateTemp

// writeEntry replaces the entry stored under name atomically: a temporary
// file in the same directory, fsync, rename, fsync of the directory.
func (c *Cache) writeEntry(name string, e *entryFile) (err error) {
	data, err := encodeEntry(e)
	if err != nil {
		return fmt.Errorf("keycache: encoding cache entry: %w", err)
	}
	final := filepath.Join(c.dir, name+entrySuffix)
	f, err := createTemp(c.dir, "."+name+".tmp*") // O_EXCL, mode 0600
	if err != nil {
		return fmt.Errorf("keycache: writing cache entry: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("keycache: writing %s: %w", final, err)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, final); err != nil {
		return err
	}
	if d, derr := os.Open(c.dir); derr == nil {
		// Best effort: the rename is already visible to other processes;
		// this only makes it survive a crash of the machine.
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// tryLock takes the cross-process lock of the entry name without waiting.
// ok is false when another process (or another goroutine's descriptor)
// holds it.
func (c *Cache) tryLock(name string) (unlock func(), ok bool, err error) {
	path := filepath.Join(c.dir, name+lockSuffix)
	f, err := openChecked(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, ErrInsecureCache) {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("keycache: opening lock file: %w", err)
	}
	fd := int(f.Fd())
	for {
		err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("keycache: locking %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(fd, syscall.LOCK_UN)
		f.Close()
	}, true, nil
}
