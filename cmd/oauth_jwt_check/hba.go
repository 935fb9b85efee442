package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/oauth-jwt/oauth_jwt/validator"
)

// hbaLine is an oauth line of pg_hba.conf: what the server hands the
// validator (issuer, scope, delegate_ident_mapping) and the ident map.
type hbaLine struct {
	File      string `json:"file"`
	Line      int    `json:"line"`
	Issuer    string `json:"issuer"`
	Scope     string `json:"scope"`
	Delegate  bool   `json:"delegate"`
	Map       string `json:"map,omitempty"`
	Validator string `json:"validator,omitempty"`
	// Options are the line's validator.<key>=value options (PostgreSQL 19),
	// by key without the prefix.
	Options map[string]string `json:"options,omitempty"`
}

// settings returns what the shim passes to the validator for a login on
// this line besides the oauth_jwt.* settings: on PostgreSQL 19 the line's
// options as hba.<key> with where the line is (validator.Config applies
// them over the issuer_config section and the global settings).
func (l hbaLine) settings() validator.Settings {
	if len(l.Options) == 0 {
		return nil
	}
	vs := validator.Settings{"server.hba_file": l.File, "server.hba_line": strconv.Itoa(l.Line), "server.hba_issuer": l.Issuer}
	for k, v := range l.Options {
		vs[validator.LineSettingPrefix+k] = v
	}
	return vs
}

// readHBA returns the oauth lines of a pg_hba.conf file, each with the
// number of the line it starts on. It understands comments, double-quoted
// tokens and lines continued with a backslash; it does not follow
// "include" directives or @file references.
func readHBA(path string) ([]hbaLine, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var out []hbaLine
	var notes []string
	n, start := 0, 0
	var pending strings.Builder
	for sc.Scan() {
		n++
		text := sc.Text()
		if pending.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(text, "\\") {
			pending.WriteString(strings.TrimSuffix(text, "\\"))
			pending.WriteByte(' ')
			continue
		}
		pending.WriteString(text)
		full := pending.String()
		pending.Reset()
		fields, err := hbaFields(full)
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %w", path, start, err)
		}
		if len(fields) == 0 {
			continue
		}
		if strings.HasPrefix(strings.ToLower(fields[0].text), "include") {
			notes = append(notes, fmt.Sprintf("%s:%d: %s is not followed.", path, start, fields[0].text))
			continue
		}
		if l, ok := hbaOAuth(fields); ok {
			l.File, l.Line = path, start
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, notes, nil
}

// hbaField is one token of a pg_hba.conf line.
type hbaField struct {
	text   string // quotes removed
	quoted bool
}

// hbaFields splits a line into tokens: white space separates them outside
// double quotes, "#" starts a comment, and a doubled quote inside quotes is
// a literal quote.
func hbaFields(s string) ([]hbaField, error) {
	var out []hbaField
	var b strings.Builder
	in, quoted, started := false, false, false
	flush := func() {
		if started {
			out = append(out, hbaField{text: b.String(), quoted: quoted})
		}
		b.Reset()
		quoted, started = false, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in && c == '"' && i+1 < len(s) && s[i+1] == '"':
			b.WriteByte('"')
			i++
		case c == '"':
			in = !in
			quoted, started = true, true
		case !in && c == '#':
			flush()
			return out, nil
		case !in && (c == ' ' || c == '\t' || c == '\r'):
			flush()
		default:
			b.WriteByte(c)
			started = true
		}
	}
	if in {
		return nil, fmt.Errorf("unterminated quoted string")
	}
	flush()
	return out, nil
}

// hbaOAuth reads an oauth line: type, database, user, [address [mask]],
// method "oauth", options name=value.
func hbaOAuth(f []hbaField) (hbaLine, bool) {
	if len(f) < 4 {
		return hbaLine{}, false
	}
	i := 3 // method of a local line
	if f[0].text != "local" {
		i = 4 // host*: address, then method
		if len(f) > 5 && !strings.Contains(f[3].text, "/") && net.ParseIP(f[3].text) != nil && net.ParseIP(f[4].text) != nil {
			i = 5 // address and a separate netmask
		}
	}
	if len(f) <= i || f[i].text != "oauth" {
		return hbaLine{}, false
	}
	var l hbaLine
	for _, opt := range f[i+1:] {
		name, val, ok := strings.Cut(opt.text, "=")
		if !ok {
			continue
		}
		switch name {
		case "issuer":
			l.Issuer = val
		case "scope":
			l.Scope = val
		case "map":
			l.Map = val
		case "validator":
			l.Validator = val
		case "delegate_ident_mapping":
			l.Delegate = val == "1" // exactly what PostgreSQL's hba.c tests
		default:
			if key, ok := strings.CutPrefix(name, validator.LineOptionPrefix); ok {
				if l.Options == nil {
					l.Options = map[string]string{}
				}
				l.Options[key] = val
			}
		}
	}
	return l, true
}

// pickHBA chooses the oauth line of pg_hba.conf: the one starting on line
// n, or the only one when n is 0.
func pickHBA(path string, n int) (hbaLine, []string, error) {
	lines, notes, err := readHBA(path)
	if err != nil {
		return hbaLine{}, nil, err
	}
	if n > 0 {
		for _, l := range lines {
			if l.Line == n {
				return l, notes, nil
			}
		}
		return hbaLine{}, nil, fmt.Errorf("%s:%d is not an oauth line%s", path, n, listHBA(lines))
	}
	switch len(lines) {
	case 0:
		return hbaLine{}, nil, fmt.Errorf("%s has no oauth line", path)
	case 1:
		return lines[0], notes, nil
	}
	return hbaLine{}, nil, fmt.Errorf("%s has %d oauth lines: choose one with --hba-line%s", path, len(lines), listHBA(lines))
}

func listHBA(lines []hbaLine) string {
	if len(lines) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; its oauth lines are:")
	for _, l := range lines {
		fmt.Fprintf(&b, "\n  line %d: issuer %q", l.Line, l.Issuer)
	}
	return b.String()
}
