package keycache

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// What the fetch helper reports must come back, in the backend, as the same
// text matching the same sentinel, so the validator gives the same reason
// code as if the fetch had run in the backend.
func TestWireKindRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind string
		want error
	}{
		{fmt.Errorf("keycache: %w: dir is writable", ErrInsecureCache), "insecure_cache", ErrInsecureCache},
		{fmt.Errorf("jwks_uri: %w", ErrInsecureURL), "insecure_url", ErrInsecureURL},
		{fmt.Errorf("%w: no usable JWKS: %w", ErrUnavailable, ErrDiscoveryMismatch), "discovery_mismatch", ErrDiscoveryMismatch},
		{fmt.Errorf("%w: GET x: %w", ErrUnavailable, ErrTooLarge), "too_large", ErrTooLarge},
		{fmt.Errorf("%w: waiting: %w", ErrUnavailable, context.DeadlineExceeded), "unavailable", ErrUnavailable},
		{fmt.Errorf("GET x: %w", context.DeadlineExceeded), "timeout", context.DeadlineExceeded},
		{context.Canceled, "canceled", context.Canceled},
		{errors.New("something else"), "", nil},
	} {
		kind := WireKind(tc.err)
		if kind != tc.kind {
			t.Errorf("WireKind(%q) = %q, want %q", tc.err, kind, tc.kind)
		}
		back := FromWireKind(tc.err.Error(), kind)
		if back.Error() != tc.err.Error() {
			t.Errorf("text %q came back as %q", tc.err, back)
		}
		if tc.want != nil && !errors.Is(back, tc.want) {
			t.Errorf("%q came back not matching %v", tc.err, tc.want)
		}
		for _, k := range errorKinds {
			if k.sentinel != tc.want && errors.Is(back, k.sentinel) {
				t.Errorf("%q came back matching %v as well", tc.err, k.sentinel)
			}
		}
	}
	// The cache file keeps only its own kinds.
	if k := errorKind(fmt.Errorf("%w", ErrUnavailable)); k != "" {
		t.Errorf("errorKind recorded %q for the file", k)
	}
	if err := recordedError("", "unavailable"); errors.Is(err, ErrUnavailable) || err.Error() != "no cached copy" {
		t.Errorf("recordedError rebuilt %v", err)
	}
}
