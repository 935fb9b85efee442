// Package trustedfile holds the one rule for every file that decides which
// signing keys oauth_jwt trusts: the key cache (its directory and entries),
// the issuer_config file, the ca_file bundle and the oauth_jwt_fetch helper.
// Whoever can change such a file can make the server accept tokens they
// forged, so each one is checked before every use:
//
//   - it is opened with O_NOFOLLOW (no symbolic link in the last component),
//     O_NONBLOCK (a FIFO or a device at the path cannot block the open) and
//     O_CLOEXEC, and the checks below apply to the open descriptor (fstat),
//     so nothing can swap the file between the check and the use;
//   - it is of the wanted type (a regular file, an executable regular file
//     or a directory; never a FIFO, socket or device), and a regular file is
//     at most Rule.MaxBytes long;
//   - its owner is the server's OS user (the effective uid) or root
//     (Rule.SelfOnly: the server's OS user only);
//   - it is not writable by group or others;
//   - every directory the kernel walks to reach it (each directory above
//     it, and above the target of every symbolic link on the way) is owned
//     by the server's OS user or root and is not writable by group or
//     others, unless it has the sticky bit (as /tmp has): there only the
//     owner of an entry can rename or remove it, so a file or directory of
//     ours in it cannot be swapped (a symbolic link in a sticky directory
//     must then be ours or root's as well).
//
// A file that fails is never used. The error (*Error, matching
// ErrUntrusted or ErrTooLarge) names the file and the fix, in one line.
//
// The functions make raw system calls rather than use *os.File: the module
// calls them on a backend's thread with signals blocked, where an *os.File
// would register with the runtime's network poller and get a finalizer.
// A stalled network mount can still block a system call on the path; no
// open flag avoids that.
package trustedfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

var (
	// ErrUntrusted: the file (or a directory above it) could be changed
	// by someone other than the server's OS user and root, or is not of
	// the wanted type.
	ErrUntrusted = errors.New("untrusted file")
	// ErrTooLarge: a regular file is longer than Rule.MaxBytes.
	ErrTooLarge = errors.New("file too large")
)

// Rule says what one trusted file must be. The zero Rule wants a regular
// file of any size, owned by the server's OS user or root, and checks the
// directories above it.
type Rule struct {
	// What names the file in messages ("issuer configuration file").
	What string
	// Setting is the setting that names the file ("oauth_jwt.ca_file"),
	// for the fix in messages; "" when no setting does.
	Setting string
	// Dir wants a directory instead of a regular file.
	Dir bool
	// Exec wants a regular file that its owner may execute.
	Exec bool
	// MaxBytes bounds the size of a regular file (0: no bound).
	MaxBytes int64
	// SelfOnly refuses files owned by root: only the server's OS user may
	// own it (the key cache, which only the server writes).
	SelfOnly bool
	// ParentsChecked says that the caller has already checked the
	// directories above the file (the key cache checks its directory once
	// per query, not once per entry).
	ParentsChecked bool
}

// Error is a file that must not be used: what is wrong and how to fix it.
type Error struct {
	What    string // Rule.What
	Path    string
	Problem string // "is a symbolic link", "is writable by group or others (mode 0664)"
	Fix     string // what to do, as an imperative fragment; may be ""
	Err     error  // ErrUntrusted or ErrTooLarge
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.What != "" {
		b.WriteString(e.What)
		b.WriteByte(' ')
	}
	b.WriteString(e.Path)
	b.WriteByte(' ')
	b.WriteString(e.Problem)
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Unwrap returns ErrUntrusted or ErrTooLarge.
func (e *Error) Unwrap() error { return e.Err }

func (r Rule) fail(path, problem, fix string) error {
	return &Error{What: r.What, Path: path, Problem: problem, Fix: fix, Err: ErrUntrusted}
}

// useFix is the fix for a file that is not what the setting may name.
func (r Rule) useFix(what string) string {
	if r.Setting != "" {
		return fmt.Sprintf("set %q to %s", r.Setting, what)
	}
	return "replace it with " + what
}

func (r Rule) wants() string {
	switch {
	case r.Dir:
		return "a directory"
	case r.Exec:
		return "an executable regular file"
	}
	return "a regular file"
}

func typeName(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		return "a symbolic link"
	case syscall.S_IFIFO:
		return "a FIFO"
	case syscall.S_IFSOCK:
		return "a socket"
	case syscall.S_IFCHR:
		return "a character device"
	case syscall.S_IFBLK:
		return "a block device"
	case syscall.S_IFDIR:
		return "a directory"
	case syscall.S_IFREG:
		return "a regular file"
	}
	return "of an unknown type"
}

// trustedOwner reports whether uid may own a trusted file or directory.
func trustedOwner(uid uint32, selfOnly bool) bool {
	return int64(uid) == int64(os.Geteuid()) || (!selfOnly && uid == 0)
}

func ownerText(selfOnly bool) string {
	if selfOnly {
		return fmt.Sprintf("the server's OS user (uid %d)", os.Geteuid())
	}
	return fmt.Sprintf("the server's OS user (uid %d) or root", os.Geteuid())
}

// Check applies the rule to st, the fstat of path's open descriptor (or its
// lstat before opening): type, size, owner and mode. It does not look at
// the directories above path (CheckParents does).
func (r Rule) Check(path string, st *syscall.Stat_t) error {
	typ := st.Mode & syscall.S_IFMT
	want := uint32(syscall.S_IFREG)
	if r.Dir {
		want = syscall.S_IFDIR
	}
	if typ != want {
		if typ == syscall.S_IFLNK {
			return r.fail(path, "is a symbolic link", r.useFix("the path of the "+strings.TrimPrefix(r.wants(), "a ")+" itself"))
		}
		return r.fail(path, "is "+typeName(st.Mode)+", not "+r.wants(), r.useFix(r.wants()))
	}
	if !trustedOwner(st.Uid, r.SelfOnly) {
		return r.fail(path, fmt.Sprintf("is owned by uid %d, not by %s", st.Uid, ownerText(r.SelfOnly)),
			fmt.Sprintf("give it to %s (chown)", ownerText(r.SelfOnly)))
	}
	if perm := st.Mode & 0o7777; perm&0o022 != 0 {
		return r.fail(path, fmt.Sprintf("is writable by group or others (mode %04o)", perm),
			"make it writable by its owner only (chmod go-w "+path+")")
	}
	if r.Exec && st.Mode&0o100 == 0 {
		return r.fail(path, fmt.Sprintf("is not executable by its owner (mode %04o)", st.Mode&0o7777),
			"make it executable (chmod u+x "+path+")")
	}
	if !r.Dir && r.MaxBytes > 0 && st.Size > r.MaxBytes {
		return &Error{What: r.What, Path: path, Err: ErrTooLarge,
			Problem: fmt.Sprintf("is %d bytes long, more than the limit of %d bytes", st.Size, r.MaxBytes),
			Fix:     r.useFix("a smaller file")}
	}
	return nil
}

// maxLinks bounds the symbolic links followed while checking a path (as
// the kernel's limit on a path walk does).
const maxLinks = 40

// CheckParents checks every directory the kernel walks to reach path: each
// directory above it and, for every symbolic link on the way, each
// directory above the link's target. See the package documentation for
// the rule. path must be absolute.
func (r Rule) CheckParents(path string) error {
	if !filepath.IsAbs(path) {
		return r.fail(path, "is not an absolute path", r.useFix("an absolute path"))
	}
	links := 0
	_, err := r.walk(path, filepath.Dir(filepath.Clean(path)), &links)
	return err
}

// walk resolves dir component by component from the root, checking every
// directory it passes, and returns the resolved path. file is the path
// whose parents are being checked, for messages.
func (r Rule) walk(file, dir string, links *int) (string, error) {
	cur := "/"
	var st syscall.Stat_t
	if err := lstat(cur, &st); err != nil {
		return "", err
	}
	if err := r.checkDir(file, cur, &st); err != nil {
		return "", err
	}
	for comp := range strings.SplitSeq(dir, "/") {
		if comp == "" || comp == "." {
			continue
		}
		if comp == ".." {
			cur = filepath.Dir(cur) // already checked on the way down
			if err := lstat(cur, &st); err != nil {
				return "", err
			}
			continue
		}
		parentSticky := st.Mode&syscall.S_ISVTX != 0 && st.Mode&0o022 != 0
		next := cur + "/" + comp // cur is clean: no "." or ".." in it
		if cur == "/" {
			next = "/" + comp
		}
		if err := lstat(next, &st); err != nil {
			return "", err
		}
		if st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
			if *links++; *links > maxLinks {
				return "", r.fail(file, "has too many levels of symbolic links above it", r.useFix("a path without a symbolic link loop"))
			}
			if parentSticky && !trustedOwner(st.Uid, false) {
				return "", r.fail(file, fmt.Sprintf("is reached through the symbolic link %s, owned by uid %d in the sticky directory %s: its owner can replace it", next, st.Uid, cur),
					r.useFix("a path whose directories belong to the server's OS user or root"))
			}
			target, err := readlink(next)
			if err != nil {
				return "", err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			resolved, err := r.walk(file, target, links)
			if err != nil {
				return "", err
			}
			cur = resolved
			if err := lstat(cur, &st); err != nil {
				return "", err
			}
			continue
		}
		if err := r.checkDir(file, next, &st); err != nil {
			return "", err
		}
		cur = next
	}
	return cur, nil
}

// checkDir applies the rule for the directories above a trusted file.
func (r Rule) checkDir(file, dir string, st *syscall.Stat_t) error {
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return r.fail(file, fmt.Sprintf("is under %s, which is %s, not a directory", dir, typeName(st.Mode)), "")
	}
	fix := r.useFix("a path whose directories belong to the server's OS user or root and are writable by no one else")
	if !trustedOwner(st.Uid, false) {
		return r.fail(file, fmt.Sprintf("is in directory %s, which is owned by uid %d, not by %s: that user can replace the file", dir, st.Uid, ownerText(false)),
			"give the directory to the server's OS user or root, or "+fix)
	}
	if perm := st.Mode & 0o7777; perm&0o022 != 0 && perm&syscall.S_ISVTX == 0 {
		return r.fail(file, fmt.Sprintf("is in directory %s, which is writable by group or others (mode %04o): they can replace the file", dir, perm),
			"chmod go-w "+dir+" (or make it sticky, chmod +t), or "+fix)
	}
	return nil
}

func lstat(path string, st *syscall.Stat_t) error {
	err := ignoringEINTR(func() error { return syscall.Lstat(path, st) })
	if err != nil {
		return &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	return nil
}

func readlink(path string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := syscall.Readlink(path, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: path, Err: err}
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= 4096 {
			return "", &fs.PathError{Op: "readlink", Path: path, Err: syscall.ENAMETOOLONG}
		}
		buf = make([]byte, 2*len(buf))
	}
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

// Open checks the directories above path (unless ParentsChecked), opens
// path read-only with O_NOFOLLOW, O_NONBLOCK and O_CLOEXEC, and applies the
// rule to the open descriptor. The caller closes fd. An error either
// matches ErrUntrusted or ErrTooLarge (an *Error) or is an *fs.PathError
// (matching fs.ErrNotExist when the file is missing).
func (r Rule) Open(path string) (fd int, st syscall.Stat_t, err error) {
	if !r.ParentsChecked {
		if err := r.CheckParents(path); err != nil {
			return -1, st, err
		}
	}
	// Look before opening: opening a device may have effects of its own.
	if err := lstat(path, &st); err != nil {
		return -1, st, err
	}
	if err := r.Check(path, &st); err != nil {
		return -1, st, err
	}
	flags := syscall.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	if r.Dir {
		flags |= syscall.O_DIRECTORY
	}
	err = ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(path, flags, 0)
		return err
	})
	if err == syscall.ELOOP {
		return -1, st, r.fail(path, "is a symbolic link", r.useFix("the path of the "+strings.TrimPrefix(r.wants(), "a ")+" itself"))
	}
	if err != nil {
		return -1, st, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return -1, st, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := r.Check(path, &st); err != nil {
		syscall.Close(fd)
		return -1, st, err
	}
	return fd, st, nil
}

// Read opens path as Open does and returns its contents: a regular file
// of at most MaxBytes (when set).
func (r Rule) Read(path string) ([]byte, error) {
	if r.Dir {
		return nil, errors.New("trustedfile: Read of a directory")
	}
	fd, st, err := r.Open(path)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	// One byte more than fstat saw shows a file that grew meanwhile.
	size := st.Size + 1
	if r.MaxBytes > 0 {
		size = min(size, r.MaxBytes+1)
	}
	buf := make([]byte, size)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	if r.MaxBytes > 0 && int64(n) > r.MaxBytes {
		return nil, &Error{What: r.What, Path: path, Err: ErrTooLarge,
			Problem: fmt.Sprintf("is more than the limit of %d bytes long", r.MaxBytes),
			Fix:     r.useFix("a smaller file")}
	}
	if int64(n) > st.Size {
		// It grew while being read: read what fstat promised at most.
		n = int(st.Size)
	}
	return buf[:n], nil
}
