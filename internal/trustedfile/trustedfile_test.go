package trustedfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobody is a uid that is neither root nor the test's.
const nobody = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this case gives files to another user (chown): run the tests as root")
	}
}

func write(t *testing.T, path string, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	// syscall.Chmod: os.Chmod takes the sticky bit as os.ModeSticky.
	if err := syscall.Chmod(path, uint32(mode)); err != nil {
		t.Fatal(err)
	}
}

// Every way a file can fail the rule, then the files that pass. Each case
// builds its file under a fresh private directory and reads it with rule.
func TestRead(t *testing.T) {
	rule := Rule{What: "test file", Setting: "oauth_jwt.test_file", MaxBytes: 100}
	cases := []struct {
		name  string
		root  bool // needs root (chown)
		rule  *Rule
		setup func(t *testing.T, dir string) string // returns the path to read
		want  error                                 // nil: the read succeeds
		text  string                                // in the error, or the content read
	}{
		{name: "owned by another user", root: true, setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			write(t, p, "x", 0o600)
			if err := os.Chown(p, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			return p
		}, want: ErrUntrusted, text: "is owned by uid 65534, not by the server's OS user"},
		{name: "mode 0664", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			write(t, p, "x", 0o664)
			return p
		}, want: ErrUntrusted, text: "is writable by group or others (mode 0664); make it writable by its owner only (chmod go-w "},
		{name: "mode 0646", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			write(t, p, "x", 0o646)
			return p
		}, want: ErrUntrusted, text: "(mode 0646)"},
		{name: "symbolic link", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			write(t, p+".real", "x", 0o600)
			if err := os.Symlink(p+".real", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, want: ErrUntrusted, text: `is a symbolic link; set "oauth_jwt.test_file" to the path of the regular file itself`},
		{name: "FIFO", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, want: ErrUntrusted, text: "is a FIFO, not a regular file"},
		{name: "character device", setup: func(t *testing.T, dir string) string { return "/dev/zero" },
			want: ErrUntrusted, text: "/dev/zero is a character device, not a regular file"},
		{name: "directory", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			mkdir(t, p, 0o700)
			return p
		}, want: ErrUntrusted, text: "is a directory, not a regular file"},
		{name: "oversized", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			write(t, p, strings.Repeat("x", 101), 0o600)
			return p
		}, want: ErrTooLarge, text: "is 101 bytes long, more than the limit of 100 bytes"},
		{name: "not executable", rule: &Rule{Exec: true}, setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			write(t, p, "x", 0o644)
			return p
		}, want: ErrUntrusted, text: "is not executable by its owner (mode 0644)"},
		{name: "parent directory 0777, not sticky", setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "d")
			mkdir(t, d, 0o777)
			p := filepath.Join(d, "f")
			write(t, p, "x", 0o600)
			return p
		}, want: ErrUntrusted, text: "which is writable by group or others (mode 0777): they can replace the file"},
		{name: "parent directory 0775", setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "d")
			mkdir(t, d, 0o775)
			p := filepath.Join(d, "f")
			write(t, p, "x", 0o600)
			return p
		}, want: ErrUntrusted, text: "(mode 0775)"},
		{name: "grandparent directory 0777", setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "d")
			mkdir(t, d, 0o777)
			mkdir(t, filepath.Join(d, "e"), 0o700)
			p := filepath.Join(d, "e", "f")
			write(t, p, "x", 0o600)
			return p
		}, want: ErrUntrusted, text: "/d, which is writable by group or others"},
		{name: "parent directory owned by another user", root: true, setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "d")
			mkdir(t, d, 0o755)
			p := filepath.Join(d, "f")
			write(t, p, "x", 0o600)
			if err := os.Chown(d, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			return p
		}, want: ErrUntrusted, text: "which is owned by uid 65534"},
		{name: "symbolic link above it to a directory others can write", setup: func(t *testing.T, dir string) string {
			open := filepath.Join(dir, "open")
			mkdir(t, open, 0o777)
			write(t, filepath.Join(open, "f"), "x", 0o600)
			if err := os.Symlink(open, filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "link", "f")
		}, want: ErrUntrusted, text: "/open, which is writable by group or others"},
		{name: "relative symbolic link above it to a directory others can write", setup: func(t *testing.T, dir string) string {
			open := filepath.Join(dir, "open")
			mkdir(t, open, 0o777)
			mkdir(t, filepath.Join(open, "sub"), 0o700)
			write(t, filepath.Join(open, "sub", "f"), "x", 0o600)
			if err := os.Symlink("open/sub", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "link", "f")
		}, want: ErrUntrusted, text: "/open, which is writable by group or others"},
		{name: "symbolic link loop above it", setup: func(t *testing.T, dir string) string {
			if err := os.Symlink("b", filepath.Join(dir, "a")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("a", filepath.Join(dir, "b")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "a", "f")
		}, want: ErrUntrusted, text: "too many levels of symbolic links"},
		{name: "another user's symbolic link in a sticky directory", root: true, setup: func(t *testing.T, dir string) string {
			sticky := filepath.Join(dir, "sticky")
			mkdir(t, sticky, 0o1777)
			mkdir(t, filepath.Join(dir, "real"), 0o700)
			write(t, filepath.Join(dir, "real", "f"), "x", 0o600)
			link := filepath.Join(sticky, "link")
			if err := os.Symlink(filepath.Join(dir, "real"), link); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(link, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(link, "f")
		}, want: ErrUntrusted, text: "owned by uid 65534 in the sticky directory"},
		{name: "relative path", setup: func(t *testing.T, dir string) string { return "f" },
			want: ErrUntrusted, text: "is not an absolute path"},
		{name: "missing", setup: func(t *testing.T, dir string) string { return filepath.Join(dir, "none") },
			want: os.ErrNotExist, text: "no such file or directory"},

		// The files that pass.
		{name: "happy path", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			write(t, p, "content", 0o600)
			return p
		}, text: "content"},
		{name: "mode 0644 at the size limit", setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			write(t, p, strings.Repeat("y", 100), 0o644)
			return p
		}, text: strings.Repeat("y", 100)},
		{name: "in a sticky directory writable by all (as /tmp)", setup: func(t *testing.T, dir string) string {
			d := filepath.Join(dir, "tmp")
			mkdir(t, d, 0o1777)
			p := filepath.Join(d, "f")
			write(t, p, "sticky", 0o600)
			return p
		}, text: "sticky"},
		{name: "through a symbolic link to a safe directory", setup: func(t *testing.T, dir string) string {
			mkdir(t, filepath.Join(dir, "real"), 0o755)
			write(t, filepath.Join(dir, "real", "f"), "linked", 0o600)
			if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "link", "f")
		}, text: "linked"},
		{name: "owned by root", root: true, setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			write(t, p, "root's", 0o644)
			if err := os.Chown(p, 0, 0); err != nil {
				t.Fatal(err)
			}
			return p
		}, text: "root's"},
		{name: "executable", rule: &Rule{Exec: true}, setup: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			write(t, p, "#!/bin/sh\n", 0o755)
			return p
		}, text: "#!/bin/sh\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				needRoot(t)
			}
			dir := t.TempDir()
			path := tc.setup(t, dir)
			r := rule
			if tc.rule != nil {
				r = *tc.rule
			}
			data, err := r.Read(path)
			if tc.want == nil {
				if err != nil || string(data) != tc.text {
					t.Fatalf("Read = %q, %v; want %q", data, err, tc.text)
				}
				return
			}
			if err == nil {
				t.Fatalf("Read = %q, nil; want an error matching %v", data, tc.want)
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Read error %q (matches %v: %v); want it to match %v and contain %q",
					err, tc.want, errors.Is(err, tc.want), tc.want, tc.text)
			}
			if tc.want == ErrUntrusted && !strings.HasPrefix(err.Error(), r.What) {
				t.Errorf("error %q does not start by naming the file (%q)", err, r.What)
			}
		})
	}
}

// A directory is checked as a file is, with its own type.
func TestOpenDirectory(t *testing.T) {
	r := Rule{What: "cache directory", Dir: true, SelfOnly: true}
	dir := t.TempDir()
	for _, tc := range []struct {
		name, path string
		mode       os.FileMode
		want       string
	}{
		{"writable by others", filepath.Join(dir, "open"), 0o777, "is writable by group or others (mode 0777)"},
		{"private", filepath.Join(dir, "private"), 0o700, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mkdir(t, tc.path, tc.mode)
			fd, _, err := r.Open(tc.path)
			if err == nil {
				syscall.Close(fd)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Open: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Open error %v; want one containing %q", err, tc.want)
			}
		})
	}
	f := filepath.Join(dir, "file")
	write(t, f, "x", 0o600)
	if _, _, err := r.Open(f); err == nil || !strings.Contains(err.Error(), "is a regular file, not a directory") {
		t.Fatalf("Open of a regular file as a directory: %v", err)
	}
}
