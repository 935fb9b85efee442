package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/oauth-jwt/oauth_jwt/validator"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// issuerReport is the result of "oauth_jwt_check issuer"; its JSON field
// names are stable.
type issuerReport struct {
	Command      string     `json:"command"` // "issuer"
	Issuer       string     `json:"issuer"`
	OK           bool       `json:"ok"` // no check failed
	DiscoveryURL string     `json:"discovery_url"`
	JWKSURI      string     `json:"jwks_uri"`
	JWKSFile     string     `json:"jwks_file,omitempty"` // offline keys: no request is made
	Checks       []checkOut `json:"checks"`
	Keys         []keyOut   `json:"keys"`
	Server       string     `json:"server"` // what the module will see
	Psql         string     `json:"psql"`   // what psql (libpq) will see
	Notes        []string   `json:"notes"`
}

type issuerFlags struct {
	discoveryURL, jwksURI, caFile, proxy, timeout, config string
	allowHTTP, json                                       bool
	sets                                                  multiFlag
}

func cmdIssuer(e *env, args []string) int {
	var f issuerFlags
	fs := flag.NewFlagSet("oauth_jwt_check issuer", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&f.discoveryURL, "discovery-url", "", "fetch the discovery document from this `URL` (as oauth_jwt.discovery_url)")
	fs.StringVar(&f.jwksURI, "jwks-uri", "", "take the keys from this `URL` (as oauth_jwt.jwks_uri)")
	fs.StringVar(&f.caFile, "ca-file", "", "trust the CA certificates in this PEM `file` instead of the system roots (as oauth_jwt.ca_file)")
	fs.StringVar(&f.proxy, "http-proxy", "", "use this proxy `URL` (as oauth_jwt.http_proxy; the environment is never used)")
	fs.StringVar(&f.timeout, "http-timeout", "", "time limit of each request, such as 5s (as oauth_jwt.http_timeout)")
	fs.BoolVar(&f.allowHTTP, "allow-http-loopback", false, "allow plain http for loopback hosts (as oauth_jwt.require_https = off; tests only)")
	fs.StringVar(&f.config, "config", "", "`postgresql.conf` to take the settings above from (and issuer_config sections)")
	fs.Var(&f.sets, "set", "`name=value`: a setting, as for the token command; repeatable")
	fs.BoolVar(&f.json, "json", false, "print a JSON report")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: oauth_jwt_check issuer [flags] URL\n\n"+
			"Checks the discovery document and keys of the issuer URL (exactly as in pg_hba.conf) with the\n"+
			"module's HTTP client rules, and says what the server and psql will see.\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintln(e.stderr, "oauth_jwt_check: issuer: expected one URL")
		fs.Usage()
		return exitUsage
	}
	code, err := checkIssuer(e, &f, pos[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "oauth_jwt_check: %v\n", err)
	}
	return code
}

// checkIssuer does the work of cmdIssuer once the flags are parsed.
func checkIssuer(e *env, f *issuerFlags, issuer string) (int, error) {
	st := newSettings()
	if f.config != "" {
		if err := st.loadConf(f.config); err != nil {
			return exitUsage, err
		}
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
	for _, o := range []struct{ name, value string }{
		{"discovery_url", f.discoveryURL}, {"jwks_uri", f.jwksURI}, {"ca_file", f.caFile},
		{"http_proxy", f.proxy}, {"http_timeout", f.timeout},
	} {
		if o.value != "" {
			if err := st.assign(o.name, o.value, "--"+strings.ReplaceAll(o.name, "_", "-"), false); err != nil {
				return exitUsage, err
			}
		}
	}
	if f.allowHTTP {
		st.set("require_https", "off", "", "--allow-http-loopback")
	}
	vs := st.validatorSettings()
	if vs["audience"] == "" && vs["issuer_config"] == "" {
		// The audience matters to tokens, not to issuers; ParseSettings
		// requires one, so give it a placeholder.
		vs["audience"] = "oauth_jwt_check"
	}
	dir, err := os.MkdirTemp(e.tempDir, "oauth_jwt_check-")
	if err != nil {
		return exitUsage, fmt.Errorf("cannot make a private key cache: %w", err)
	}
	defer os.RemoveAll(dir)
	vs["cache_dir"] = dir

	rep := issuerReport{Command: "issuer", Issuer: issuer, Checks: []checkOut{}, Keys: []keyOut{}, Notes: st.notes}
	if rep.Notes == nil {
		rep.Notes = []string{}
	}
	ic := &issuerCheck{e: e, rep: &rep}
	ic.run(vs)
	rep.OK = true
	for _, c := range rep.Checks {
		if c.Status == "fail" {
			rep.OK = false
		}
	}
	if f.json {
		if err := writeJSON(e.stdout, rep); err != nil {
			return exitUsage, err
		}
	} else {
		printIssuerReport(&printer{w: e.stdout, colour: useColour(e, e.stdout)}, &rep)
	}
	if !rep.OK {
		return exitRejected, nil
	}
	return exitOK, nil
}

// issuerCheck holds the state of one issuer check.
type issuerCheck struct {
	e   *env
	rep *issuerReport

	cfg    *validator.Config
	pol    *validator.Policy
	client *http.Client
	doc    gjson.Result // the discovery document, when fetched
	psql   []string     // what breaks psql
	server []string     // what breaks the server
}

func (ic *issuerCheck) add(c checkOut) { ic.rep.Checks = append(ic.rep.Checks, c) }

func (ic *issuerCheck) skip(name, why string) {
	ic.add(checkOut{Name: name, Status: "skip", Detail: why})
}

// loopbackHTTP says whether u is plain http to a loopback host.
func loopbackHTTP(u *url.URL) bool {
	if u.Scheme != "http" {
		return false
	}
	h := u.Hostname()
	ip := net.ParseIP(h)
	return strings.EqualFold(h, "localhost") || ip != nil && ip.IsLoopback()
}

// urlProblem says what is wrong with an endpoint URL for the module and
// psql: "" when it is an https URL (or loopback http, when allowed).
func (ic *issuerCheck) urlProblem(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		return "not an absolute URL"
	case u.Scheme == "https":
		return ""
	case loopbackHTTP(u) && !ic.cfg.RequireHTTPS:
		return ""
	case u.Scheme == "http":
		return "plain http: https is required (plain http is allowed only for loopback hosts, with oauth_jwt.require_https off)"
	}
	return fmt.Sprintf("scheme %q: https is required", u.Scheme)
}

const (
	psqlHTTPNote = "psql accepts plain http only with PGOAUTHDEBUG=UNSAFE (for tests)."
	hintIssuer   = "Use the issuer exactly as the provider's discovery document names it, in pg_hba.conf and in libpq's oauth_issuer."
)

func (ic *issuerCheck) run(vs validator.Settings) {
	issuer := ic.rep.Issuer
	const (
		nURL       = "issuer_url"
		nSettings  = "settings"
		nDiscovery = "discovery"
		nDocIssuer = "discovery_issuer"
		nType      = "content_type"
		nJWKSURI   = "jwks_uri"
		nKeys      = "keys"
		nSigning   = "signing_keys"
		nToken     = "token_endpoint"
		nDevice    = "device_endpoint"
	)
	later := []string{nDiscovery, nDocIssuer, nType, nJWKSURI, nKeys, nSigning, nToken, nDevice}
	skipRest := func(from int, why string) {
		for _, n := range later[from:] {
			ic.skip(n, why)
		}
	}

	// The settings that shape the requests.
	cfg, err := validator.ParseSettings(vs)
	if err != nil {
		ic.add(checkOut{Name: nSettings, Status: "fail", Reason: string(validator.ReasonConfig), Detail: err.Error(),
			Hint: validator.Hint(validator.ReasonConfig)})
		ic.server = append(ic.server, "its settings are invalid")
		skipRest(0, "Not reached: the settings are invalid.")
		ic.summarise()
		return
	}
	ic.cfg, ic.pol = cfg, cfg.PolicyFor(issuer)
	client, err := keycache.NewHTTPClient(cfg.HTTPTimeout, cfg.CAFile, cfg.HTTPProxy)
	if err != nil {
		ic.add(checkOut{Name: nSettings, Status: "fail", Reason: string(validator.ReasonConfig), Detail: err.Error(),
			Hint: validator.Hint(validator.ReasonConfig)})
		ic.server = append(ic.server, "its HTTP client cannot be built")
		skipRest(0, "Not reached: the HTTP client cannot be built.")
		ic.summarise()
		return
	}
	ic.client = client
	ic.add(checkOut{Name: nSettings, Status: "pass", Got: fmt.Sprintf("http_timeout %d ms, require_https %s, ca_file %s, http_proxy %s",
		cfg.HTTPTimeout.Milliseconds(), onOff(cfg.RequireHTTPS), orNone(cfg.CAFile), orNone(redactURL(cfg.HTTPProxy))),
		Want: "settings the module accepts"})

	// The issuer identifier itself.
	c := checkOut{Name: nURL, Got: issuer, Want: "an absolute https URL without query or fragment"}
	u, err := url.Parse(issuer)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		c.Status, c.Detail = "fail", "The issuer is not an absolute URL."
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		c.Status, c.Detail = "fail", "An issuer identifier has no query, fragment or user information (OpenID Connect Discovery 1.0, RFC 8414)."
	case ic.urlProblem(issuer) != "":
		c.Status, c.Detail = "fail", "The issuer URL: "+ic.urlProblem(issuer)+"."
		c.Reason, c.Hint = string(validator.ReasonConfig), "Use the https issuer; plain http works only for loopback test providers with \"oauth_jwt.require_https\" off (here: --allow-http-loopback)."
	default:
		c.Status = "pass"
		if u.Scheme == "http" {
			c.Detail = "Plain http on loopback: accepted with require_https off. " + psqlHTTPNote
		}
		if strings.HasSuffix(issuer, "/") {
			c.Detail = strings.TrimSpace(c.Detail + " The issuer ends with \"/\": tokens' iss must end with it too.")
		}
	}
	ic.add(c)
	if c.Status == "fail" {
		ic.server = append(ic.server, "the issuer URL is unusable")
		ic.psql = append(ic.psql, "the issuer URL is unusable")
		skipRest(0, "Not reached: the issuer URL is unusable.")
		ic.summarise()
		return
	}

	// Offline keys: the module makes no request for this issuer, and so
	// the tool (which may run on a host that cannot reach the provider)
	// makes none either.
	if ic.pol.JWKSFile != "" {
		ic.rep.JWKSFile = ic.pol.JWKSFile
		for _, n := range []string{nDiscovery, nDocIssuer, nType, nJWKSURI} {
			ic.skip(n, `Not checked: "oauth_jwt.jwks_file" is set, so the module never makes a request for this issuer (nor does this tool).`)
		}
		ic.checkKeyFile(nKeys, nSigning)
		for _, n := range []string{nToken, nDevice} {
			ic.skip(n, "Not checked: psql's device flow needs the identity provider; run this tool without the key file setting on a host that reaches it.")
		}
		ic.summarise()
		return
	}

	// The discovery document, as psql and (without jwks_uri) the server fetch it.
	docURL := ic.pol.DiscoveryURL
	if docURL == "" {
		docURL = strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	}
	ic.rep.DiscoveryURL = docURL
	body, ctype, status, ferr := ic.fetch(docURL)
	c = checkOut{Name: nDiscovery, Want: "HTTP 200 and a JSON object at " + docURL}
	serverNeedsDoc := ic.pol.JWKSURI == ""
	switch {
	case ferr != nil:
		c.Status, c.Detail = "fail", ferr.Error()+"."
	case status != http.StatusOK:
		c.Status, c.Got = "fail", fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
		c.Detail = "The discovery document could not be fetched."
	case !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject():
		c.Status, c.Got = "fail", fmt.Sprintf("HTTP 200, %d bytes that are not a JSON object", len(body))
		c.Detail = "The answer is not a discovery document: check the issuer URL (or oauth_jwt.discovery_url)."
	default:
		c.Status, c.Got = "pass", fmt.Sprintf("HTTP 200, a JSON object of %d members", countMembers(body))
		ic.doc = gjson.ParseBytes(body)
	}
	if c.Status == "fail" {
		c.Hint = "Check that the URL is the issuer exactly (or give the provider's discovery document with --discovery-url), " +
			"and that this host reaches it: network, --ca-file, --http-proxy, --http-timeout. Run the tool on the server host."
		if serverNeedsDoc {
			ic.server = append(ic.server, "it cannot fetch the discovery document")
		}
		ic.psql = append(ic.psql, "it cannot fetch the discovery document")
	}
	ic.add(c)

	if !ic.doc.Exists() {
		for _, n := range []string{nDocIssuer, nType, nJWKSURI} {
			ic.skip(n, "Not reached: no discovery document.")
		}
	} else {
		// issuer member
		got := ic.doc.Get("issuer")
		c = checkOut{Name: nDocIssuer, Got: quoteJSON(got), Want: fmt.Sprintf("%q, byte for byte", issuer)}
		switch {
		case got.Type == gjson.String && got.Str == issuer:
			c.Status = "pass"
		default:
			c.Status = "fail"
			c.Detail = "The discovery document names another issuer: the module refuses every token (discovery_issuer_mismatch) and psql refuses to log in (\"the issuer identifier does not match oauth_issuer\")."
			if got.Type == gjson.String && strings.TrimRight(got.Str, "/") == strings.TrimRight(issuer, "/") {
				c.Detail += " They differ only by a trailing slash."
			}
			c.Reason, c.Hint = string(validator.ReasonDiscoveryIssuerMismatch), hintIssuer
			if got.Type == gjson.String {
				c.Hint += fmt.Sprintf(" Here: %q.", got.Str)
			}
			ic.psql = append(ic.psql, "the discovery document names another issuer")
		}
		ic.add(c)

		// Content-Type, which libpq checks.
		c = checkOut{Name: nType, Got: orNone(ctype), Want: "application/json (psql requires it)"}
		if mt, _, err := mime.ParseMediaType(ctype); err == nil && mt == "application/json" {
			c.Status = "pass"
		} else {
			c.Status, c.Detail = "fail", "psql (libpq) refuses a discovery document served with another content type."
			ic.psql = append(ic.psql, "the discovery document is not served as application/json")
		}
		ic.add(c)

		// jwks_uri
		j := ic.doc.Get("jwks_uri")
		c = checkOut{Name: nJWKSURI, Got: quoteJSON(j), Want: "an https URL"}
		switch {
		case ic.pol.JWKSURI != "":
			c.Status = "pass"
			c.Detail = fmt.Sprintf("\"oauth_jwt.jwks_uri\" is set: the module takes the keys from %s instead.", ic.pol.JWKSURI)
		case j.Type != gjson.String || j.Str == "":
			c.Status, c.Detail = "fail", "The discovery document has no jwks_uri: the module cannot find the keys."
			c.Reason, c.Hint = string(validator.ReasonKeysUnavailable), "Set \"oauth_jwt.jwks_uri\" to the provider's key set URL."
		case ic.urlProblem(j.Str) != "":
			c.Status, c.Detail = "fail", "jwks_uri: "+ic.urlProblem(j.Str)+"."
			c.Reason, c.Hint = string(validator.ReasonConfig), "Configure the provider to publish an https jwks_uri."
		default:
			c.Status = "pass"
		}
		if c.Status == "fail" {
			ic.server = append(ic.server, "the discovery document has no usable jwks_uri")
		}
		ic.add(c)
	}
	ic.rep.JWKSURI = ic.pol.JWKSURI
	if ic.rep.JWKSURI == "" && ic.doc.Get("jwks_uri").Type == gjson.String {
		ic.rep.JWKSURI = ic.doc.Get("jwks_uri").Str
	}

	// The keys, exactly as the module's key cache gets them.
	ic.checkKeys(vs["cache_dir"], nKeys, nSigning)

	// Introspection (RFC 7662), when the settings ask for it.
	if ic.pol.Introspection != "" && ic.pol.Introspection != validator.IntrospectionOff {
		ic.checkIntrospection()
	}

	// psql's device flow.
	for _, ep := range []struct{ name, member, what string }{
		{nToken, "token_endpoint", "token endpoint"},
		{nDevice, "device_authorization_endpoint", "device authorization endpoint"},
	} {
		if !ic.doc.Exists() {
			ic.skip(ep.name, "Not reached: no discovery document.")
			continue
		}
		v := ic.doc.Get(ep.member)
		c := checkOut{Name: ep.name, Got: quoteJSON(v), Want: "an https URL (psql's device flow needs it)"}
		switch {
		case v.Type != gjson.String || v.Str == "":
			c.Status, c.Detail = "fail", fmt.Sprintf("The provider names no %s: psql cannot log in with the device flow.", ep.what)
			if ep.name == nDevice {
				c.Detail += " Enable the OAuth 2.0 device authorization grant for the provider (Keycloak: \"OAuth 2.0 Device Authorization Grant\" on the client)."
			}
			ic.psql = append(ic.psql, "there is no "+ep.what)
		case strings.HasPrefix(strings.ToLower(v.Str), "https://"):
			c.Status = "pass"
		default:
			u, err := url.Parse(v.Str)
			if err == nil && loopbackHTTP(u) && !ic.cfg.RequireHTTPS {
				c.Status, c.Detail = "pass", psqlHTTPNote
			} else {
				c.Status, c.Detail = "fail", fmt.Sprintf("psql requires an https %s.", ep.what)
				ic.psql = append(ic.psql, "the "+ep.what+" is not https")
			}
		}
		ic.add(c)
	}
	ic.summarise()
}

// checkKeys gets the key set with the module's key cache and HTTP client
// rules, and checks that some key can verify an allowed algorithm.
func (ic *issuerCheck) checkKeys(dir, nKeys, nSigning string) {
	cfg := ic.cfg
	cache, err := keycache.New(keycache.Config{
		Dir: dir, RefreshInterval: cfg.CacheRefreshInterval, MaxStale: cfg.CacheMaxStale,
		KIDRefetchInterval: cfg.KIDRefetchInterval, HTTPClient: ic.client, RequireHTTPS: cfg.RequireHTTPS,
		Now: ic.e.now,
	})
	c := checkOut{Name: nKeys, Want: "the key set, fetched as the module fetches it"}
	if err != nil {
		c.Status, c.Detail = "fail", err.Error()
		reason := validator.KeySourceReason(err)
		c.Reason, c.Hint = string(reason), validator.Hint(reason)
		ic.add(c)
		ic.skip(nSigning, "Not reached: no key set.")
		ic.server = append(ic.server, "its key cache cannot be used")
		return
	}
	ctx, cancel := context.WithTimeout(ic.e.ctx, 4*cfg.HTTPTimeout)
	defer cancel()
	keys, err := cache.Keys(ctx, keycache.Query{Issuer: ic.rep.Issuer, DiscoveryURL: ic.pol.DiscoveryURL, JWKSURI: ic.pol.JWKSURI})
	if err != nil {
		reason := validator.KeySourceReason(err)
		c.Status, c.Detail = "fail", err.Error()+"."
		c.Reason, c.Hint = string(reason), validator.Hint(reason)
		ic.add(c)
		ic.skip(nSigning, "Not reached: no key set.")
		ic.server = append(ic.server, fmt.Sprintf("it cannot get the keys (%s): every token is refused", reason))
		return
	}
	c.Status, c.Got = "pass", fmt.Sprintf("%d keys", keys.Set.Len())
	ic.add(c)
	ic.checkSigningKeys(keys.Set, nSigning)
}

// checkIntrospection checks where the module would send introspection
// requests and that its client secret file can be used. It sends none: a
// request needs a token (the token command does that).
func (ic *issuerCheck) checkIntrospection() {
	ep := ic.pol.IntrospectionEndpoint
	c := checkOut{Name: "introspection_endpoint", Want: "an https URL (\"oauth_jwt.introspection_endpoint\" or the discovery document's)"}
	if ep == "" {
		if v := ic.doc.Get("introspection_endpoint"); v.Type == gjson.String {
			ep = v.Str
		}
	}
	switch {
	case ep == "":
		c.Status, c.Detail = "fail", "The discovery document names no introspection_endpoint and \"oauth_jwt.introspection_endpoint\" is not set: every login of this issuer fails (introspection_failed)."
		c.Reason = string(validator.ReasonIntrospectionFailed)
		ic.server = append(ic.server, "it has no introspection endpoint")
	case ic.urlProblem(ep) != "":
		c.Status, c.Got, c.Detail = "fail", ep, "introspection_endpoint: "+ic.urlProblem(ep)+"."
		c.Reason = string(validator.ReasonConfig)
		ic.server = append(ic.server, "its introspection endpoint is not usable")
	default:
		c.Status, c.Got = "pass", ep
		c.Detail = fmt.Sprintf("introspection %s, client %q, answers cached for %s.", ic.pol.Introspection, ic.pol.IntrospectionClientID, ic.pol.IntrospectionCacheTTL)
	}
	ic.add(c)
}

// checkKeyFile reads the jwks_file as the module reads it (the trusted-file
// checks, the size bound, the JWK set parser).
func (ic *issuerCheck) checkKeyFile(nKeys, nSigning string) {
	c := checkOut{Name: nKeys, Want: "the key set in " + ic.pol.JWKSFile + ", read as the module reads it"}
	set, err := validator.ReadKeyFile(ic.pol.JWKSFile)
	if err != nil {
		c.Status, c.Detail = "fail", err.Error()+"."
		c.Reason = string(validator.ReasonKeysUnavailable)
		c.Hint = "Make the file a JWK set owned by the server's OS user (or root), writable only by its owner, in directories others cannot write."
		ic.add(c)
		ic.skip(nSigning, "Not reached: no key set.")
		ic.server = append(ic.server, "it cannot read the key file: every token is refused (keys_unavailable)")
		return
	}
	c.Status, c.Got = "pass", fmt.Sprintf("%d keys", set.Len())
	ic.add(c)
	ic.checkSigningKeys(set, nSigning)
}

// checkSigningKeys checks that some key of set can verify an allowed algorithm.
func (ic *issuerCheck) checkSigningKeys(set *keycache.KeySet, nSigning string) {
	infos := validator.DescribeKeys(set)
	var usable []string
	for _, k := range infos {
		ko := keyOut{KID: k.KID, Type: k.Type, Alg: k.Alg, Use: k.Use, Bits: k.Bits, Verifies: k.Verifies, Problem: k.Problem}
		if ko.Verifies == nil {
			ko.Verifies = []string{}
		}
		ic.rep.Keys = append(ic.rep.Keys, ko)
		var algs []string
		for _, a := range k.Verifies {
			if slices.Contains(ic.pol.AllowedAlgorithms, a) {
				algs = append(algs, a)
			}
		}
		if len(algs) > 0 {
			usable = append(usable, fmt.Sprintf("%q (%s)", k.KID, strings.Join(algs, ", ")))
		}
	}
	c := checkOut{Name: nSigning, Want: "at least one key that verifies an allowed algorithm (" + strings.Join(ic.pol.AllowedAlgorithms, ", ") + ")"}
	if len(usable) > 0 {
		c.Status, c.Got = "pass", fmt.Sprintf("%d usable: %s", len(usable), strings.Join(usable, ", "))
	} else {
		c.Status, c.Got = "fail", "none"
		c.Detail = "No key of the set can verify a token signed with an allowed algorithm; see the keys below."
		c.Hint = "Publish an RSA (2048 bits or more) or EC signing key, or allow its algorithm in \"oauth_jwt.allowed_algorithms\"."
		ic.server = append(ic.server, "no key can verify a token")
	}
	ic.add(c)
}

// summarise writes what the server and psql will see.
func (ic *issuerCheck) summarise() {
	r := ic.rep
	if r.JWKSFile != "" {
		if len(ic.server) == 0 {
			r.Server = fmt.Sprintf("The module takes the keys of %q from the file %s (\"oauth_jwt.jwks_file\") and never makes a network request for this issuer.", r.Issuer, r.JWKSFile)
		} else {
			r.Server = "The module cannot verify tokens of this issuer: " + strings.Join(ic.server, "; ") + ". It never makes a network request for this issuer (\"oauth_jwt.jwks_file\" is set)."
		}
		r.Psql = "Not checked: with a key file this tool makes no request to the identity provider."
		return
	}
	if len(ic.server) == 0 {
		src := "the jwks_uri of " + r.DiscoveryURL
		if ic.pol != nil && ic.pol.JWKSURI != "" {
			src = ic.pol.JWKSURI + " (oauth_jwt.jwks_uri)"
		}
		r.Server = fmt.Sprintf("The module takes the keys of %q from %s (%s) and can verify tokens with them.", r.Issuer, src, r.JWKSURI)
	} else {
		r.Server = "The module cannot verify tokens of this issuer: " + strings.Join(ic.server, "; ") + "."
	}
	if len(ic.psql) == 0 {
		r.Psql = fmt.Sprintf("psql with oauth_issuer=%s and your oauth_client_id logs in through the device flow at %s, then gets the token from %s.",
			r.Issuer, ic.doc.Get("device_authorization_endpoint").Str, ic.doc.Get("token_endpoint").Str)
	} else {
		r.Psql = "psql cannot log in with this issuer: " + strings.Join(ic.psql, "; ") + "."
	}
	if len(ic.psql) == 0 && len(ic.server) == 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("pg_hba.conf: host all all 0.0.0.0/0 oauth issuer=\"%s\" scope=\"openid\" map=...", r.Issuer))
	}
}

// fetch GETs u with the module's HTTP client and its body bound.
func (ic *issuerCheck) fetch(u string) (body []byte, ctype string, status int, err error) {
	ctx, cancel := context.WithTimeout(ic.e.ctx, ic.cfg.HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", 0, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "oauth_jwt_check")
	resp, err := ic.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("GET %s: %w", redactURL(u), ue.Err)
		}
		return nil, "", 0, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, keycache.DefaultMaxBodyBytes+1))
	if err != nil {
		return nil, "", 0, fmt.Errorf("GET %s: reading the body: %w", redactURL(u), err)
	}
	if len(body) > keycache.DefaultMaxBodyBytes {
		return nil, "", 0, fmt.Errorf("GET %s: the body is larger than %d bytes", redactURL(u), keycache.DefaultMaxBodyBytes)
	}
	return body, resp.Header.Get("Content-Type"), resp.StatusCode, nil
}

// redactURL drops user information, query and fragment, which may hold secrets.
func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	v := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return v.String()
}

func countMembers(body []byte) int {
	n := 0
	gjson.ParseBytes(body).ForEach(func(_, _ gjson.Result) bool { n++; return true })
	return n
}

func quoteJSON(v gjson.Result) string {
	switch {
	case !v.Exists():
		return "absent"
	case v.Type == gjson.String:
		b, _ := json.Marshal(v.Str)
		return string(b)
	}
	if len(v.Raw) > 80 {
		return v.Raw[:80] + "..."
	}
	return v.Raw
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// printIssuerReport writes the human report.
func printIssuerReport(p *printer, r *issuerReport) {
	sanitize(r)
	verdict := p.paint(cGreen+cBold, "OK")
	if !r.OK {
		verdict = p.paint(cRed+cBold, "PROBLEMS")
	}
	p.printf("oauth_jwt_check issuer: %s\n", verdict)
	p.section("Issuer")
	rs := []row{{"issuer", r.Issuer}}
	if r.DiscoveryURL != "" {
		rs = append(rs, row{"discovery", r.DiscoveryURL})
	}
	if r.JWKSURI != "" {
		rs = append(rs, row{"jwks_uri", r.JWKSURI})
	}
	if r.JWKSFile != "" {
		rs = append(rs, row{"jwks_file", r.JWKSFile + " (offline: no network request)"})
	}
	p.rows(rs)
	p.section("Checks")
	p.checks(r.Checks)
	if len(r.Keys) > 0 {
		p.section("Keys")
		p.keys(r.Keys)
	}
	p.section("What they will see")
	p.rows([]row{{"server", r.Server}, {"psql", r.Psql}})
	if len(r.Notes) > 0 {
		p.section("Notes")
		for _, n := range r.Notes {
			p.printf("  - %s\n", n)
		}
	}
}
