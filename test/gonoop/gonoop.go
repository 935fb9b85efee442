// Command gonoop is the Go floor for the connection benchmarks: the same C
// shim (cshim/oauth_jwt.c) linked with a Go c-archive that implements the
// shim's protocol but judges nothing: every token is accepted, authn_id is
// the requested role. Comparing it with the no-op C validator measures what
// the Go runtime itself costs a backend; comparing oauth_jwt with it
// measures what validation costs. Test use only; never install.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../../validator/capi
#include <stdlib.h>
#include "protocol.h"
*/
import "C"

import (
	"runtime"
	"runtime/debug"
	"unsafe"
)

func init() {
	// The same runtime settings as validator/capi.
	if runtime.NumCPU() > 2 {
		runtime.GOMAXPROCS(2)
	}
	debug.SetMemoryLimit(64 << 20)
}

// OjwBegin accepts at once.
//
//export OjwBegin
func OjwBegin(token, issuer, scope, role *C.char, delegate C.int,
	names, values **C.char, n C.int, fd *C.int, r *C.OjwResult) C.longlong {
	*r = C.OjwResult{authorized: 1, authn_id: C.CString(C.GoString(role)), reason: C.CString("ok")}
	return 0
}

// OjwFinish is never reached: OjwBegin always finishes synchronously.
//
//export OjwFinish
func OjwFinish(h C.longlong, r *C.OjwResult) C.int {
	*r = C.OjwResult{internal_error: 1}
	return 1
}

// OjwFreeResult frees what OjwBegin allocated.
//
//export OjwFreeResult
func OjwFreeResult(r *C.OjwResult) {
	C.free(unsafe.Pointer(r.authn_id))
	C.free(unsafe.Pointer(r.reason))
	*r = C.OjwResult{}
}

// OjwCheckSetting accepts every value.
//
//export OjwCheckSetting
func OjwCheckSetting(name, value *C.char) *C.char { return nil }

func main() {}
