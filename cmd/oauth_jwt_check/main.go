// Command oauth_jwt_check tells why the oauth_jwt validator module accepts
// or refuses a bearer token, and whether an identity provider is set up the
// way PostgreSQL and psql need. It is built from the module's own Go
// validation code (package validator): the checks it shows, their reason
// codes and hints are the server's.
//
// Usage:
//
//	oauth_jwt_check token [flags] [FILE]
//	oauth_jwt_check issuer [flags] URL
//
// "token" reads the token from FILE or standard input, never from the
// command line (where shell history and process lists keep it). It takes
// the server's settings from --config postgresql.conf and --set
// name=value, the pg_hba.conf line from --hba FILE [--hba-line N] or
// --issuer URL [--scope S] [--delegate], and the role asked for from
// --role. It prints the decoded header and claims (never the token or its
// signature), every check the server runs with the values compared, the
// reason code, a hint, the identity and role decision, and the log records
// the server would write.
//
// "issuer" fetches the discovery document and key set of an issuer with
// the module's HTTP client rules and says what the server and psql will
// see.
//
// Both print text for a terminal (colour only when standard output is a
// terminal and NO_COLOR is not set) or, with --json, a JSON document for
// scripts.
//
// Exit status: 0 the token would be accepted (the issuer is fine); 1 it
// would be refused (the issuer has problems), including refusals because
// of the server's configuration; 2 usage errors and failures of the tool
// itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"
)

// Exit statuses.
const (
	exitOK       = 0
	exitRejected = 1
	exitUsage    = 2
)

// env is the outside world of one run: injected for tests.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	now    func() time.Time
	// isTerminal reports whether a stream is a terminal.
	isTerminal func(any) bool
	// tempDir is where private key caches are made ("" = os.TempDir()).
	tempDir string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	e := &env{
		ctx:        ctx,
		stdin:      os.Stdin,
		stdout:     os.Stdout,
		stderr:     os.Stderr,
		getenv:     os.Getenv,
		now:        time.Now,
		isTerminal: isTerminal,
	}
	code := run(e, os.Args[1:])
	stop()
	os.Exit(code)
}

const usageText = `usage:
  oauth_jwt_check token  [flags] [FILE]   explain the verdict on a token read from FILE or stdin
  oauth_jwt_check issuer [flags] URL      check an issuer's discovery document and keys

Run "oauth_jwt_check token -h" or "oauth_jwt_check issuer -h" for the flags.
`

// run executes one command line and returns the exit status.
func run(e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usageText)
		return exitUsage
	}
	switch args[0] {
	case "token":
		return cmdToken(e, args[1:])
	case "issuer":
		return cmdIssuer(e, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(e.stdout, usageText)
		return exitOK
	}
	if looksLikeToken(args[0]) {
		fmt.Fprintln(e.stderr, errTokenArg)
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "oauth_jwt_check: unknown command %q\n%s", args[0], usageText)
	return exitUsage
}

// errTokenArg refuses a token on the command line.
var errTokenArg = errors.New("oauth_jwt_check: refusing a token given on the command line, where shell history and process lists keep it; " +
	"pass it on standard input (oauth_jwt_check token < file) or name a file holding it")

// looksLikeToken reports whether an argument is a JWT (or a JWE): dot
// separated base64url segments, long enough to be one.
func looksLikeToken(s string) bool {
	s = strings.TrimSpace(s)
	if len(s) < 16 {
		return false
	}
	if strings.HasPrefix(strings.ToLower(s), "bearer ") {
		return true
	}
	segs := strings.Split(s, ".")
	if len(segs) != 3 && len(segs) != 5 {
		return false
	}
	if len(segs[0]) < 10 || len(segs[1]) < 10 {
		return false // "access.token.json" is a file name
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '=') {
			return false
		}
	}
	return true
}

// parseArgs parses flags that may come before or after the positional
// arguments ("issuer URL --ca-file F"). "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// parseNow reads --now: RFC 3339 or Unix seconds.
func parseNow(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	var sec int64
	if _, err := fmt.Sscanf(v, "%d", &sec); err == nil && fmt.Sprint(sec) == v {
		return time.Unix(sec, 0).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("--now %q: expected RFC 3339 (2026-01-02T15:04:05Z) or Unix seconds", v)
}

// useColour says whether to colour w: only a terminal, and only when
// NO_COLOR is unset (https://no-color.org) and TERM is not "dumb".
func useColour(e *env, w any) bool {
	if e.getenv("NO_COLOR") != "" || e.getenv("TERM") == "dumb" {
		return false
	}
	return e.isTerminal != nil && e.isTerminal(w)
}
