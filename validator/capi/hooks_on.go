//go:build ojw_testhooks

package main

import "github.com/oauth-jwt/oauth_jwt/validator"

// Test builds only (go build -tags ojw_testhooks, used by `make test`):
// the requested role name triggers a fault, so the integration tests can
// prove that a panic inside Go becomes a logged internal error and that the
// shim's wait stays interruptible. Production builds never contain these.
const (
	rolePanicBegin = "ojw_test_panic_begin" // panic in the export itself
	rolePanicRun   = "ojw_test_panic"       // panic in the validation goroutine
	roleBlockRun   = "ojw_test_block"       // validation never finishes
)

func testHookBegin(req validator.Request) {
	if req.Role == rolePanicBegin {
		panic("test trigger: panic in OjwBegin")
	}
}

// testHookForceAsync sends the goroutine triggers down the asynchronous
// path even when the token could be judged from the cache.
func testHookForceAsync(req validator.Request) bool {
	return req.Role == rolePanicRun || req.Role == roleBlockRun
}

func testHookRun(req validator.Request) {
	switch req.Role {
	case rolePanicRun:
		panic("test trigger: panic in the validation goroutine")
	case roleBlockRun:
		select {}
	}
}
