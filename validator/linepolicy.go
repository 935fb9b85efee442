package validator

import (
	"slices"
	"strconv"
	"strings"
)

// Per-line policy (PostgreSQL 19 and later). The shim registers every
// policy key with the server (RegisterOAuthHBAOptions), so a pg_hba oauth
// line may carry validator.<key>=value; during validation it passes the
// values the line sets as settings "hba.<key>", and where the line is as
// "server.hba_file", "server.hba_line" and "server.hba_issuer".
const (
	// LineSettingPrefix prefixes the settings that carry a pg_hba line's options.
	LineSettingPrefix = "hba."
	// LineOptionPrefix is how the options are written on a pg_hba line.
	LineOptionPrefix = "validator."
)

// PolicyKeys returns the names of the per-issuer policy settings: the keys
// of an issuer_config section and, without the prefix, the validator.*
// options of a pg_hba line.
func PolicyKeys() []string { return slices.Clone(policyKeys) }

// LineOptions are the options of the pg_hba line a login matched.
type LineOptions struct {
	// File and Line locate the pg_hba line (for messages).
	File string
	Line int
	// Issuer is the line's issuer option: the policy applies to it.
	Issuer string
	// Values are the options the line sets, by policy key.
	Values map[string]string

	policy *Policy // the effective policy of Issuer with Values applied
}

// Where returns "file:line" of the pg_hba line, as PostgreSQL writes it.
func (l *LineOptions) Where() string {
	if l.Line > 0 {
		return l.File + ":" + strconv.Itoa(l.Line)
	}
	return l.File
}

// parseLine collects the hba.* settings and applies them on top of the
// policy of the line's issuer. A bad value is a *ConfigError that names the
// option as written on the line (validator.<key>) and the pg_hba line: the
// logins of that line fail until it is fixed; nothing falls back to the
// issuer_config section or the global setting.
func (c *Config) parseLine(s Settings) error {
	vals := map[string]string{}
	for k, v := range s {
		if key, ok := strings.CutPrefix(k, LineSettingPrefix); ok {
			vals[key] = v
		}
	}
	if len(vals) == 0 {
		return nil
	}
	l := &LineOptions{File: s["server.hba_file"], Issuer: s["server.hba_issuer"], Values: vals}
	l.Line, _ = strconv.Atoi(s["server.hba_line"])
	c.Line = l
	fail := func(e *ConfigError) error {
		if name, ok := strings.CutPrefix(e.Setting, SettingPrefix); ok {
			e.Setting = LineOptionPrefix + name
		}
		e.File, e.Line = l.File, l.Line
		return e
	}
	for key := range vals {
		if !slices.Contains(policyKeys, key) {
			// The server only passes options the shim registered; this is a
			// shim and validator built from different sources.
			return fail(&ConfigError{Setting: SettingPrefix + key, Msg: "not a per-issuer setting, so it cannot be set on a pg_hba line"})
		}
	}
	base := c.Default
	if p, ok := c.Issuers[l.Issuer]; ok {
		base = p
	}
	get := func(k string) (string, bool) { v, ok := vals[k]; return v, ok }
	p, err := parsePolicy(&location{file: l.File, line: l.Line}, get, base, c.RequireHTTPS, nil)
	if err != nil {
		if ce, ok := err.(*ConfigError); ok {
			return fail(ce)
		}
		return err
	}
	if len(p.Audiences) == 0 {
		return fail(&ConfigError{Setting: SettingPrefix + "audience",
			Msg: "no audience is configured for this line; set validator.audience (or oauth_jwt.audience) to the audience your identity provider puts in access tokens meant for this server"})
	}
	l.policy = p
	return nil
}
