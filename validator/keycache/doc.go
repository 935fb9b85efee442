// Package keycache fetches and caches identity providers' signing keys
// (JWK sets, RFC 7517) and OpenID Connect discovery documents (OpenID
// Connect Discovery 1.0, RFC 8414) for all backends of one PostgreSQL server.
//
// PostgreSQL starts a new process for every connection, so an in-memory cache
// alone would fetch the JWKS on every login. A Cache keeps one file per
// document in a directory private to the server's OS user and coordinates
// the processes with flock(2):
//
//   - a copy younger than Config.RefreshInterval is used without any network
//     request;
//   - an older copy is refetched by exactly one process (and one goroutine)
//     while the others wait for the per-document lock, then read what it
//     wrote, so a connection storm on a cold cache makes one discovery
//     request and one JWKS request for the whole server;
//   - when a refetch fails, the last-known-good copy is served, marked Stale,
//     up to Config.MaxStale old; a failure is recorded so that no process
//     retries before Config.RetryInterval;
//   - a token whose kid is unknown (Query.MissingKID) triggers one refetch,
//     at most once per Config.KIDRefetchInterval for the whole server.
//
// A cache that someone else can write would let them plant keys and forge
// tokens, so the directory and every file are checked before each use by
// the trusted-file rule of package internal/trustedfile (owned by the
// server's OS user, not even root; not writable by group or others; no
// symbolic link; checked on the open descriptor), every directory above the
// cache directory once per Cache (owned by the server's OS user or root,
// not writable by group or others unless sticky, as /tmp), and a failed
// check is an error (ErrInsecureCache), never a silent fallback.
//
// A cache directory the server can no longer write does not fail logins
// while the identity provider answers: a document fetched but not stored is
// served all the same, and Keys.Unstored says why it was not stored
// (Keys.JWKS carries the key set, for the fetch helper to hand to its
// backend). Without the lock files and the failure records, single flight
// and the retry backoff are lost until the directory is writable again.
//
// A copy whose fetched_at is after the current time (the clock was stepped
// back, or the cache was copied from another host) has no known age, so
// MaxStale cannot hold for it: it is refetched, and while the refetch fails
// it is not served (ErrFutureFetch, which matches ErrUnavailable).
//
// Built with the tag ojw_backend (as the module's backend archive is), the
// package has no HTTP client: a query that needs a fetch must be CacheOnly
// and returns a *NeedsNetworkError naming the query, which the module hands
// to its oauth_jwt_fetch helper (built without the tag) before asking again.
// Key sets are parsed by ParseKeySet with the standard library in every
// build; the full build also checks each fetched set with jwx.
//
// Every response is bounded (Config.MaxBodyBytes, at most 100 keys), every
// request is bounded by the HTTP client's timeout and the caller's context,
// and the package never logs: it returns errors and Keys.StaleCause for the
// caller to report.
//
// # File format
//
// Each document lives in Dir/<hex sha256(kind NUL issuer NUL url)>.json, where
// kind is "discovery" or "jwks":
//
//	{"version":1,"kind":"jwks","issuer":"https://idp/realms/r",
//	 "url":"https://idp/realms/r/protocol/openid-connect/certs",
//	 "fetched_at":"2025-01-02T03:04:05.123Z","body":{"keys":[...]},
//	 "attempted_at":"2025-01-02T03:09:05.456Z",
//	 "last_error":"GET https://idp/...: status 503 Service Unavailable"}
//
// fetched_at and body are those of the last successful fetch (absent when
// every fetch so far failed; the body is stored compacted); attempted_at is
// when the last attempt ended, successful or not; last_error (and
// last_error_kind, naming the sentinel error it matched) say why it failed
// and are absent after a success. Files are replaced
// atomically (a temporary file in Dir, fsync, rename). A file that is not
// valid JSON, or does not match its name, is treated as absent and rewritten.
// The lock for a document is Dir/<same hash>.lock, held with flock(LOCK_EX)
// around "re-read, decide, fetch, write"; lock files are never removed.
package keycache
