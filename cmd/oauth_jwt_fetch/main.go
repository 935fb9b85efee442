// Command oauth_jwt_fetch fetches an identity provider's discovery document
// and JWKS into oauth_jwt's key cache, and asks its introspection endpoint
// (RFC 7662) about a token when the module's introspection setting needs it. It is installed beside oauth_jwt.so
// and started by a backend only when the cache needs a fetch (a cold cache,
// a refresh, an unknown kid); a login with a warm cache never starts it.
//
// Keeping the fetch in its own process keeps net/http, crypto/tls and jwx
// out of every backend, which was measured to cost more connection latency
// and memory than the whole validation (docs/benchmarks.md). The cache's
// rules do not change: one fetch per issuer per refresh interval for the
// whole server, single flight across processes by flock, recorded failures
// and last-known-good keys (package keycache).
//
// Protocol (package internal/fetchwire): the backend writes a request (the
// oauth_jwt settings and the key query; for introspection, the token, which
// reaches this process by no other way) to standard input
// and closes it; the helper writes one result to standard output and exits
// 0. The result is an error, or success; when the keys could not be written
// to the cache (its directory is no longer writable), it carries the JWKS
// as fetched, which the backend uses for that one login. Exit status 2 means it was started wrongly (by hand, for example).
// The backend kills it when its own deadline passes, and the kernel kills
// it when the backend exits (parent-death signal).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/oauth-jwt/oauth_jwt/internal/fetchwire"
	"github.com/oauth-jwt/oauth_jwt/validator"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
	"golang.org/x/sys/unix"
)

// maxTimeout bounds the deadline a request may ask for.
const maxTimeout = 10 * time.Minute

func main() {
	// Descriptors a backend did not mark close-on-exec (its client socket,
	// for one) are no business of this process.
	_ = unix.CloseRange(3, ^uint(0), 0)
	if len(os.Args) != 1 {
		fmt.Fprintln(os.Stderr, "oauth_jwt_fetch is started by the oauth_jwt module; it takes no arguments")
		os.Exit(2)
	}
	os.Exit(serve(os.Stdin, os.Stdout))
}

// serve reads one request from in, fetches, and writes the result to out.
func serve(in io.Reader, out io.Writer) int {
	data, err := io.ReadAll(io.LimitReader(in, fetchwire.MaxMessage+1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "oauth_jwt_fetch: reading the request:", err)
		return 2
	}
	settings, query, err := fetchwire.DecodeRequest(data)
	if err != nil {
		fmt.Fprintln(os.Stderr, "oauth_jwt_fetch:", err)
		return 2
	}
	res := fetch(settings, query)
	if _, err := out.Write(fetchwire.EncodeResult(res)); err != nil {
		return 1
	}
	return 0
}

// fetch runs the key query through the key cache with the network allowed.
func fetch(settings, query map[string]string) (res fetchwire.Result) {
	defer func() {
		if p := recover(); p != nil {
			res = fetchwire.Result{Error: fmt.Sprintf("oauth_jwt_fetch: unexpected fault (%T)", p)}
		}
	}()
	timeout := time.Minute
	if ms, err := strconv.ParseInt(query[fetchwire.QueryTimeoutMS], 10, 64); err == nil && ms > 0 {
		timeout = min(time.Duration(ms)*time.Millisecond, maxTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if query[fetchwire.QueryKind] == fetchwire.KindIntrospect {
		// RFC 7662: the token came on standard input; only the answer
		// (or why there is none, never quoting the token) goes back.
		answer, err := validator.Introspect(ctx, validator.Settings(settings), query[fetchwire.QueryIssuer], query[fetchwire.QueryToken])
		if err != nil {
			return fetchwire.Result{Error: err.Error(), Kind: keycache.WireKind(err)}
		}
		return fetchwire.Result{Answer: string(answer)}
	}
	src, err := validator.NewKeySource(validator.Settings(settings))
	if err != nil {
		return fetchwire.Result{Error: err.Error(), Kind: keycache.WireKind(err)}
	}
	keys, err := src.Keys(ctx, keycache.Query{
		Issuer:       query[fetchwire.QueryIssuer],
		DiscoveryURL: query[fetchwire.QueryDiscoveryURL],
		JWKSURI:      query[fetchwire.QueryJWKSURI],
		MissingKID:   query[fetchwire.QueryMissingKID],
	})
	if err != nil {
		return fetchwire.Result{Error: err.Error(), Kind: keycache.WireKind(err)}
	}
	if keys.Unstored != "" {
		// The cache directory is not writable: hand the keys to the
		// backend for the login that asked, rather than fail it.
		return fetchwire.Result{Unstored: keys.Unstored, JWKS: string(keys.JWKS)}
	}
	return fetchwire.Result{}
}
