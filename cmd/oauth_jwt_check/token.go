package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/oauth-jwt/oauth_jwt/validator"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// maxInput bounds what is read as a token (a token endpoint response may
// hold a refresh and an ID token besides).
const maxInput = 1 << 20

// privateCache is how the report names the tool's own temporary cache.
const privateCache = "(private temporary directory, removed at exit)"

// tokenReport is the result of "oauth_jwt_check token"; its JSON field
// names are stable.
type tokenReport struct {
	Command        string          `json:"command"`  // "token"
	Accepted       bool            `json:"accepted"` // the server would let the login through
	Reason         string          `json:"reason"`   // the module's reason code ("ok" when it accepts)
	Hint           string          `json:"hint"`     // what to do about Reason
	Error          string          `json:"error"`    // the module's internal error, if any
	AuthnID        string          `json:"authn_id"` // the identity, when the signature verified
	Ident          identOut        `json:"ident"`    // how the role is decided
	Request        requestOut      `json:"request"`
	Now            string          `json:"now"`
	Settings       []setting       `json:"settings"`  // those given (defaults omitted)
	CacheDir       string          `json:"cache_dir"` // the key cache the tool used
	Notes          []string        `json:"notes"`
	Header         json.RawMessage `json:"header"` // decoded; null when not JSON
	Claims         json.RawMessage `json:"claims"` // decoded; null when not JSON
	Segments       int             `json:"segments"`
	SignatureBytes int             `json:"signature_bytes"` // -1: none; never the signature itself
	Checks         []checkOut      `json:"checks"`
	Keys           []keyOut        `json:"keys"`       // the issuer's key set, as the checks saw it
	ServerLog      []logOut        `json:"server_log"` // what the module logs
}

// requestOut is the login attempt judged.
type requestOut struct {
	Issuer   string `json:"issuer"`
	Scope    string `json:"scope"`
	Role     string `json:"role"`
	Delegate bool   `json:"delegate"`
	Map      string `json:"map"`
	Source   string `json:"source"` // "pg_hba.conf:12" or "flags"
}

// identOut says how PostgreSQL decides the role after the module.
type identOut struct {
	Mode   string `json:"mode"`   // "delegated" or "pg_ident"
	Status string `json:"status"` // pass, fail or skip (not decided here)
	Detail string `json:"detail"`
}

type tokenFlags struct {
	config, hba, issuer, scope, role, mapName string
	roleAttributes                            string
	dataDir, cacheDir, now, token             string
	hbaLine                                   int
	delegate, json                            bool
	timeout                                   time.Duration
	sets                                      multiFlag
}

func cmdToken(e *env, args []string) int {
	var f tokenFlags
	fs := flag.NewFlagSet("oauth_jwt_check token", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&f.config, "config", "", "`postgresql.conf` to read the oauth_jwt.* settings from (and postgresql.auto.conf next to it; include directives are not followed)")
	fs.Var(&f.sets, "set", "`name=value`: a setting, with or without the oauth_jwt. prefix, as in postgresql.conf ('30s' units too); overrides --config; repeatable")
	fs.StringVar(&f.dataDir, "data-dir", "", "the server's data `directory`, for relative paths (default: data_directory, else the directory of --config)")
	fs.StringVar(&f.hba, "hba", "", "`pg_hba.conf` to read the issuer, scope, map and delegate_ident_mapping from")
	fs.IntVar(&f.hbaLine, "hba-line", 0, "`line` number of the oauth line in --hba (default: the only oauth line)")
	fs.StringVar(&f.issuer, "issuer", "", "the pg_hba.conf issuer `URL` (instead of --hba)")
	fs.StringVar(&f.scope, "scope", "", "the pg_hba.conf `scope` (with --issuer)")
	fs.BoolVar(&f.delegate, "delegate", false, "the pg_hba.conf line has delegate_ident_mapping=1 (with --issuer)")
	fs.StringVar(&f.mapName, "map", "", "the pg_hba.conf ident map `name` (with --issuer; default none)")
	fs.StringVar(&f.role, "role", "", "the `role` the client asks to log in as")
	fs.StringVar(&f.roleAttributes, "role-attributes", "", "with delegate_ident_mapping=1: the privileged attributes of --role as the server reads them from pg_authid at login, which this tool cannot: `list` of SUPERUSER, BYPASSRLS, CREATEROLE, ATTRIBUTE:role for a role it is a member of, or none (README: \"Identity and roles\" has the query); without it the privileges check is skipped")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "key cache `directory` to use instead of a private temporary one; it must belong to you and be writable by no one else")
	fs.StringVar(&f.now, "now", "", "judge at this `time` (RFC 3339 or Unix seconds) instead of now")
	fs.DurationVar(&f.timeout, "timeout", time.Minute, "time limit of the whole check")
	fs.BoolVar(&f.json, "json", false, "print a JSON report")
	fs.StringVar(&f.token, "token", "", "refused: a token on the command line leaks into shell history and process lists")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: oauth_jwt_check token [flags] [FILE]\n\n"+
			"Explains what the oauth_jwt module decides about the token in FILE (default: standard input).\n"+
			"FILE may hold the token alone, \"Bearer <token>\", or a token endpoint response with access_token.\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if f.token != "" {
		fmt.Fprintln(e.stderr, errTokenArg)
		return exitUsage
	}
	code, err := explainToken(e, &f, pos)
	if err != nil {
		fmt.Fprintf(e.stderr, "oauth_jwt_check: %v\n", err)
	}
	return code
}

// explainToken does the work of cmdToken once the flags are parsed.
func explainToken(e *env, f *tokenFlags, pos []string) (int, error) {
	rep := tokenReport{Command: "token", Notes: []string{}, Checks: []checkOut{}, Keys: []keyOut{}, ServerLog: []logOut{}}

	// Settings, as the server holds them.
	st := newSettings()
	if f.config != "" {
		if err := st.loadConf(f.config); err != nil {
			return exitUsage, err
		}
		if _, ok := st.values[factDataDir]; !ok {
			if abs, err := filepath.Abs(f.config); err == nil {
				st.set(factDataDir, filepath.Dir(abs), "", "directory of --config")
			}
		}
	}
	if f.dataDir != "" {
		st.set(factDataDir, f.dataDir, f.dataDir, "--data-dir")
	}
	for _, kv := range f.sets {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return exitUsage, fmt.Errorf("--set %q: expected name=value", kv)
		}
		if err := st.assign(name, value, "--set", false); err != nil {
			return exitUsage, err
		}
	}
	rep.Notes = append(rep.Notes, st.notes...)

	// The pg_hba.conf line and the role asked for.
	req := validator.Request{Role: f.role}
	switch {
	case f.hba != "" && (f.issuer != "" || f.scope != "" || f.delegate || f.mapName != ""):
		return exitUsage, errors.New("give either --hba or --issuer (with --scope, --map, --delegate), not both")
	case f.hba != "":
		l, notes, err := pickHBA(f.hba, f.hbaLine)
		if err != nil {
			return exitUsage, err
		}
		rep.Notes = append(rep.Notes, notes...)
		req.Issuer, req.Scope, req.Delegate = l.Issuer, l.Scope, l.Delegate
		rep.Request = requestOut{Map: l.Map, Source: fmt.Sprintf("%s:%d", l.File, l.Line)}
		if l.Validator != "" && l.Validator != "oauth_jwt" {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s:%d names validator %q, not oauth_jwt.", l.File, l.Line, l.Validator))
		}
	case f.issuer != "":
		req.Issuer, req.Scope, req.Delegate = f.issuer, f.scope, f.delegate
		rep.Request = requestOut{Map: f.mapName, Source: "flags"}
	default:
		return exitUsage, errors.New("give the pg_hba.conf line: --hba FILE [--hba-line N], or --issuer URL")
	}
	if req.Delegate && req.Role == "" {
		return exitUsage, errors.New("with delegate_ident_mapping=1 the module decides the role: give it with --role")
	}
	switch {
	case f.roleAttributes != "":
		p, err := validator.ParseRolePrivileges(f.roleAttributes)
		if err != nil {
			return exitUsage, fmt.Errorf("--role-attributes: %w", err)
		}
		req.RolePrivileges = p
		if !req.Delegate {
			rep.Notes = append(rep.Notes, "--role-attributes is ignored without delegate_ident_mapping=1: the pg_ident.conf map decides the role, and role attributes are not checked.")
		}
	case req.Delegate:
		rep.Notes = append(rep.Notes, fmt.Sprintf("The attributes of role %q (SUPERUSER, BYPASSRLS, CREATEROLE, and those of the roles it is a member of) live in the server's pg_authid, which cannot be read offline: the privileges check is skipped. The server refuses such a role (privileged_role) unless \"oauth_jwt.allow_privileged_roles\" is on; give them with --role-attributes (none for a plain role).", req.Role))
	}
	rep.Request.Issuer, rep.Request.Scope, rep.Request.Role, rep.Request.Delegate = req.Issuer, req.Scope, req.Role, req.Delegate

	// The clock.
	now := e.now()
	if f.now != "" {
		var err error
		if now, err = parseNow(f.now); err != nil {
			return exitUsage, err
		}
	}
	rep.Now = now.UTC().Format(time.RFC3339)

	// The token, last: a usage error must not consume standard input.
	tok, notes, err := readToken(e, pos)
	if err != nil {
		return exitUsage, err
	}
	req.Token = tok
	rep.Notes = append(rep.Notes, notes...)

	// A key cache of the tool's own, unless told otherwise.
	serverCache := ""
	if c, ok := st.values["cache_dir"]; ok && c.Value != "" {
		serverCache = c.Value
	} else if d, ok := st.values[factDataDir]; ok && d.Value != "" {
		serverCache = filepath.Join(d.Value, validator.CacheDirName)
	}
	cacheDir := f.cacheDir
	if cacheDir == "" {
		dir, err := os.MkdirTemp(e.tempDir, "oauth_jwt_check-")
		if err != nil {
			return exitUsage, fmt.Errorf("cannot make a private key cache: %w", err)
		}
		defer os.RemoveAll(dir)
		cacheDir = dir
		rep.CacheDir = privateCache
	} else {
		if cacheDir, err = filepath.Abs(cacheDir); err != nil {
			return exitUsage, err
		}
		rep.CacheDir = cacheDir
	}
	if serverCache != "" && serverCache != cacheDir {
		rep.Notes = append(rep.Notes, fmt.Sprintf("The server's key cache %s was not used: keys were fetched afresh. The server may hold other (older) keys.", serverCache))
	}
	rep.Settings = st.list()
	if rep.Settings == nil {
		rep.Settings = []setting{}
	}
	vs := st.validatorSettings()
	vs["cache_dir"] = cacheDir

	code := judgeToken(e, f, vs, req, now, &rep)
	if f.json {
		if err := writeJSON(e.stdout, rep); err != nil {
			return exitUsage, err
		}
	} else {
		p := &printer{w: e.stdout, colour: useColour(e, e.stdout)}
		printTokenReport(p, &rep)
	}
	return code, nil
}

// judgeToken runs the validator on req and fills the verdict part of rep.
func judgeToken(e *env, f *tokenFlags, vs validator.Settings, req validator.Request, now time.Time, rep *tokenReport) int {
	d := validator.DecodeToken(req.Token)
	rep.Header, rep.Claims, rep.Segments, rep.SignatureBytes = d.Header, d.Claims, d.Segments, d.SignatureBytes

	v, err := validator.New(vs, validator.WithClock(func() time.Time { return now }))
	if err != nil {
		// The module cannot judge any token: every login fails.
		reason := validator.ReasonConfig
		if errors.Is(err, keycache.ErrInsecureCache) {
			reason = validator.ReasonInsecureCache
		}
		rep.Reason, rep.Hint, rep.Error = string(reason), validator.Hint(reason), err.Error()
		rep.Checks = append(rep.Checks, checkOut{Name: "settings", Status: "fail", Reason: string(reason),
			Detail: err.Error(), Hint: validator.Hint(reason)})
		for _, name := range validator.CheckNames() {
			rep.Checks = append(rep.Checks, checkOut{Name: name, Status: "skip", Detail: "Not reached: the module cannot start with these settings."})
		}
		rep.ServerLog = append(rep.ServerLog, failedRecord(err))
		rep.Ident = identOut{Mode: identMode(req), Status: "skip", Detail: "No token is judged until the settings are fixed."}
		return exitFor(reason)
	}
	rep.Checks = append(rep.Checks, checkOut{Name: "settings", Status: "pass", Got: fmt.Sprintf("%d settings given", len(rep.Settings)),
		Want: "a configuration the module accepts"})

	ctx, cancel := context.WithTimeout(e.ctx, f.timeout)
	defer cancel()
	exp, verr := v.Explain(ctx, req)
	res := exp.Result
	rep.Reason, rep.AuthnID = string(res.Reason), res.AuthnID
	if !res.Authorized {
		rep.Hint = validator.Hint(res.Reason)
	}
	for _, c := range exp.Checks {
		rep.Checks = append(rep.Checks, checkOut{Name: c.Name, Status: string(c.Status), Got: c.Got, Want: c.Want,
			Reason: string(c.Reason), Detail: c.Detail, Hint: c.Hint})
	}
	for _, k := range exp.Keys {
		ko := keyOut{KID: k.KID, Type: k.Type, Alg: k.Alg, Use: k.Use, Bits: k.Bits, Verifies: k.Verifies, Problem: k.Problem}
		if ko.Verifies == nil {
			ko.Verifies = []string{}
		}
		rep.Keys = append(rep.Keys, ko)
	}
	for _, l := range res.Logs {
		rep.ServerLog = append(rep.ServerLog, logOut{Level: levelName(l.Level), Message: l.Message, Detail: l.Detail})
	}
	if verr != nil {
		rep.Error = verr.Error()
		rep.ServerLog = append(rep.ServerLog, failedRecord(verr))
		rep.Ident = identOut{Mode: identMode(req), Status: "skip", Detail: "The module failed: the server refuses the login."}
		return exitFor(res.Reason)
	}
	rep.Ident = decideIdent(req, rep.Request.Map, res)
	rep.Accepted = res.Authorized && rep.Ident.Status != "fail"
	if rep.Accepted {
		return exitOK
	}
	return exitRejected
}

// exitFor is the exit status of a module failure: a configuration the
// server has (1), or a problem of the tool's own environment (2).
func exitFor(r validator.Reason) int {
	switch r {
	case validator.ReasonConfig, validator.ReasonAudNotConfigured:
		return exitRejected
	}
	return exitUsage
}

func identMode(req validator.Request) string {
	if req.Delegate {
		return "delegated"
	}
	return "pg_ident"
}

// decideIdent says what PostgreSQL does with an accepted identity. In
// delegated mode the module has decided; without a map, PostgreSQL
// requires the identity to equal the role; with a map it looks the pair
// up in pg_ident.conf, which this tool does not read.
func decideIdent(req validator.Request, mapName string, res validator.Result) identOut {
	o := identOut{Mode: identMode(req)}
	switch {
	case !res.Authorized:
		o.Status, o.Detail = "skip", "The module refused the token."
	case req.Delegate:
		o.Status, o.Detail = "pass", fmt.Sprintf("delegate_ident_mapping=1: the module granted role %q; pg_ident.conf is not consulted.", req.Role)
	case mapName != "":
		o.Status = "skip"
		o.Detail = fmt.Sprintf("PostgreSQL then looks up identity %q for role %s in pg_ident.conf map %q (not checked here).", res.AuthnID, roleText(req.Role), mapName)
	case req.Role == "":
		o.Status = "skip"
		o.Detail = fmt.Sprintf("Without a map, PostgreSQL lets identity %q log in only as the role of the same name (give --role to check).", res.AuthnID)
	case req.Role == res.AuthnID:
		o.Status, o.Detail = "pass", fmt.Sprintf("Without a map, the identity must equal the role: both are %q.", req.Role)
	default:
		o.Status = "fail"
		o.Detail = fmt.Sprintf("Without a map, PostgreSQL requires the identity to equal the role: identity %q, role %q. "+
			"Add map=... to the pg_hba.conf line with a pg_ident.conf entry, or log in as %q.", res.AuthnID, req.Role, res.AuthnID)
	}
	return o
}

func roleText(r string) string {
	if r == "" {
		return "(the role asked for)"
	}
	return fmt.Sprintf("%q", r)
}

// failedRecord is the record the module's cgo layer logs when the
// validator fails (see validator/capi).
func failedRecord(err error) logOut {
	msg := err.Error()
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:]
	}
	return logOut{Level: "LOG", Message: "validator failed", Detail: msg + "."}
}

func levelName(l validator.Level) string {
	switch l {
	case validator.LevelDebug:
		return "DEBUG1"
	case validator.LevelWarning:
		return "WARNING"
	}
	return "LOG"
}

// readToken reads the token from the file named in pos, or from standard
// input. It accepts the token alone, "Bearer <token>", or a token endpoint
// response (JSON with access_token). A token-like argument is refused.
func readToken(e *env, pos []string) (string, []string, error) {
	if len(pos) > 1 {
		for _, p := range pos {
			if looksLikeToken(p) {
				return "", nil, errTokenArg
			}
		}
		return "", nil, fmt.Errorf("expected at most one FILE, got %d arguments", len(pos))
	}
	var (
		data []byte
		err  error
		from = "standard input"
	)
	if len(pos) == 1 && pos[0] != "-" {
		path := pos[0]
		if _, statErr := os.Stat(path); statErr != nil && looksLikeToken(path) {
			return "", nil, errTokenArg
		}
		from = path
		var fh *os.File
		if fh, err = os.Open(path); err != nil {
			return "", nil, err
		}
		defer fh.Close()
		data, err = io.ReadAll(io.LimitReader(fh, maxInput+1))
	} else {
		if e.isTerminal != nil && e.isTerminal(e.stdin) {
			fmt.Fprintln(e.stderr, "Paste the token, then press Enter and Ctrl-D:")
		}
		data, err = io.ReadAll(io.LimitReader(e.stdin, maxInput+1))
	}
	if err != nil {
		return "", nil, fmt.Errorf("reading the token from %s: %w", from, err)
	}
	if len(data) > maxInput {
		return "", nil, fmt.Errorf("%s holds more than %d bytes: not a token", from, maxInput)
	}
	s := strings.TrimSpace(string(data))
	var notes []string
	if strings.HasPrefix(s, "{") && gjson.Valid(s) {
		at := gjson.Get(s, "access_token")
		if at.Type != gjson.String {
			return "", nil, fmt.Errorf("%s is JSON without an access_token string", from)
		}
		s = strings.TrimSpace(at.Str)
		notes = append(notes, fmt.Sprintf("The token is the access_token of the token endpoint response in %s.", from))
	}
	if len(s) > 7 && strings.EqualFold(s[:7], "bearer ") {
		s = strings.TrimSpace(s[7:])
		notes = append(notes, "A leading \"Bearer \" was removed, as the server does.")
	}
	if s == "" {
		return "", nil, fmt.Errorf("no token in %s", from)
	}
	return s, notes, nil
}

// printTokenReport writes the human report.
func printTokenReport(p *printer, r *tokenReport) {
	sanitize(r)
	verdict := p.paint(cGreen+cBold, "ACCEPTED")
	switch {
	case r.Error != "":
		verdict = p.paint(cRed+cBold, "MODULE ERROR") + " (" + r.Reason + ")"
	case !r.Accepted && r.Reason == string(validator.ReasonOK):
		verdict = p.paint(cRed+cBold, "REFUSED BY POSTGRESQL") + " (the module accepts; see Decision)"
	case !r.Accepted:
		verdict = p.paint(cRed+cBold, "REJECTED") + " (" + r.Reason + ")"
	}
	p.printf("oauth_jwt_check token: %s\n", verdict)

	p.section("Request")
	rq := r.Request
	rs := []row{{"issuer", fmt.Sprintf("%q  (%s)", rq.Issuer, rq.Source)}}
	if rq.Scope != "" {
		rs = append(rs, row{"scope", fmt.Sprintf("%q", rq.Scope)})
	}
	role := "(not given)"
	if rq.Role != "" {
		role = fmt.Sprintf("%q", rq.Role)
	}
	rs = append(rs, row{"role", role})
	mode := "pg_ident.conf, no map: the identity must equal the role"
	switch {
	case rq.Delegate:
		mode = "delegate_ident_mapping=1: the module decides the role"
	case rq.Map != "":
		mode = fmt.Sprintf("pg_ident.conf map %q", rq.Map)
	}
	rs = append(rs, row{"mapping", mode}, row{"time", r.Now})
	p.rows(rs)

	p.section("Settings")
	rs = nil
	for _, s := range r.Settings {
		v := fmt.Sprintf("%q", s.Value)
		if s.Raw != "" && s.Raw != s.Value {
			v += fmt.Sprintf(" (written %q)", s.Raw)
		}
		rs = append(rs, row{s.Name, v + "  " + s.Origin})
	}
	if len(r.Settings) == 0 {
		rs = append(rs, row{"(none)", "every setting has its default"})
	}
	rs = append(rs, row{"key cache", r.CacheDir})
	p.rows(rs)

	if len(r.Notes) > 0 {
		p.section("Notes")
		for _, n := range r.Notes {
			lines := wrap(n, lineWidth-4)
			for i, l := range lines {
				if i == 0 {
					p.printf("  - %s\n", l)
				} else {
					p.printf("    %s\n", l)
				}
			}
		}
	}

	p.section("Token (decoded; the token and its signature are never shown)")
	if r.Header != nil {
		p.printf("  header\n%s\n", indentJSON(r.Header, "    "))
	} else {
		p.printf("  header     not decodable as JSON\n")
	}
	if r.Claims != nil {
		p.printf("  claims\n%s\n", indentJSON(r.Claims, "    "))
	} else if r.Segments > 1 {
		p.printf("  claims     not decodable as JSON\n")
	}
	sig := "none"
	if r.SignatureBytes >= 0 {
		sig = fmt.Sprintf("%d bytes", r.SignatureBytes)
	}
	p.printf("  segments   %d; signature %s\n", r.Segments, sig)

	p.section("Checks, in the order the server runs them")
	p.checks(r.Checks)

	if len(r.Keys) > 0 {
		p.section("The issuer's keys")
		p.keys(r.Keys)
	}

	p.section("Decision")
	rs = nil
	switch {
	case r.Error != "":
		rs = append(rs, row{"module", p.paint(cRed, "fails") + ": " + r.Error})
	case r.Reason == string(validator.ReasonOK):
		rs = append(rs, row{"module", p.paint(cGreen, "accepts the token")})
	default:
		rs = append(rs, row{"module", p.paint(cRed, "rejects the token") + ": " + r.Reason})
	}
	if r.AuthnID != "" {
		rs = append(rs, row{"authn_id", fmt.Sprintf("%q", r.AuthnID)})
	} else {
		rs = append(rs, row{"authn_id", "(none: the identity is read only from a token whose signature verified)"})
	}
	role = r.Ident.Detail
	switch r.Ident.Status {
	case "pass":
		role = p.paint(cGreen, "allowed") + ": " + role
	case "fail":
		role = p.paint(cRed, "refused") + ": " + role
	}
	rs = append(rs, row{"role", role})
	p.rows(rs)

	p.section("The server log would show")
	p.serverLog(r.ServerLog)
}
