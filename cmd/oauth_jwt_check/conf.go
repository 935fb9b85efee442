package main

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/oauth-jwt/oauth_jwt/validator"
)

// kind is the type of a server setting, as the C shim defines it.
type kind int

const (
	kindString kind = iota
	kindBool
	kindSeconds // integer GUC with GUC_UNIT_S
	kindMillis  // integer GUC with GUC_UNIT_MS
)

// guc is one oauth_jwt.* setting as cshim/oauth_jwt.c defines it: its
// type, unit, range and the default the server passes when it is not set.
type guc struct {
	kind     kind
	def      string
	min, max int
}

// gucs mirrors the table in cshim/oauth_jwt.c. The server passes every one
// of them to the validator, as GetConfigOption prints it: integers in
// their base unit without a unit, booleans as "on" or "off".
var gucs = map[string]guc{
	"audience":                  {kind: kindString},
	"allowed_client_ids":        {kind: kindString},
	"required_scopes":           {kind: kindString},
	"allowed_algorithms":        {kind: kindString, def: validator.DefaultAlgorithms},
	"leeway":                    {kind: kindSeconds, def: "30", min: 0, max: 300},
	"accept_id_tokens":          {kind: kindBool, def: "off"},
	"jwks_uri":                  {kind: kindString},
	"discovery_url":             {kind: kindString},
	"jwks_file":                 {kind: kindString},
	"introspection":             {kind: kindString, def: "off"},
	"introspection_endpoint":    {kind: kindString},
	"introspection_client_id":   {kind: kindString},
	"introspection_secret_file": {kind: kindString},
	"introspection_cache_ttl":   {kind: kindSeconds, def: "30", min: 0, max: 3600},
	"authn_id_claim":            {kind: kindString, def: "sub"},
	"role_claim":                {kind: kindString},
	"role_map":                  {kind: kindString},
	"client_role_map":           {kind: kindString},
	"role_from_identity":        {kind: kindBool, def: "off"},
	"enforce_hba_scope":         {kind: kindBool, def: "on"},
	"max_token_lifetime":        {kind: kindSeconds, def: "86400", min: 60, max: 31536000},
	"allow_privileged_roles":    {kind: kindBool, def: "off"},
	"cache_dir":                 {kind: kindString},
	"cache_refresh_interval":    {kind: kindSeconds, def: "300", min: 1, max: 86400},
	"cache_max_stale":           {kind: kindSeconds, def: "3600", min: 1, max: 604800},
	"kid_refetch_interval":      {kind: kindSeconds, def: "60", min: 1, max: 86400},
	"http_timeout":              {kind: kindMillis, def: "5000", min: 100, max: 600000},
	"ca_file":                   {kind: kindString},
	"http_proxy":                {kind: kindString},
	"require_https":             {kind: kindBool, def: "on"},
	"log_accepted":              {kind: kindBool, def: "off"},
	"issuer_config":             {kind: kindString},
}

// Server facts the shim passes besides the settings.
const (
	factDataDir     = "server.data_directory"
	factAuthTimeout = "server.authentication_timeout"
)

// authTimeout is PostgreSQL's authentication_timeout (GUC_UNIT_S, 1..600).
var authTimeout = guc{kind: kindSeconds, def: "60", min: 1, max: 600}

// setting is one value given to the tool, as written and as the server
// would pass it.
type setting struct {
	Name   string `json:"name"`   // without the "oauth_jwt." prefix, or a server fact
	Value  string `json:"value"`  // as the server passes it to the validator
	Raw    string `json:"raw"`    // as written
	Origin string `json:"origin"` // "postgresql.conf:12", "--set", ...
}

// settings collects the server's configuration as the tool understands it.
type settings struct {
	values map[string]*setting // by name
	order  []string            // names in the order first set
	notes  []string            // things worth saying about the files
}

func newSettings() *settings { return &settings{values: map[string]*setting{}} }

func (s *settings) set(name, value, raw, origin string) {
	if _, ok := s.values[name]; !ok {
		s.order = append(s.order, name)
	}
	s.values[name] = &setting{Name: name, Value: value, Raw: raw, Origin: origin}
}

// list returns the settings given, in the order first set.
func (s *settings) list() []setting {
	out := make([]setting, 0, len(s.order))
	for _, n := range s.order {
		out = append(out, *s.values[n])
	}
	return out
}

// validatorSettings returns validator.Settings exactly as the shim would
// pass them: every oauth_jwt.* setting (defaults included) and the two
// server facts.
func (s *settings) validatorSettings() validator.Settings {
	vs := validator.Settings{}
	for name, g := range gucs {
		vs[name] = g.def
	}
	vs[factAuthTimeout] = authTimeout.def
	for name, st := range s.values {
		vs[name] = st.Value
	}
	return vs
}

// assign records "name = raw" from origin: an oauth_jwt.* setting, or one
// of the server settings the tool understands. It returns an error for a
// value PostgreSQL itself would refuse.
func (s *settings) assign(name, raw, origin string, fromFile bool) error {
	lname := strings.ToLower(strings.TrimSpace(name))
	short := strings.TrimPrefix(lname, validator.SettingPrefix)
	switch {
	case lname == "data_directory" || lname == factDataDir:
		s.set(factDataDir, raw, raw, origin)
		return nil
	case lname == "authentication_timeout" || lname == factAuthTimeout:
		v, err := convert(authTimeout, raw)
		if err != nil {
			return fmt.Errorf("%s: invalid value for \"authentication_timeout\": %w", origin, err)
		}
		s.set(factAuthTimeout, v, raw, origin)
		return nil
	case lname == "oauth_validator_libraries":
		if !slices.Contains(splitLibs(raw), "oauth_jwt") {
			s.notes = append(s.notes, fmt.Sprintf("%s: \"oauth_validator_libraries\" is %q and does not name oauth_jwt: the server does not use this module.", origin, raw))
		}
		return nil
	case lname == "shared_preload_libraries" || lname == "session_preload_libraries" || lname == "local_preload_libraries":
		if slices.Contains(splitLibs(raw), "oauth_jwt") {
			s.notes = append(s.notes, fmt.Sprintf("%s: %q names oauth_jwt, which refuses to be preloaded; name it only in \"oauth_validator_libraries\".", origin, lname))
		}
		return nil
	}
	if !strings.HasPrefix(lname, validator.SettingPrefix) && fromFile {
		return nil // another module's or the server's setting
	}
	g, ok := gucs[short]
	if !ok {
		if fromFile {
			s.notes = append(s.notes, fmt.Sprintf("%s: unknown setting \"oauth_jwt.%s\" (the server warns and ignores it).", origin, short))
			return nil
		}
		return fmt.Errorf("%s: unknown setting %q", origin, name)
	}
	v, err := convert(g, raw)
	if err != nil {
		return fmt.Errorf("%s: invalid value for \"oauth_jwt.%s\": %w (the server refuses it and keeps the previous value)", origin, short, err)
	}
	s.set(short, v, raw, origin)
	return nil
}

func splitLibs(v string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		out = append(out, strings.Trim(f, `"`))
	}
	return out
}

// convert turns a value as written in postgresql.conf into what the server
// passes: integers in the base unit (units converted and rounded as
// PostgreSQL does), booleans as on/off, strings unchanged.
func convert(g guc, raw string) (string, error) {
	switch g.kind {
	case kindBool:
		b, ok := parseBool(raw)
		if !ok {
			return "", fmt.Errorf("%q is not a boolean (on, off, true, false, yes, no, 1, 0)", raw)
		}
		if b {
			return "on", nil
		}
		return "off", nil
	case kindSeconds, kindMillis:
		n, err := parseTime(raw, g.kind)
		if err != nil {
			return "", err
		}
		if n < float64(g.min) || n > float64(g.max) {
			return "", fmt.Errorf("%s is outside the valid range (%d .. %d)", strconv.FormatFloat(n, 'f', -1, 64), g.min, g.max)
		}
		return strconv.Itoa(int(n)), nil
	}
	return raw, nil
}

// parseBool accepts what PostgreSQL's parse_bool accepts: on, off, true,
// false, yes, no, 1, 0 and unique prefixes of the words, in any case.
func parseBool(v string) (bool, bool) {
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "" {
		return false, false
	}
	switch v {
	case "1":
		return true, true
	case "0":
		return false, true
	case "on":
		return true, true
	case "of", "off":
		return false, true
	}
	for _, w := range []string{"true", "yes"} {
		if strings.HasPrefix(w, v) {
			return true, true
		}
	}
	for _, w := range []string{"false", "no"} {
		if strings.HasPrefix(w, v) {
			return false, true
		}
	}
	return false, false
}

var numUnit = regexp.MustCompile(`^([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)$`)

// timeUnits are PostgreSQL's time units, in milliseconds.
var timeUnits = map[string]float64{"us": 0.001, "ms": 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000}

// parseTime parses an integer time setting: a number, optionally followed
// by a unit (us, ms, s, min, h, d; case-sensitive), converted to the
// setting's base unit and rounded to the nearest integer, as PostgreSQL's
// parse_int does.
func parseTime(raw string, k kind) (float64, error) {
	m := numUnit.FindStringSubmatch(strings.TrimSpace(raw))
	if m == nil {
		return 0, fmt.Errorf("%q is not a number with an optional unit (us, ms, s, min, h, d)", raw)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, fmt.Errorf("%q is not a number", raw)
	}
	base := 1000.0
	if k == kindMillis {
		base = 1
	}
	if m[2] != "" {
		mult, ok := timeUnits[m[2]]
		if !ok {
			return 0, fmt.Errorf("invalid unit %q; valid units are \"us\", \"ms\", \"s\", \"min\", \"h\" and \"d\"", m[2])
		}
		n = n * mult / base
	}
	return math.RoundToEven(n), nil // rint()
}

// confLine is one "name = value" of a configuration file.
type confLine struct {
	name, value string
	line        int
}

// readConf reads the settings of a postgresql.conf file: "name = value"
// or "name value" lines, values in single quotes (a quote doubled or
// backslashed, C-style backslash escapes) or unquoted, comments from "#". It
// does not follow include, include_if_exists or include_dir: it returns
// them as notes.
func readConf(path string) (lines []confLine, notes []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		name, value, ok, perr := parseConfLine(sc.Text())
		if perr != nil {
			return nil, nil, fmt.Errorf("%s:%d: %w", path, n, perr)
		}
		if !ok {
			continue
		}
		switch strings.ToLower(name) {
		case "include", "include_if_exists", "include_dir":
			notes = append(notes, fmt.Sprintf("%s:%d: %s %q is not followed; give its oauth_jwt settings with --config or --set.", path, n, strings.ToLower(name), value))
			continue
		}
		lines = append(lines, confLine{name: name, value: value, line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return lines, notes, nil
}

var errConfSyntax = errors.New("syntax error")

// parseConfLine parses one line of postgresql.conf; ok is false for blank
// and comment lines.
func parseConfLine(s string) (name, value string, ok bool, err error) {
	i := 0
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r') {
			i++
		}
	}
	skipSpace()
	if i == len(s) || s[i] == '#' {
		return "", "", false, nil
	}
	start := i
	for i < len(s) && (isNameByte(s[i])) {
		i++
	}
	if i == start {
		return "", "", false, fmt.Errorf("%w near %q", errConfSyntax, clip(s[start:]))
	}
	name = s[start:i]
	skipSpace()
	if i < len(s) && s[i] == '=' {
		i++
		skipSpace()
	}
	switch {
	case i < len(s) && s[i] == '\'':
		var b strings.Builder
		i++
		closed := false
		for i < len(s) {
			c := s[i]
			switch {
			case c == '\'' && i+1 < len(s) && s[i+1] == '\'':
				b.WriteByte('\'')
				i += 2
			case c == '\'':
				i++
				closed = true
			case c == '\\' && i+1 < len(s):
				i++
				i += unescape(&b, s[i:])
			default:
				b.WriteByte(c)
				i++
			}
			if closed {
				break
			}
		}
		if !closed {
			return "", "", false, fmt.Errorf("%w: unterminated quoted string", errConfSyntax)
		}
		value = b.String()
	default:
		start := i
		for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '#' && s[i] != '\r' {
			i++
		}
		value = s[start:i]
		if value == "" {
			return "", "", false, fmt.Errorf("%w: %q has no value", errConfSyntax, name)
		}
	}
	skipSpace()
	if i < len(s) && s[i] != '#' {
		return "", "", false, fmt.Errorf("%w near %q", errConfSyntax, clip(s[i:]))
	}
	return name, value, true, nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// unescape writes the character of the backslash escape at the start of s
// (after the backslash) and returns how many bytes it used.
func unescape(b *strings.Builder, s string) int {
	switch s[0] {
	case 'b':
		b.WriteByte('\b')
	case 'f':
		b.WriteByte('\f')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case 't':
		b.WriteByte('\t')
	case '0', '1', '2', '3', '4', '5', '6', '7':
		n, v := 0, 0
		for n < 3 && n < len(s) && s[n] >= '0' && s[n] <= '7' {
			v = v*8 + int(s[n]-'0')
			n++
		}
		b.WriteByte(byte(v))
		return n
	default:
		b.WriteByte(s[0])
	}
	return 1
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// loadConf applies a postgresql.conf file, then the postgresql.auto.conf
// next to it (what ALTER SYSTEM writes, read last by the server too).
func (s *settings) loadConf(path string) error {
	files := []string{path}
	auto := filepath.Join(filepath.Dir(path), "postgresql.auto.conf")
	if filepath.Base(path) != "postgresql.auto.conf" {
		if _, err := os.Stat(auto); err == nil {
			files = append(files, auto)
		}
	}
	for _, f := range files {
		lines, notes, err := readConf(f)
		if err != nil {
			return err
		}
		s.notes = append(s.notes, notes...)
		for _, l := range lines {
			if err := s.assign(l.name, l.value, fmt.Sprintf("%s:%d", f, l.line), true); err != nil {
				return err
			}
		}
	}
	return nil
}
