package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/oauth-jwt/oauth_jwt/internal/fetchwire"
	"github.com/oauth-jwt/oauth_jwt/internal/trustedfile"
	"github.com/oauth-jwt/oauth_jwt/validator"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// HelperName is the fetch helper's file name; it is installed in the same
// directory as oauth_jwt.so.
const HelperName = "oauth_jwt_fetch"

// settingModulePath is the setting by which the shim passes the path of
// the loaded oauth_jwt.so (dladdr).
const settingModulePath = "server.module_path"

// helperRule is the trusted-file rule of the fetch helper: it writes the
// keys every backend trusts, so it gets the rule of the files that decide
// them (owner the server's OS user or root, writable by no one else, safe
// directories, an executable regular file, opened without following a
// symbolic link).
var helperRule = trustedfile.Rule{What: "key fetch helper", Exec: true}

// openHelper finds the fetch helper beside the loaded module, opens it
// and checks the open file. The caller closes f and runs the helper
// through it (execHelper), so that what runs is what was checked.
func openHelper(settings validator.Settings) (path string, f *os.File, err error) {
	mod := settings[settingModulePath]
	if mod == "" || !filepath.IsAbs(mod) {
		return "", nil, fmt.Errorf("cannot find %s: the path of the loaded oauth_jwt module is unknown", HelperName)
	}
	path = filepath.Join(filepath.Dir(mod), HelperName)
	fd, _, err := helperRule.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil, fmt.Errorf("%s is missing: the module fetches keys with it, and `make install` installs it beside %s", path, mod)
	case errors.Is(err, trustedfile.ErrUntrusted):
		return "", nil, err // names the file and the fix
	case err != nil:
		return "", nil, fmt.Errorf("cannot use %s: %w", path, err)
	}
	return path, os.NewFile(uintptr(fd), path), nil
}

// helperFD is the descriptor number the checked helper file gets in the
// child (the first of exec.Cmd.ExtraFiles); the helper closes it first
// thing (close_range from 3).
const helperFD = 3

// execPath is what the child executes: the checked descriptor through
// /proc, so that a file swapped in after the check is never run. Where
// /proc is not mounted it is the path itself, which the checks of its
// directories keep anyone but the server's OS user and root from swapping.
func execPath(path string) string {
	if _, err := os.Stat("/proc/self/fd"); err == nil {
		return "/proc/self/fd/" + strconv.Itoa(helperFD)
	}
	return path
}

// runFetchHelper runs the fetch helper for q and returns the error it
// reports, nil when the cache now holds what q needs. When the helper
// fetched keys it could not store (the cache directory is not writable),
// it returns them: the caller uses them for this login only. The helper gets the
// settings and the query on standard input (never the token, and nothing
// on its command line, which every local user can read); it is killed
// when ctx ends and, through its parent-death signal, when this backend
// exits.
func runFetchHelper(ctx context.Context, settings validator.Settings, q keycache.Query) (*keycache.Keys, error) {
	path, helper, err := openHelper(settings)
	if err != nil {
		return nil, err
	}
	defer helper.Close()
	left := timeLeft(ctx)
	if left <= 0 {
		return nil, fmt.Errorf("%w: fetching the keys of issuer %q: %w", keycache.ErrUnavailable, q.Issuer, context.DeadlineExceeded)
	}
	query := map[string]string{
		fetchwire.QueryIssuer:       q.Issuer,
		fetchwire.QueryDiscoveryURL: q.DiscoveryURL,
		fetchwire.QueryJWKSURI:      q.JWKSURI,
		fetchwire.QueryMissingKID:   q.MissingKID,
		fetchwire.QueryTimeoutMS:    strconv.FormatInt(left.Milliseconds(), 10),
	}
	res, err := runHelper(ctx, path, helper, settings, query)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: fetching the keys of issuer %q: %w", keycache.ErrUnavailable, q.Issuer, ctx.Err())
	}
	if err != nil {
		return nil, err
	}
	if res.Error != "" {
		return nil, keycache.FromWireKind(res.Error, res.Kind)
	}
	if res.Unstored == "" {
		return nil, nil
	}
	// Keys that are in no cache file: parsed and checked here as a cache
	// entry is, then used to verify this login's token, never stored.
	set, err := keycache.ParseKeySet([]byte(res.JWKS))
	if err == nil && set.Usable() == 0 {
		err = errors.New("no usable key")
	}
	if err != nil {
		return nil, fmt.Errorf("the key fetch helper %s answered with a JWKS that cannot be used: %w", path, err)
	}
	return &keycache.Keys{Set: set, FetchedAt: time.Now(), Fetched: true, Unstored: res.Unstored}, nil
}

// runHelper runs the checked helper (path, open as helper) with one
// request on its standard input and decodes its result. The helper is
// killed when ctx ends and, through its parent-death signal, when this
// backend exits.
func runHelper(ctx context.Context, path string, helper *os.File, settings validator.Settings, query map[string]string) (fetchwire.Result, error) {
	var stdout, stderr capped
	cmd := exec.CommandContext(ctx, path)
	cmd.Path = execPath(path)
	cmd.ExtraFiles = []*os.File{helper}
	cmd.Env = []string{} // configuration is explicit: nothing from the environment
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(fetchwire.EncodeRequest(settings, query))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	// The parent-death signal follows the thread that forks: keep this
	// goroutine on its thread until the helper has been waited for.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	err := cmd.Run()
	runtime.UnlockOSThread()
	if ctx.Err() != nil {
		return fetchwire.Result{}, ctx.Err()
	}
	if err != nil {
		return fetchwire.Result{}, fmt.Errorf("the key fetch helper %s failed (%v)%s", path, err, stderr.firstLine())
	}
	res, err := fetchwire.DecodeResult(stdout.Bytes())
	if err != nil {
		return fetchwire.Result{}, fmt.Errorf("the key fetch helper %s answered badly: %w", path, err)
	}
	return res, nil
}

// introspected is what the helper's introspection request gave.
type introspected struct {
	answer []byte
	err    error
}

// runIntrospectHelper asks the issuer's introspection endpoint about the
// token through the helper: the token travels on the helper's standard
// input only, never its command line or environment. Every failure matches
// keycache.ErrIntrospection, and the validator refuses the login with
// introspection_failed.
func runIntrospectHelper(ctx context.Context, settings validator.Settings, req validator.Request) ([]byte, error) {
	path, helper, err := openHelper(settings)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", keycache.ErrIntrospection, err)
	}
	defer helper.Close()
	left := timeLeft(ctx)
	if left <= 0 {
		return nil, fmt.Errorf("%w: %w", keycache.ErrIntrospection, context.DeadlineExceeded)
	}
	query := map[string]string{
		fetchwire.QueryKind:      fetchwire.KindIntrospect,
		fetchwire.QueryIssuer:    req.Issuer,
		fetchwire.QueryToken:     req.Token,
		fetchwire.QueryTimeoutMS: strconv.FormatInt(left.Milliseconds(), 10),
	}
	res, err := runHelper(ctx, path, helper, settings, query)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: the introspection request of issuer %q: %w", keycache.ErrIntrospection, req.Issuer, ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", keycache.ErrIntrospection, err)
	}
	if res.Error != "" {
		return nil, fmt.Errorf("%w: %s", keycache.ErrIntrospection, strings.TrimPrefix(res.Error, keycache.ErrIntrospection.Error()+": "))
	}
	return []byte(res.Answer), nil
}

// capped is a buffer that keeps at most fetchwire.MaxMessage bytes.
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := fetchwire.MaxMessage - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// firstLine is ": " and the first line of what the helper printed, if any.
func (c *capped) firstLine() string {
	line, _, _ := strings.Cut(strings.TrimSpace(c.String()), "\n")
	if line == "" {
		return ""
	}
	if len(line) > 300 {
		line = line[:300] + "..."
	}
	return ": " + validator.EscapeLogText(line)
}

// timeLeft is what remains of the login's deadline for one helper run (a
// minute when ctx has none); the helper is told it and killed at it.
func timeLeft(ctx context.Context) time.Duration {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	return time.Until(deadline)
}
