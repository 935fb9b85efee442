package validator

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// readTrustedFile reads a file whose contents decide what is trusted (a
// key file, a client secret): at most max bytes, or an error that says
// what is wrong with it. It is the one place that knows the rules, so
// that every trusted file gets the same ones.
//
// TODO(w-files): replace the body with the shared trusted-file function
// of branch w-files once it is committed there.
var readTrustedFile = readTrustedFileLocal

// readTrustedFileLocal opens path without following a symbolic link and
// without blocking (a FIFO must not hang a login), checks the opened file
// itself (fstat: regular, owned by the server's OS user or root, not
// writable by group or others, at most max bytes) and every directory
// above it (owned by the server's user or root, not writable by others
// unless sticky), then reads it.
func readTrustedFileLocal(path string, max int64) ([]byte, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%q is not an absolute path", path)
	}
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err == syscall.ELOOP {
		return nil, fmt.Errorf("it is a symbolic link; name the file itself")
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open it: %w", err)
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("cannot stat it: %w", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, fmt.Errorf("it is not a regular file")
	}
	euid := uint32(os.Geteuid())
	if st.Uid != euid && st.Uid != 0 {
		return nil, fmt.Errorf("it is owned by uid %d, neither the server's OS user (uid %d) nor root", st.Uid, euid)
	}
	if perm := st.Mode & 0o777; perm&0o022 != 0 {
		return nil, fmt.Errorf("it is writable by group or others (mode %04o); it must be writable only by its owner", perm)
	}
	if st.Size > max {
		return nil, fmt.Errorf("it is larger than %d bytes (%d)", max, st.Size)
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		var ds syscall.Stat_t
		if err := syscall.Stat(dir, &ds); err != nil {
			return nil, fmt.Errorf("cannot stat its directory %q: %w", dir, err)
		}
		if ds.Uid != euid && ds.Uid != 0 {
			return nil, fmt.Errorf("its directory %q is owned by uid %d, neither the server's OS user nor root", dir, ds.Uid)
		}
		if ds.Mode&0o002 != 0 && ds.Mode&syscall.S_ISVTX == 0 {
			return nil, fmt.Errorf("its directory %q is writable by others", dir)
		}
		if dir == "/" {
			break
		}
	}
	buf := make([]byte, st.Size+1)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read it: %w", err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	if int64(n) > max {
		return nil, fmt.Errorf("it is larger than %d bytes", max)
	}
	return buf[:n], nil
}
