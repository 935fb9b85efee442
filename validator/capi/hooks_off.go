//go:build !ojw_testhooks

package main

import "github.com/oauth-jwt/oauth_jwt/validator"

// Production builds have no test triggers: these compile to nothing.
func testHookBegin(validator.Request, validator.Settings) {}
func testHookRun(validator.Request)                       {}

func testHookForceAsync(validator.Request) bool { return false }
