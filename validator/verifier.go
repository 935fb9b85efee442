package validator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oauth-jwt/oauth_jwt/internal/trustedfile"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
	"github.com/tidwall/gjson"
)

// Option changes how New builds a Verifier.
type Option func(*options)

type options struct {
	src    keycache.Source
	wrap   func(keycache.Source) keycache.Source
	now    func() time.Time
	intro  Introspector
	answer *suppliedAnswer
}

// WithKeySource makes the Verifier take keys from src instead of the
// default key cache (for tests and tools).
func WithKeySource(src keycache.Source) Option { return func(o *options) { o.src = src } }

// WithKeySourceWrapper makes the Verifier take keys from wrap(src), where
// src is the key source it would otherwise use. The module uses it to judge
// a token again after its fetch helper ran, with the helper's outcome.
func WithKeySourceWrapper(wrap func(keycache.Source) keycache.Source) Option {
	return func(o *options) { o.wrap = wrap }
}

// WithClock sets the clock used for exp, nbf and iat (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Verifier validates bearer tokens. It implements Validator and is safe for
// concurrent use.
type Verifier struct {
	cfg    *Config
	src    keycache.Source
	intro  Introspector    // nil: introspection is impossible (tests without one)
	answer *suppliedAnswer // the fetch helper's answer, for the module's second pass
	now    func() time.Time
	warned atomic.Bool
}

var _ Validator = (*Verifier)(nil)

// New parses s (see ParseSettings) and returns a Verifier. Without
// WithKeySource, keys come from the key cache in Config.CacheDir.
func New(s Settings, opts ...Option) (*Verifier, error) {
	cfg, err := ParseSettings(s)
	if err != nil {
		return nil, err
	}
	return NewFromConfig(cfg, opts...)
}

// NewFromConfig returns a Verifier for cfg, as made by ParseSettings (the
// caller must not change cfg afterwards). It re-checks the parts of cfg
// that keep tokens safe.
func NewFromConfig(cfg *Config, opts ...Option) (*Verifier, error) {
	if cfg == nil {
		return nil, &ConfigError{Msg: "no configuration"}
	}
	// The default needs an audience unless issuer_config sections or the
	// pg_hba line (PostgreSQL 19) give one.
	lineAudience := cfg.Line != nil && cfg.Line.policy != nil && len(cfg.Line.policy.Audiences) > 0
	if err := checkPolicy(&cfg.Default, cfg.IssuerConfig == "" && !lineAudience); err != nil {
		return nil, err
	}
	if cfg.Line != nil && cfg.Line.policy != nil {
		if err := checkPolicy(cfg.Line.policy, true); err != nil {
			return nil, err
		}
	}
	for iss := range cfg.Issuers {
		p := cfg.Issuers[iss]
		if err := checkPolicy(&p, true); err != nil {
			return nil, err
		}
	}
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.src == nil {
		c, err := defaultSource(cfg, o.now)
		if err != nil {
			return nil, err
		}
		o.src = c
		if o.intro == nil {
			o.intro = c
		}
	}
	if o.wrap != nil {
		o.src = o.wrap(o.src)
	}
	return &Verifier{cfg: cfg, src: o.src, intro: o.intro, answer: o.answer, now: o.now}, nil
}

// NewKeySource returns the key cache that New would use for s (the fetch
// helper fetches through it).
func NewKeySource(s Settings) (keycache.Source, error) {
	cfg, err := ParseSettings(s)
	if err != nil {
		return nil, err
	}
	return defaultSource(cfg, time.Now)
}

// checkPolicy refuses a Policy that would weaken validation.
func checkPolicy(p *Policy, needAudience bool) error {
	if needAudience && len(p.Audiences) == 0 {
		return errNoAudience(nil)
	}
	if len(p.AllowedAlgorithms) == 0 {
		return &ConfigError{Setting: SettingPrefix + "allowed_algorithms", Msg: "no algorithm is allowed"}
	}
	for _, a := range p.AllowedAlgorithms {
		if !slices.Contains(supportedAlgorithms, a) {
			_, err := parseAlgorithms(a, nil)
			return err
		}
	}
	if p.Leeway < 0 || p.Leeway > MaxLeeway {
		return &ConfigError{Setting: SettingPrefix + "leeway", Msg: fmt.Sprintf("must be from 0 to %d seconds", int(MaxLeeway/time.Second))}
	}
	if p.MaxTokenLifetime < MinMaxTokenLifetime || p.MaxTokenLifetime > MaxMaxTokenLifetime {
		return &ConfigError{Setting: SettingPrefix + "max_token_lifetime", Msg: fmt.Sprintf("must be from %d to %d seconds",
			int(MinMaxTokenLifetime/time.Second), int(MaxMaxTokenLifetime/time.Second))}
	}
	if p.AuthnIDClaim == "" {
		return &ConfigError{Setting: SettingPrefix + "authn_id_claim", Msg: "no claim is named"}
	}
	if err := checkKeySources(p); err != nil {
		return err
	}
	return nil
}

// Config returns the configuration in use (do not modify it).
func (v *Verifier) Config() *Config { return v.cfg }

// Validate judges one token; see Validator. The result always carries log
// records; a rejection is a nil error with Authorized false. Validate never
// panics; an unexpected fault becomes an internal error.
func (v *Verifier) Validate(ctx context.Context, req Request) (Result, error) {
	return v.judge(ctx, req, nil)
}

// judge is the one implementation behind Validate and Explain: tr, when
// not nil, records each check as it runs and changes nothing else.
func (v *Verifier) judge(ctx context.Context, req Request, tr *tracer) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			// The panic value is not logged: it could quote the input.
			res = Result{Reason: ReasonInternal}
			err = fmt.Errorf("unexpected fault (%T) while validating a bearer token", p)
			tr.fail(ReasonInternal, err.Error())
		}
		res.Logs = scrub(res.Logs, req.Token)
	}()
	r := &run{v: v, req: req, now: v.now(), tr: tr}
	if !v.warned.Swap(true) {
		r.logs = append(r.logs, v.cfg.Warnings...)
	}
	res, err = r.validate(ctx)
	if tr != nil {
		// Copies, never r itself: r must not escape (Validate allocates
		// nothing for tracing).
		tr.now, tr.pol, tr.keys = r.now, r.pol, r.keys
	}
	return res, err
}

// run is the state of one Validate call.
type run struct {
	v        *Verifier
	req      Request
	pol      *Policy
	now      time.Time
	tok      *token
	logs     []LogRecord
	verified bool
	opaque   bool // an opaque token judged by its introspection answer
	active   bool // the introspection endpoint reported the token active
	authnID  string
	kid      string
	keys     *keycache.Keys // the key set last served (for Explain)
	tr       *tracer        // nil unless Explain
}

func (r *run) validate(ctx context.Context) (Result, error) {
	r.begin(checkRequest)
	if r.req.Issuer == "" {
		return r.internal(ReasonConfig, &ConfigError{Setting: "issuer",
			Msg: "the pg_hba.conf line has no issuer"})
	}
	r.pol = r.v.cfg.PolicyFor(r.req.Issuer)
	if len(r.pol.Audiences) == 0 {
		return r.internal(ReasonAudNotConfigured, &ConfigError{Setting: SettingPrefix + "audience",
			Msg: fmt.Sprintf("no audience is configured for issuer %s; set it globally or in its section of %q", quote(r.req.Issuer), SettingPrefix+"issuer_config")})
	}

	r.begin(checkParse)
	tok, pe := parseToken(r.req.Token)
	if pe != nil {
		if r.pol.Introspection == IntrospectionOpaque && pe.reason == ReasonMalformed && isOpaqueShape(r.req.Token) {
			return r.validateOpaque(ctx)
		}
		return r.reject(pe.reason, pe.detail)
	}
	r.tok = tok
	if reason, detail := r.checkHeader(); reason != "" {
		return r.reject(reason, detail)
	}
	if reason, detail := r.checkClaims(); reason != "" {
		return r.reject(reason, detail)
	}
	if res, done, err := r.checkSignature(ctx); done {
		return res, err
	}
	r.verified = true
	if reason, detail := r.checkIdentity(); reason != "" {
		return r.reject(reason, detail)
	}
	grant, res, done, err := r.roleStep()
	if done {
		return res, err
	}
	if r.pol.Introspection == IntrospectionAlways {
		// Offline checks first, so that a bad token costs no request.
		if res, done, err := r.checkActiveJWT(ctx); done {
			return res, err
		}
		r.active = true
	} else {
		r.skip(checkIntrospection, `"`+SettingPrefix+`introspection" is not "always" for this issuer: a JWT is judged offline.`)
	}
	return r.accept(grant), nil
}

// roleStep runs the delegated role check; done is true when res/err is the
// final verdict.
func (r *run) roleStep() (grant string, res Result, done bool, err error) {
	if r.req.Delegate {
		r.begin(checkRole)
		var reason Reason
		var detail string
		if grant, reason, detail = r.checkRole(); reason != "" {
			res, err = r.reject(reason, detail)
			return "", res, true, err
		}
		if r.tr != nil {
			r.note("Granted: " + grant + ".")
		}
		if reason, detail = r.checkPrivileges(grant); reason != "" {
			res, err = r.reject(reason, detail)
			return "", res, true, err
		}
	} else {
		r.skip(checkRole, "Without delegate_ident_mapping=1 the server maps the identity through the pg_ident.conf map of the pg_hba.conf line.")
		r.skip(checkPrivileges, "Without delegate_ident_mapping=1 the DBA's pg_ident.conf map decides which roles an identity may use; role attributes are not checked.")
	}
	return grant, Result{}, false, nil
}

// reject returns a rejection with its log record.
func (r *run) reject(reason Reason, detail string) (Result, error) {
	d := "Reason: " + string(reason) + ". " + detail
	if r.tok != nil {
		d += " " + claimSummary(&r.tok.claims, r.verified)
	}
	r.logs = append(r.logs, LogRecord{Level: LevelLog, Message: msgRejected, Detail: d})
	r.failCheck(reason, detail)
	return Result{Reason: reason, AuthnID: r.authnID, Logs: r.logs}, nil
}

// internal returns a failure of the module itself.
func (r *run) internal(reason Reason, err error) (Result, error) {
	r.failCheck(reason, err.Error())
	return Result{Reason: reason, AuthnID: r.authnID, Logs: r.logs}, err
}

// accept returns the verdict of a valid token.
func (r *run) accept(grant string) Result {
	lvl := LevelDebug
	if r.pol.LogAccepted {
		lvl = LevelLog
	}
	var b strings.Builder
	b.WriteString("Reason: ok. Identity ")
	b.WriteString(quote(r.authnID))
	fmt.Fprintf(&b, " (claim %s)", quote(r.pol.AuthnIDClaim))
	if r.req.Delegate {
		fmt.Fprintf(&b, " may log in as role %s: %s", quote(r.req.Role), grant)
	}
	if r.opaque {
		b.WriteString(". Opaque token, reported active by the issuer's introspection endpoint. ")
	} else {
		b.WriteString(". Signature ")
		b.WriteString(r.tok.hdr.alg)
		if r.kid != "" {
			b.WriteString(" with key ")
			b.WriteString(quote(r.kid))
		}
		if r.active {
			b.WriteString(", reported active by the issuer's introspection endpoint")
		}
		b.WriteString(". ")
	}
	b.WriteString(claimSummary(&r.tok.claims, true))
	r.logs = append(r.logs, LogRecord{Level: lvl, Message: msgAccepted, Detail: b.String()})
	r.closeCheck()
	return Result{Authorized: true, AuthnID: r.authnID, Reason: ReasonOK, Logs: r.logs}
}

// checkHeader applies the alg allow-list and the header rules.
func (r *run) checkHeader() (Reason, string) {
	h := &r.tok.hdr
	r.begin(checkAlg)
	if !slices.Contains(r.pol.AllowedAlgorithms, h.alg) {
		why := ""
		switch {
		case strings.EqualFold(h.alg, "none"):
			why = " Unsigned tokens are never accepted."
		case strings.HasPrefix(strings.ToUpper(h.alg), "HS"):
			why = " Symmetric (HMAC) signatures are never accepted."
		}
		return ReasonAlgNotAllowed, fmt.Sprintf("The token is signed with alg %s, which is not in %q (%s).%s",
			quote(h.alg), SettingPrefix+"allowed_algorithms", strings.Join(r.pol.AllowedAlgorithms, ", "), why)
	}
	r.begin(checkCrit)
	if h.crit || h.b64Bad {
		return ReasonCritHeader, "The token header has a \"crit\" (or \"b64\") member; no JWS extension is supported."
	}
	r.begin(checkKeyHeaders)
	if len(h.keyHeaders) > 0 {
		return ReasonUntrustedKeyHeader, fmt.Sprintf("The token header carries its own key or key location (%s); keys are taken only from the issuer's key set.",
			strings.Join(h.keyHeaders, ", "))
	}
	r.begin(checkCty)
	if strings.EqualFold(h.cty, "JWT") || strings.EqualFold(h.cty, "application/jwt") {
		return ReasonMalformed, "The token is a nested JWT (cty \"JWT\"), which is not supported."
	}
	return "", ""
}

// checkClaims applies the token-type, iss, aud, time, client and scope
// checks: cheap checks made before the signature is verified.
func (r *run) checkClaims() (Reason, string) {
	r.begin(checkType)
	if reason, detail := r.checkType(); reason != "" {
		return reason, detail
	}
	c := &r.tok.claims
	p := r.pol

	// iss
	r.begin(checkIss)
	switch {
	case !c.iss.Exists() && r.opaque:
		// RFC 7662: iss is optional in an answer; the endpoint is the issuer's.
		r.note("The introspection answer has no iss: the issuer's own endpoint answered.")
	case !c.iss.Exists():
		return ReasonIssMismatch, fmt.Sprintf("The token has no iss claim; the issuer must be %s.", quote(r.req.Issuer))
	case c.iss.Type != gjson.String:
		return ReasonInvalidClaim, "The iss claim is not a string."
	case c.iss.Str != r.req.Issuer:
		msg := fmt.Sprintf("The token's issuer %s differs from the pg_hba.conf issuer %s.", quote(c.iss.Str), quote(r.req.Issuer))
		if strings.TrimRight(c.iss.Str, "/") == strings.TrimRight(r.req.Issuer, "/") {
			msg += " They differ only by a trailing slash: the pg_hba.conf issuer must equal the token's iss byte for byte."
		}
		return ReasonIssMismatch, msg
	}

	// aud
	r.begin(checkAud)
	auds, ok := stringOrArray(c.aud)
	if !ok {
		return ReasonInvalidClaim, "The aud claim is neither a string nor an array of strings."
	}
	if len(auds) == 0 {
		return ReasonAudMismatch, fmt.Sprintf("The token has no audience (aud); one of %s is required.", quoteList(p.Audiences))
	}
	if !intersects(auds, p.Audiences) {
		return ReasonAudMismatch, fmt.Sprintf("The token's audience %s contains none of the configured audiences %s.", quoteClaim(c.aud), quoteList(p.Audiences))
	}

	// exp, nbf, iat, lifetime
	now := float64(r.now.UnixNano()) / 1e9
	leeway := p.Leeway.Seconds()
	r.begin(checkExp)
	if !c.exp.Exists() {
		return ReasonMissingExp, "The token has no exp claim; tokens without an expiry time are refused."
	}
	exp, ok := numericDate(c.exp)
	if !ok {
		return ReasonInvalidClaim, "The exp claim is not a number."
	}
	if !saneDate(exp) {
		return ReasonInvalidClaim, "The exp claim " + dateRangeProblem(exp)
	}
	if now >= exp+leeway {
		return ReasonExpired, fmt.Sprintf("The token expired %s ago (exp %s); the leeway is %s.", seconds(now-exp), formatDate(exp), seconds(leeway))
	}
	if c.nbf.Exists() {
		r.begin(checkNbf)
		nbf, ok := numericDate(c.nbf)
		if !ok {
			return ReasonInvalidClaim, "The nbf claim is not a number."
		}
		if !saneDate(nbf) {
			return ReasonInvalidClaim, "The nbf claim " + dateRangeProblem(nbf)
		}
		if nbf > now+leeway {
			return ReasonNotYetValid, fmt.Sprintf("The token is not valid before %s (nbf), %s from now; the leeway is %s.", formatDate(nbf), seconds(nbf-now), seconds(leeway))
		}
	} else {
		r.skip(checkNbf, "The token has no nbf claim.")
	}
	iat, hasIat := 0.0, c.iat.Exists()
	if hasIat {
		r.begin(checkIat)
		if iat, ok = numericDate(c.iat); !ok {
			return ReasonInvalidClaim, "The iat claim is not a number."
		}
		if !saneDate(iat) {
			return ReasonInvalidClaim, "The iat claim " + dateRangeProblem(iat)
		}
		if iat > now+leeway {
			return ReasonIatInFuture, fmt.Sprintf("The token claims to be issued at %s (iat), %s in the future; the leeway is %s. Check the clocks.", formatDate(iat), seconds(iat-now), seconds(leeway))
		}
	} else {
		r.skip(checkIat, "The token has no iat claim.")
	}
	r.begin(checkLifetime)
	if reason, detail := lifetimeProblem(exp, iat, hasIat, now, leeway, p.MaxTokenLifetime.Seconds()); reason != "" {
		return reason, detail
	}

	// azp / client_id / appid
	if len(p.AllowedClientIDs) > 0 {
		r.begin(checkClient)
		client, name, ok := r.client()
		switch {
		case !ok:
			return ReasonInvalidClaim, fmt.Sprintf("The %s claim is not a string.", name)
		case name == "":
			return ReasonAzpNotAllowed, fmt.Sprintf("The token names no client (azp, client_id or appid); %q requires one of %s.", SettingPrefix+"allowed_client_ids", quoteList(p.AllowedClientIDs))
		case !slices.Contains(p.AllowedClientIDs, client):
			return ReasonAzpNotAllowed, fmt.Sprintf("The token was issued to client %s (%s), which is not in %q (%s).", quote(client), name, SettingPrefix+"allowed_client_ids", quoteList(p.AllowedClientIDs))
		}
	} else {
		r.skip(checkClient, `"`+SettingPrefix+`allowed_client_ids" is empty: the client is not checked.`)
	}

	// scopes
	if reason, detail := r.checkScopes(); reason != "" {
		return reason, detail
	}
	return "", ""
}

// client returns the client the token was issued to: azp, else client_id
// (RFC 9068), else appid (Entra ID v1), else cid (Okta). name is the claim used, ""
// when none is present; ok is false when that claim is not a string.
func (r *run) client() (client, name string, ok bool) {
	c := &r.tok.claims
	for _, x := range [...]struct {
		name string
		v    gjson.Result
	}{{"azp", c.azp}, {"client_id", c.clientID}, {"appid", c.appID}, {"cid", c.cid}} {
		if x.v.Exists() {
			return x.v.Str, x.name, x.v.Type == gjson.String
		}
	}
	return "", "", true
}

// scopes returns the union of the scope (space-separated string) and scp
// (string or array of strings) claims.
func (r *run) scopes() ([]string, bool) {
	c := &r.tok.claims
	var have []string
	if c.scope.Exists() {
		if c.scope.Type != gjson.String {
			return nil, false
		}
		have = append(have, strings.Fields(c.scope.Str)...)
	}
	if c.scp.Exists() {
		if c.scp.IsArray() {
			vals, ok := stringOrArray(c.scp)
			if !ok {
				return nil, false
			}
			have = append(have, vals...)
		} else if c.scp.Type == gjson.String {
			have = append(have, strings.Fields(c.scp.Str)...)
		} else {
			return nil, false
		}
	}
	return have, true
}

// wrapKeyError maps a key source error onto a verdict: a rejection when the
// token cannot be checked now, an internal error when the module is broken.
func (r *run) wrapKeyError(err error) (Result, error) {
	if errors.Is(err, keycache.ErrNeedsNetwork) {
		return Result{}, err // no verdict: the caller retries off its thread
	}
	var kfe *keyFileError
	if errors.As(err, &kfe) {
		res, _ := r.reject(ReasonKeysUnavailable, fmt.Sprintf("The key file (%q) of issuer %s cannot be used: %s.", SettingPrefix+"jwks_file", quote(r.req.Issuer), strings.TrimSuffix(oneLine(kfe), ".")))
		return res, nil
	}
	switch KeySourceReason(err) {
	case ReasonInsecureCache:
		return r.internal(ReasonInsecureCache, fmt.Errorf("cannot use the key cache: %w", err))
	case ReasonConfig:
		if !errors.Is(err, keycache.ErrInsecureURL) {
			// The fetch helper failed the trusted-file rule: the
			// error names the file and the fix.
			return r.internal(ReasonConfig, fmt.Errorf("cannot fetch the signing keys of issuer %s: %w", quote(r.req.Issuer), err))
		}
		return r.internal(ReasonConfig, &ConfigError{Setting: SettingPrefix + "require_https",
			Msg: fmt.Sprintf("the key source of issuer %s refused an insecure URL", quote(r.req.Issuer)), Err: err})
	case ReasonDiscoveryIssuerMismatch:
		res, _ := r.reject(ReasonDiscoveryIssuerMismatch, fmt.Sprintf("The discovery document of issuer %s names another issuer (%s); the pg_hba.conf issuer must equal it byte for byte.", quote(r.req.Issuer), oneLine(err)))
		return res, nil
	case ReasonKeysUnavailable:
		if errors.Is(err, keycache.ErrFutureFetch) {
			r.logs = append(r.logs, LogRecord{
				Level:   LevelWarning,
				Message: msgFutureKeys,
				Detail: fmt.Sprintf("The key cache holds keys of issuer %s fetched after the current time: the clock was stepped back, or the cache was copied from another host. Their age is unknown, so %q cannot be enforced: they are not used until a refetch succeeds.",
					quote(r.req.Issuer), SettingPrefix+"cache_max_stale"),
			})
		}
		res, _ := r.reject(ReasonKeysUnavailable, fmt.Sprintf("The signing keys of issuer %s could not be obtained: %s.", quote(r.req.Issuer), oneLine(err)))
		return res, nil
	}
	return r.internal(ReasonInternal, fmt.Errorf("cannot get the signing keys of issuer %s: %w", quote(r.req.Issuer), err))
}

// KeySourceReason returns the reason code Validate gives when its key
// source fails with err: keys_unavailable and discovery_issuer_mismatch
// reject the token; insecure_cache, config_error (an insecure URL) and
// internal_error are failures of the module.
func KeySourceReason(err error) Reason {
	switch {
	case errors.Is(err, keycache.ErrInsecureCache):
		return ReasonInsecureCache
	case errors.Is(err, keycache.ErrInsecureURL), errors.Is(err, trustedfile.ErrUntrusted):
		return ReasonConfig
	case errors.Is(err, keycache.ErrDiscoveryMismatch):
		return ReasonDiscoveryIssuerMismatch
	case errors.Is(err, keycache.ErrUnavailable), errors.Is(err, keycache.ErrTooLarge),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ReasonKeysUnavailable
	}
	return ReasonInternal
}

// oneLine makes an error text safe for a single detail sentence: escaped
// as every text from outside is (EscapeLogText), at most 512 bytes.
func oneLine(err error) string {
	s := err.Error()
	if len(s) > 512 {
		cut := 512
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return EscapeLogText(s)
}

// checkSignature finds the key and verifies the signature. done is true
// when res/err is the final verdict (rejection or failure).
func (r *run) checkSignature(ctx context.Context) (res Result, done bool, err error) {
	q := keycache.Query{Issuer: r.req.Issuer, DiscoveryURL: r.pol.DiscoveryURL, JWKSURI: r.pol.JWKSURI, CacheOnly: r.req.CacheOnly}
	r.begin(checkKeys)
	src := r.v.src
	if r.pol.JWKSFile != "" {
		// Offline keys: never the cache, never the network.
		src = keyFileSource{path: r.pol.JWKSFile}
	}
	keys, err := src.Keys(ctx, q)
	if err != nil {
		res, err = r.wrapKeyError(err)
		return res, true, err
	}
	r.noteStale(keys)
	r.noteUnstored(keys)
	r.keepKeys(keys)
	h := &r.tok.hdr
	cands, missing, prob := selectKeys(keys.Set, h)
	if missing {
		if r.tr != nil {
			r.note(fmt.Sprintf("No key had kid %s: the key source was asked again (it refetches unless a refetch happened less than %q ago).", quote(h.kid), SettingPrefix+"kid_refetch_interval"))
		}
		// The issuer may have rotated its keys: ask once more (the source
		// rate-limits such refetches server-wide).
		q.MissingKID = h.kid
		keys, err = src.Keys(ctx, q)
		if err != nil {
			res, err = r.wrapKeyError(err)
			return res, true, err
		}
		r.noteStale(keys)
		r.noteUnstored(keys)
		r.keepKeys(keys)
		cands, _, prob = selectKeys(keys.Set, h)
	}
	r.begin(checkKID)
	if len(cands) == 0 {
		if prob == nil {
			prob = &keyProblem{reason: ReasonUnknownKID, detail: "No usable key was found."}
		}
		res, err = r.reject(prob.reason, prob.detail)
		return res, true, err
	}
	r.begin(checkSignature)
	for _, c := range cands {
		if verifySignature(c.pub, h.alg, r.tok.signingInput, r.tok.sig) {
			r.kid = c.kid
			return Result{}, false, nil
		}
	}
	detail := "The signature does not verify with the issuer's key"
	if h.hasKID {
		detail += " " + quote(h.kid)
	}
	res, err = r.reject(ReasonBadSignature, detail+".")
	return res, true, err
}

// keepKeys remembers the key set served, for Explain only.
func (r *run) keepKeys(k keycache.Keys) {
	if r.tr != nil {
		kept := k
		r.keys = &kept
	}
}

// noteStale logs a warning when keys are served stale.
func (r *run) noteStale(k keycache.Keys) {
	if !k.Stale {
		return
	}
	for _, l := range r.logs {
		if l.Message == msgStaleKeys {
			return
		}
	}
	age := ""
	if !k.FetchedAt.IsZero() {
		age = fmt.Sprintf(" They were fetched at %s (%s ago).", k.FetchedAt.UTC().Format(time.RFC3339), seconds(r.now.Sub(k.FetchedAt).Seconds()))
	}
	cause := k.StaleCause
	if cause == "" {
		cause = "unknown cause"
	}
	r.logs = append(r.logs, LogRecord{
		Level:   LevelWarning,
		Message: msgStaleKeys,
		Detail: fmt.Sprintf("The signing keys of issuer %s could not be refreshed (%s); last-known-good keys are used until they are older than %q.%s",
			quote(r.req.Issuer), oneLine(errors.New(cause)), SettingPrefix+"cache_max_stale", age),
	})
}

// noteUnstored logs a warning when the keys were fetched for this login
// but could not be stored in the key cache.
func (r *run) noteUnstored(k keycache.Keys) {
	if k.Unstored == "" {
		return
	}
	for _, l := range r.logs {
		if l.Message == msgUnstored {
			return
		}
	}
	r.logs = append(r.logs, LogRecord{
		Level:   LevelWarning,
		Message: msgUnstored,
		Detail: fmt.Sprintf("The signing keys of issuer %s were fetched for this login but could not be stored (%s); they are used for this login only. Until the server's OS user can write the directory again (chown, chmod 700), every login that needs keys fetches them itself: single flight and the failure backoff are degraded.",
			quote(r.req.Issuer), oneLine(errors.New(k.Unstored))),
	})
}

// quoteList quotes a list of configured or claimed values.
func quoteList(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	q := make([]string, 0, len(l))
	for i, s := range l {
		if i == maxAudListed*2 {
			q = append(q, "...")
			break
		}
		q = append(q, quote(s))
	}
	return strings.Join(q, ", ")
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
