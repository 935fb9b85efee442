// Command capi is the cgo export layer of oauth_jwt, built with
// -buildmode=c-archive and linked into oauth_jwt.so by the C shim
// (cshim/oauth_jwt.c). It only converts between C and Go and runs the
// validator off the caller's thread; every rule lives in package validator.
//
// Protocol (all calls made by the shim with asynchronous signals blocked):
//
//	h = OjwBegin(..., &fd, &r)
//	  h == 0: finished synchronously, r holds the result.
//	  h  > 0: pending; the shim waits (interruptibly, signals unblocked)
//	          until fd is readable, then calls OjwFinish(h, &r).
//	  h  < 0: failed; r holds an internal error.
//	OjwFreeResult(&r) releases what Go allocated in r (with C malloc).
//
// OjwBegin first validates on the caller's thread with the network
// forbidden (Request.CacheOnly): with a warm key cache that is the whole
// login, with no goroutine hand-off and no extra thread. Only when the keys
// need a fetch does it start a goroutine and hand back a descriptor; the
// goroutine runs the oauth_jwt_fetch helper (fetch.go), which does the
// network part in its own process, then judges again from the cache. No
// network call ever runs in the backend, let alone with signals blocked.
//
// Nothing here may panic into C: every export and every goroutine recovers,
// and a recovered panic becomes an internal error, never "authorized".
package main

/*
#include <stdlib.h>
#include "protocol.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/oauth-jwt/oauth_jwt/validator"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
	"golang.org/x/sys/unix"
)

const (
	// maxProcs bounds the runtime's parallelism inside one backend: one
	// validation per connection, and the network path is I/O-bound. The
	// runtime has already set up one P per CPU when init runs, so lowering
	// it saves little memory; but the call stops the world and starts a
	// thread (about 2% of a login's CPU under perf on 2 cores), so it is
	// made only where the machine has more CPUs than this bound. In a
	// backend the shim starts the runtime on one CPU, so it is 1 there.
	maxProcs = 2
	// memoryLimit is a soft heap limit for the runtime in one backend.
	memoryLimit = 64 << 20
)

func init() {
	// Configuration is explicit: the environment does not reach a backend.
	if runtime.GOMAXPROCS(0) > maxProcs {
		runtime.GOMAXPROCS(maxProcs)
	}
	debug.SetMemoryLimit(memoryLimit)
}

// growStack makes the callback goroutine's stack big enough for a whole
// validation while it is shallow. A call from C runs on a goroutine whose
// stack starts at 4 kB; a validation needs about 32 kB, and growing there in
// steps (4, 8, 16, 32 kB) copies the stack three times, deeper each time.
// One early growth was measured to save about 55 us of a fresh backend's
// first validation (of ~460). The stack stays grown for the next call.
//
//go:noinline
func growStack() byte {
	var buf [16 << 10]byte
	buf[stackSink] = 1
	return buf[len(buf)-1-stackSink]
}

// stackSink keeps growStack's buffer from being optimised away.
var stackSink int

// outcome is a finished validation.
type outcome struct {
	res validator.Result
	err error
}

// pending is a validation running in a goroutine.
type pending struct {
	done   chan struct{}
	out    outcome
	rfd    int
	wfd    int
	cancel context.CancelFunc
}

var (
	mu       sync.Mutex
	next     int64
	inflight = map[int64]*pending{}
)

// OjwBegin starts validating one token. See the package comment.
//
//export OjwBegin
func OjwBegin(token, issuer, scope, role *C.char, delegate C.int,
	names, values **C.char, n C.int, fd *C.int, r *C.OjwResult) (h C.longlong) {
	defer func() {
		if p := recover(); p != nil {
			fillInternal(r, fmt.Sprintf("panic while starting validation: %v", p))
			h = -1
		}
	}()
	growStack()

	// Copy everything out of C memory before returning.
	req := validator.Request{
		Token:    C.GoString(token),
		Issuer:   C.GoString(issuer),
		Scope:    C.GoString(scope),
		Role:     C.GoString(role),
		Delegate: delegate != 0,
	}
	settings := make(validator.Settings, int(n))
	nameSlice := unsafe.Slice(names, int(n))
	valueSlice := unsafe.Slice(values, int(n))
	for i := range nameSlice {
		settings[C.GoString(nameSlice[i])] = C.GoString(valueSlice[i])
	}
	// The shim reads the requested role's attributes from pg_authid for
	// every delegated login; without them no role may be granted.
	if req.Delegate {
		raw, ok := settings[validator.ServerRolePrivileges]
		if !ok {
			fillInternal(r, "the shim did not pass "+validator.ServerRolePrivileges)
			return -1
		}
		priv, err := validator.ParseRolePrivileges(raw)
		if err != nil {
			fillInternal(r, "cannot read "+validator.ServerRolePrivileges+": "+err.Error())
			return -1
		}
		req.RolePrivileges = priv
	}
	testHookBegin(req, settings)

	// The cache-only attempt cannot wait on anything a deadline would cut
	// short (no network, no lock waits), so it runs without one: a timer
	// made and stopped in every fresh backend cost about 9 us of a warm
	// login. The deadline of the fetch path counts from here all the same.
	deadline := time.Now().Add(overallTimeout(settings))
	if !testHookForceAsync(req) {
		out := validateOnce(context.Background(), settings, req, nil, nil)
		if !errors.Is(out.err, keycache.ErrNeedsNetwork) {
			fillOutcome(r, out)
			return 0
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)

	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		cancel()
		fillInternal(r, "cannot create a pipe: "+err.Error())
		return -1
	}
	pd := &pending{done: make(chan struct{}), rfd: p[0], wfd: p[1], cancel: cancel}
	go run(ctx, pd, settings, req)

	mu.Lock()
	next++
	id := next
	inflight[id] = pd
	mu.Unlock()
	*fd = C.int(pd.rfd)
	return C.longlong(id)
}

// OjwFinish collects the result of a pending validation whose descriptor
// became readable. It always fills r; on any inconsistency with an internal
// error. It returns 0 on success.
//
//export OjwFinish
func OjwFinish(h C.longlong, r *C.OjwResult) (rc C.int) {
	defer func() {
		if p := recover(); p != nil {
			fillInternal(r, fmt.Sprintf("panic while collecting the result: %v", p))
			rc = 1
		}
	}()
	mu.Lock()
	pd := inflight[int64(h)]
	delete(inflight, int64(h))
	mu.Unlock()
	if pd == nil {
		fillInternal(r, "no validation is pending under this handle")
		return 1
	}
	select {
	case <-pd.done:
	default:
		// The shim waits for the descriptor, which is written only after
		// done is closed; this cannot happen unless the protocol is broken.
		fillInternal(r, "validation result collected before it was ready")
		return 1
	}
	finish(pd, r)
	return 0
}

// OjwFreeResult frees what Go allocated in r and zeroes it.
//
//export OjwFreeResult
func OjwFreeResult(r *C.OjwResult) {
	defer func() { _ = recover() }()
	if r == nil {
		return
	}
	C.free(unsafe.Pointer(r.authn_id))
	C.free(unsafe.Pointer(r.reason))
	if r.logs != nil {
		logs := unsafe.Slice(r.logs, int(r.nlogs))
		for i := range logs {
			C.free(unsafe.Pointer(logs[i].message))
			C.free(unsafe.Pointer(logs[i].detail))
		}
		C.free(unsafe.Pointer(r.logs))
	}
	*r = C.OjwResult{}
}

// OjwCheckSetting checks the value of one setting with the validator's
// own parser (validator.CheckSetting), for the shim's GUC check hooks. It
// returns NULL when the value is valid, else what is wrong as a sentence,
// allocated with C malloc: the caller frees it.
//
//export OjwCheckSetting
func OjwCheckSetting(name, value *C.char) (msg *C.char) {
	defer func() {
		if p := recover(); p != nil {
			msg = C.CString(fmt.Sprintf("Internal error while checking the value: %v.", p))
		}
	}()
	err := validator.CheckSetting(C.GoString(name), C.GoString(value))
	if err == nil {
		return nil
	}
	text := err.Error()
	var ce *validator.ConfigError
	if errors.As(err, &ce) {
		text = ce.Msg
	}
	return C.CString(capitalize(text) + ".")
}

// run validates in its own goroutine and signals completion on the pipe.
func run(ctx context.Context, pd *pending, settings validator.Settings, req validator.Request) {
	defer func() {
		if p := recover(); p != nil {
			pd.out = outcome{err: fmt.Errorf("panic during validation: %v", p)}
		}
		pd.cancel()
		close(pd.done)
		_, _ = unix.Write(pd.wfd, []byte{1})
	}()
	testHookRun(req)
	pd.out = validateWithFetch(ctx, settings, req)
}

// maxFetchRounds bounds the helper runs for one login: a cold cache needs
// one (discovery and JWKS); an unknown kid, or a document that went stale
// while the helper refreshed the other one, may need another.
const maxFetchRounds = 3

// validateWithFetch judges req from the cache; whenever the cache needs a
// fetch, it runs the fetch helper for that query and judges again.
func validateWithFetch(ctx context.Context, settings validator.Settings, req validator.Request) outcome {
	var after *fetched
	var answer *introspected
	for round := 1; ; round++ {
		out := validateOnce(ctx, settings, req, after, answer)
		var ni *validator.NeedsIntrospectionError
		if errors.As(out.err, &ni) {
			if answer != nil {
				// The answer is supplied from now on; asking again would
				// mean a broken validator, not a slow endpoint.
				return outcome{err: errors.New("the validator asked for introspection again after the helper answered")}
			}
			a, err := runIntrospectHelper(ctx, settings, req)
			answer = &introspected{answer: a, err: err}
			round--
			continue
		}
		var nn *keycache.NeedsNetworkError
		if !errors.As(out.err, &nn) {
			return out
		}
		keys, err := runFetchHelper(ctx, settings, nn.Query)
		after = &fetched{query: nn.Query, err: err, keys: keys, last: round == maxFetchRounds}
	}
}

// validateOnce builds a validator from the settings and judges req from
// the key cache alone (no network in the backend). after, when set, is the
// outcome of the fetch helper's last run.
func validateOnce(ctx context.Context, settings validator.Settings, req validator.Request, after *fetched, answer *introspected) outcome {
	var opts []validator.Option
	if answer != nil {
		opts = append(opts, validator.WithIntrospectionAnswer(answer.answer, answer.err))
	}
	if after != nil {
		opts = append(opts, validator.WithKeySourceWrapper(func(src keycache.Source) keycache.Source {
			return afterFetch{src: src, last: after}
		}))
	}
	v, err := validator.New(settings, opts...)
	if err != nil {
		return outcome{err: err}
	}
	req.CacheOnly = true
	res, err := v.Validate(ctx, req)
	return outcome{res: res, err: err}
}

// fetched is what one run of the fetch helper did for query.
type fetched struct {
	query keycache.Query
	err   error
	keys  *keycache.Keys // keys the helper could not store, for this login only
	last  bool           // no further run is allowed
}

// afterFetch is the key cache as seen right after the helper ran. When the
// cache still needs a fetch for the query the helper just ran, and the
// helper failed without recording why (on its deadline, for one), the
// helper's error is the answer; when it fetched keys it could not store,
// they are. When the helper succeeded, the other
// document may have gone stale meanwhile: another round, unless this was
// the last.
type afterFetch struct {
	src  keycache.Source
	last *fetched
}

func (a afterFetch) Keys(ctx context.Context, q keycache.Query) (keycache.Keys, error) {
	keys, err := a.src.Keys(ctx, q)
	var nn *keycache.NeedsNetworkError
	if !errors.As(err, &nn) {
		return keys, err
	}
	if nn.Query == a.last.query && a.last.err != nil {
		return keycache.Keys{}, a.last.err
	}
	if a.last.keys != nil && sameIssuerQuery(nn.Query, a.last.query) {
		// The cache directory is not writable: the keys the helper just
		// fetched (and the validator checks the token against) serve
		// this login; Keys.Unstored makes the validator warn. They are
		// also the answer to an unknown kid: they were fetched just now.
		return *a.last.keys, nil
	}
	if a.last.last {
		return keycache.Keys{}, fmt.Errorf("%w: the keys of issuer %q still need a fetch after %d runs of %s",
			keycache.ErrUnavailable, q.Issuer, maxFetchRounds, HelperName)
	}
	return keycache.Keys{}, err
}

// sameIssuerQuery reports whether a and b ask for the same key set, an
// unknown kid aside.
func sameIssuerQuery(a, b keycache.Query) bool {
	a.MissingKID, b.MissingKID = "", ""
	return a == b
}

// finish copies the outcome into r and releases the pipe.
func finish(pd *pending, r *C.OjwResult) {
	unix.Close(pd.rfd)
	unix.Close(pd.wfd)
	fillOutcome(r, pd.out)
}

// fillOutcome copies an outcome into r; an error is an internal failure.
func fillOutcome(r *C.OjwResult, out outcome) {
	res := out.res
	if out.err != nil {
		// Keep what the validator explained, then say why it failed.
		res.Authorized = false
		res.Logs = append(res.Logs, validator.LogRecord{
			Level:   validator.LevelLog,
			Message: "validator failed",
			Detail:  capitalize(out.err.Error()) + ".",
		})
		if res.Reason == "" || res.Reason == validator.ReasonOK {
			res.Reason = validator.ReasonInternal
		}
	}
	fill(r, res, out.err != nil)
}

func fillInternal(r *C.OjwResult, why string) {
	fill(r, validator.Result{
		Reason: validator.ReasonInternal,
		Logs: []validator.LogRecord{{
			Level:   validator.LevelLog,
			Message: "validator failed",
			Detail:  capitalize(why) + ".",
		}},
	}, true)
}

func fill(r *C.OjwResult, res validator.Result, internal bool) {
	OjwFreeResult(r)
	r.authorized = boolInt(res.Authorized && !internal)
	r.internal_error = boolInt(internal)
	if res.AuthnID != "" {
		r.authn_id = C.CString(res.AuthnID)
	}
	r.reason = C.CString(string(res.Reason))
	if len(res.Logs) == 0 {
		return
	}
	size := C.size_t(len(res.Logs)) * C.size_t(unsafe.Sizeof(C.OjwLog{}))
	r.logs = (*C.OjwLog)(C.calloc(1, size))
	r.nlogs = C.int(len(res.Logs))
	logs := unsafe.Slice(r.logs, len(res.Logs))
	for i, l := range res.Logs {
		// Log lines stay lines: the texts of errors (the fetch helper's
		// output among them) are escaped as the validator's own are.
		logs[i].level = C.int(l.Level)
		logs[i].message = C.CString(validator.EscapeLogText(l.Message))
		logs[i].detail = C.CString(validator.EscapeLogText(l.Detail))
	}
}

// overallTimeout bounds a whole validation by authentication_timeout.
func overallTimeout(s validator.Settings) time.Duration {
	if secs, err := strconv.Atoi(s["server.authentication_timeout"]); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	return time.Minute
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

func main() {}

// OjwPolicyKeys returns the number of per-issuer policy keys and stores in
// *names a C array of them (malloc'd, never freed: the shim asks once per
// process and registers them as pg_hba options on PostgreSQL 19). Returns
// -1 (and *names NULL) if anything goes wrong.
//
//export OjwPolicyKeys
func OjwPolicyKeys(names ***C.char) (n C.int) {
	defer func() {
		if p := recover(); p != nil {
			*names = nil
			n = -1
		}
	}()
	keys := validator.PolicyKeys()
	arr := (**C.char)(C.malloc(C.size_t(len(keys)+1) * C.size_t(unsafe.Sizeof(uintptr(0)))))
	s := unsafe.Slice(arr, len(keys)+1)
	for i, k := range keys {
		s[i] = C.CString(k)
	}
	s[len(keys)] = nil
	*names = arr
	return C.int(len(keys))
}
