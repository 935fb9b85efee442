package validator

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/oauth-jwt/oauth_jwt/internal/trustedfile"
)

// maxIssuerConfigBytes bounds the issuer_config file.
const maxIssuerConfigBytes = 1 << 20

// loadIssuerConfig reads the per-issuer override file (see the package
// documentation for its format) and returns the effective policy of every
// issuer it names.
func loadIssuerConfig(path string, base Policy, requireHTTPS bool) (map[string]Policy, error) {
	// The file decides which keys are trusted for an issuer (jwks_uri,
	// discovery_url) and who may log in: it gets the trusted-file rule
	// (owner, mode, no symbolic link, safe directories, regular file, size)
	// and is opened without blocking, since this runs with signals blocked.
	data, err := issuerConfigRule.Read(path)
	if err != nil {
		msg := "cannot read the issuer configuration file"
		if errors.Is(err, trustedfile.ErrUntrusted) || errors.Is(err, trustedfile.ErrTooLarge) {
			msg = err.Error()
		} else {
			msg += ": " + err.Error()
		}
		return nil, &ConfigError{Setting: SettingPrefix + "issuer_config", Msg: msg, Err: err}
	}
	return parseIssuerConfig(path, data, base, requireHTTPS)
}

// issuerConfigRule is the trusted-file rule of the issuer_config file.
var issuerConfigRule = trustedfile.Rule{
	What:     "issuer configuration file",
	Setting:  SettingPrefix + "issuer_config",
	MaxBytes: maxIssuerConfigBytes,
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
