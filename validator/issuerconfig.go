package validator

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// maxIssuerConfigBytes bounds the issuer_config file.
const maxIssuerConfigBytes = 1 << 20

// loadIssuerConfig reads the per-issuer override file (see the package
// documentation for its format) and returns the effective policy of every
// issuer it names.
func loadIssuerConfig(path string, base Policy, requireHTTPS bool) (map[string]Policy, error) {
	fail := func(line int, format string, args ...any) error {
		return &ConfigError{File: path, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, &ConfigError{Setting: SettingPrefix + "issuer_config",
			Msg: "cannot open the issuer configuration file", Err: err}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, &ConfigError{Setting: SettingPrefix + "issuer_config",
			Msg: "cannot stat the issuer configuration file", Err: err}
	}
	// The file decides who may log in: someone else must not be able to
	// change it.
	if !st.Mode().IsRegular() {
		return nil, fail(0, "not a regular file")
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fail(0, "the file is writable by group or others (mode %04o); it must be writable only by its owner", st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxIssuerConfigBytes+1))
	if err != nil {
		return nil, &ConfigError{Setting: SettingPrefix + "issuer_config",
			Msg: "cannot read the issuer configuration file", Err: err}
	}
	if len(data) > maxIssuerConfigBytes {
		return nil, fail(0, "the file is larger than %d bytes", maxIssuerConfigBytes)
	}
	return parseIssuerConfig(path, data, base, requireHTTPS)
}

type section struct {
	issuer string
	line   int
	values map[string]string
	lines  map[string]int
}

// parseIssuerConfig parses the contents of an issuer_config file.
func parseIssuerConfig(path string, data []byte, base Policy, requireHTTPS bool) (map[string]Policy, error) {
	fail := func(line int, format string, args ...any) error {
		return &ConfigError{File: path, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	var sections []*section
	var cur *section
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxIssuerConfigBytes)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			if line[len(line)-1] != ']' {
				return nil, fail(n, "section header must be of the form [issuer]")
			}
			iss := strings.TrimSpace(line[1 : len(line)-1])
			if iss == "" {
				return nil, fail(n, "empty issuer in section header")
			}
			for _, s := range sections {
				if s.issuer == iss {
					return nil, fail(n, "duplicate section for issuer %q (first at line %d)", iss, s.line)
				}
			}
			cur = &section{issuer: iss, line: n, values: map[string]string{}, lines: map[string]int{}}
			sections = append(sections, cur)
			continue
		}
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			return nil, fail(n, "expected \"name = value\" or \"[issuer]\"")
		}
		key := strings.TrimSpace(line[:eq])
		key = strings.TrimPrefix(key, SettingPrefix)
		val := unquote(strings.TrimSpace(line[eq+1:]))
		if cur == nil {
			return nil, fail(n, "setting %q appears before the first [issuer] section", key)
		}
		switch {
		case slices.Contains(serverKeys, key):
			return nil, fail(n, "setting %q is server-wide and cannot be set per issuer", SettingPrefix+key)
		case !slices.Contains(policyKeys, key):
			return nil, fail(n, "unknown setting %q", key)
		}
		if first, dup := cur.lines[key]; dup {
			return nil, fail(n, "setting %q repeated in section [%s] (first at line %d)", key, cur.issuer, first)
		}
		cur.values[key] = val
		cur.lines[key] = n
	}
	if err := sc.Err(); err != nil {
		return nil, fail(n+1, "cannot read the file: %v", err)
	}
	out := make(map[string]Policy, len(sections))
	for _, s := range sections {
		get := func(k string) (string, bool) { v, ok := s.values[k]; return v, ok }
		p, err := parsePolicy(&location{file: path, line: s.line}, get, base, requireHTTPS, s.lines)
		if err != nil {
			return nil, err
		}
		if len(p.Audiences) == 0 {
			return nil, errNoAudience(&location{file: path, line: s.line})
		}
		out[s.issuer] = *p
	}
	return out, nil
}

// unquote removes one pair of matching single or double quotes.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}
