//go:build !linux

package main

import "os"

// isTerminal reports whether v is an *os.File open on a character device
// (the module itself runs on Linux only; this keeps the tool portable).
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
