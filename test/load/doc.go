// Package load holds oauth_jwt's load and soak tests (issue 6, "Under load
// and under fire"): real PostgreSQL 18 clusters on loopback with the
// production build of the module, the test identity provider, and pgx
// clients.
//
//   - TestConnectionChurnLoad: OJW_LOAD_CLIENTS (default 100) oauth_jwt
//     clients connect, run a query and disconnect in a loop for
//     OJW_LOAD_DURATION (default 60s), beside OJW_LOAD_PEER_CLIENTS (default
//     20) scram-sha-256 clients and as many clients of the no-op C validator,
//     all in the same run against the same server. It asserts zero failed
//     logins, no backend crash (postmaster pid unchanged, no crash lines in
//     the log) and identity-provider requests within the cache bound (one
//     discovery and one JWKS request per cache_refresh_interval,
//     OJW_LOAD_REFRESH, default 15s, plus the cold start), and reports
//     connections per second and p50/p99 connect latency per kind.
//   - TestSoak: OJW_SOAK_SESSIONS (default 20) long-lived oauth_jwt sessions
//     run a query every 500 ms while OJW_SOAK_CHURN (default 4) clients log
//     in and out (and one more presents expired tokens) for
//     OJW_SOAK_DURATION (default 5m: two of the Go runtime's forced
//     collections, at about 2 and 4 minutes). The long-lived backends'
//     private dirty memory must not grow, and their thread counts must not
//     change except for one thread the first forced collection may add.
//
// The defaults meet the minimums and the package finishes in about
// seven minutes on two cores. OJW_LOAD_OUT and OJW_SOAK_OUT name JSON files
// for the results (scripts/report.sh sets them and builds docs/report.md).
//
//	OJW_PG_CONFIG=... OJW_BUILD_DIR=$PWD/build/<major> go test -count=1 -v -timeout 20m ./test/load/
package load
