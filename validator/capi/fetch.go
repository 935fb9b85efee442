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
	"github.com/oauth-jwt/oauth_jwt/validator"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// HelperName is the fetch helper's file name; it is installed in the same
// directory as oauth_jwt.so.
const HelperName = "oauth_jwt_fetch"

// settingModulePath is the setting by which the shim passes the path of
// the loaded oauth_jwt.so (dladdr).
const settingModulePath = "server.module_path"

// helperPath finds the fetch helper beside the loaded module.
func helperPath(settings validator.Settings) (string, error) {
	mod := settings[settingModulePath]
	if mod == "" || !filepath.IsAbs(mod) {
		return "", fmt.Errorf("cannot find %s: the path of the loaded oauth_jwt module is unknown", HelperName)
	}
	path := filepath.Join(filepath.Dir(mod), HelperName)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%s is missing: the module fetches keys with it, and `make install` installs it beside %s", path, mod)
	case err != nil:
		return "", fmt.Errorf("cannot use %s: %w", path, err)
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("%s is not an executable file", path)
	}
	return path, nil
}

// runFetchHelper runs the fetch helper for q and returns the error it
// reports, nil when the cache now holds what q needs. The helper gets the
// settings and the query on standard input (never the token, and nothing
// on its command line, which every local user can read); it is killed
// when ctx ends and, through its parent-death signal, when this backend
// exits.
func runFetchHelper(ctx context.Context, settings validator.Settings, q keycache.Query) error {
	path, err := helperPath(settings)
	if err != nil {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	left := time.Until(deadline)
	if left <= 0 {
		return fmt.Errorf("%w: fetching the keys of issuer %q: %w", keycache.ErrUnavailable, q.Issuer, context.DeadlineExceeded)
	}
	query := map[string]string{
		fetchwire.QueryIssuer:       q.Issuer,
		fetchwire.QueryDiscoveryURL: q.DiscoveryURL,
		fetchwire.QueryJWKSURI:      q.JWKSURI,
		fetchwire.QueryMissingKID:   q.MissingKID,
		fetchwire.QueryTimeoutMS:    strconv.FormatInt(left.Milliseconds(), 10),
	}
	res, err := runHelper(ctx, path, settings, query)
	if ctx.Err() != nil {
		return fmt.Errorf("%w: fetching the keys of issuer %q: %w", keycache.ErrUnavailable, q.Issuer, ctx.Err())
	}
	if err != nil {
		return err
	}
	if res.Error == "" {
		return nil
	}
	return keycache.FromWireKind(res.Error, res.Kind)
}

// introspected is what the helper's introspection request gave.
type introspected struct {
	answer []byte
	err    error
}

// runIntrospectHelper asks the issuer's introspection endpoint about the
// token through the helper: the token travels on the helper's standard
// input only. Every failure matches keycache.ErrIntrospection, and the
// validator refuses the login with introspection_failed.
func runIntrospectHelper(ctx context.Context, settings validator.Settings, req validator.Request) ([]byte, error) {
	path, err := helperPath(settings)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", keycache.ErrIntrospection, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	left := time.Until(deadline)
	if left <= 0 {
		return nil, fmt.Errorf("%w: %w", keycache.ErrIntrospection, context.DeadlineExceeded)
	}
	query := map[string]string{
		fetchwire.QueryKind:      fetchwire.KindIntrospect,
		fetchwire.QueryIssuer:    req.Issuer,
		fetchwire.QueryToken:     req.Token,
		fetchwire.QueryTimeoutMS: strconv.FormatInt(left.Milliseconds(), 10),
	}
	res, err := runHelper(ctx, path, settings, query)
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

// runHelper runs the helper at path with one request and decodes its
// result. It is killed when ctx ends and when this backend exits.
func runHelper(ctx context.Context, path string, settings validator.Settings, query map[string]string) (fetchwire.Result, error) {
	var stdout, stderr capped
	cmd := exec.CommandContext(ctx, path)
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
		return fetchwire.Result{}, fmt.Errorf("the fetch helper %s failed (%v)%s", path, err, stderr.firstLine())
	}
	res, err := fetchwire.DecodeResult(stdout.Bytes())
	if err != nil {
		return fetchwire.Result{}, fmt.Errorf("the fetch helper %s answered badly: %w", path, err)
	}
	return res, nil
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
	return ": " + line
}
