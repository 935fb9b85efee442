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

func testHookRun(req validator.Request) {
	switch req.Role {
	case rolePanicRun:
		panic("test trigger: panic in the validation goroutine")
	case roleBlockRun:
		select {}
	}
}
