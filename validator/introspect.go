package validator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/oauth-jwt/oauth_jwt/internal/trustedfile"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
	"github.com/tidwall/gjson"
)

// Values of oauth_jwt.introspection.
const (
	IntrospectionOff    = "off"
	IntrospectionOpaque = "opaque"
	IntrospectionAlways = "always"
)

// MaxSecretFileBytes bounds introspection_secret_file.
const MaxSecretFileBytes = 4 << 10

// Introspector is what the validator needs for RFC 7662 introspection: a
// cache of positive answers shared by all backends (keyed by a hash of the
// token, never the token) and the request itself. *keycache.Cache is one;
// in the module's backend build its Introspect always fails, and the
// module hands the request to its fetch helper instead.
type Introspector interface {
	LookupIntrospection(key string, maxAge time.Duration) (answer []byte, ok bool, err error)
	StoreIntrospection(key string, answer []byte, expires time.Time) error
	Introspect(ctx context.Context, q keycache.IntrospectQuery) ([]byte, error)
}

// WithIntrospector makes the Verifier introspect through in (tests, tools).
func WithIntrospector(in Introspector) Option { return func(o *options) { o.intro = in } }

// WithIntrospectionAnswer makes the Verifier judge with this answer (or
// this failure) of the introspection endpoint instead of asking: the module
// judges again with what its fetch helper obtained. It applies to the one
// token the helper was asked about.
func WithIntrospectionAnswer(answer []byte, err error) Option {
	return func(o *options) { o.answer = &suppliedAnswer{answer: answer, err: err} }
}

type suppliedAnswer struct {
	answer []byte
	err    error
}

// NeedsIntrospectionError is what Validate returns for a Request with
// CacheOnly when the token must be introspected and no fresh positive
// answer is cached: no verdict. It matches keycache.ErrNeedsNetwork. The
// caller asks the endpoint elsewhere (the module: its fetch helper, with
// IntrospectionRequest) and judges again with WithIntrospectionAnswer.
type NeedsIntrospectionError struct {
	// Issuer is the pg_hba issuer whose endpoint is to be asked.
	Issuer string
}

func (e *NeedsIntrospectionError) Error() string {
	return "the token needs an introspection request to issuer " + quote(e.Issuer)
}

// Unwrap makes errors.Is(err, keycache.ErrNeedsNetwork) true.
func (e *NeedsIntrospectionError) Unwrap() error { return keycache.ErrNeedsNetwork }

// Introspect asks the introspection endpoint of issuer about token, with
// the settings s, and returns the raw answer (a JSON object) unjudged. The
// fetch helper and oauth_jwt_check call it; the secret file is read here
// with the trusted-file checks. Errors never contain the token or secret.
func Introspect(ctx context.Context, s Settings, issuer, token string) ([]byte, error) {
	cfg, err := ParseSettings(s)
	if err != nil {
		return nil, err
	}
	c, err := defaultSource(cfg, time.Now)
	if err != nil {
		return nil, err
	}
	return introspectWith(ctx, c, cfg.PolicyFor(issuer), issuer, token)
}

func introspectWith(ctx context.Context, in Introspector, p *Policy, issuer, token string) ([]byte, error) {
	if p.Introspection == IntrospectionOff || p.Introspection == "" {
		return nil, fmt.Errorf("%w: introspection is off for issuer %s", keycache.ErrIntrospection, quote(issuer))
	}
	secret, err := readSecretFile(p.IntrospectionSecretFile)
	if err != nil {
		return nil, err
	}
	return in.Introspect(ctx, keycache.IntrospectQuery{
		Issuer: issuer, DiscoveryURL: p.DiscoveryURL, Endpoint: p.IntrospectionEndpoint,
		ClientID: p.IntrospectionClientID, ClientSecret: secret, Token: token,
	})
}

// secretFileRule is the trusted-file rule of introspection_secret_file:
// whoever can change the secret can point the module's trust at another
// client's answers.
var secretFileRule = trustedfile.Rule{What: "introspection secret file", Setting: SettingPrefix + "introspection_secret_file", MaxBytes: MaxSecretFileBytes}

// readSecretFile reads the client secret: one line, trailing white space
// removed. Its contents never reach an error text.
func readSecretFile(path string) (string, error) {
	b, err := secretFileRule.Read(path)
	var te *trustedfile.Error
	if errors.As(err, &te) {
		return "", fmt.Errorf("%w: %v", keycache.ErrIntrospection, err) // names the file and the fix
	}
	if err != nil {
		return "", fmt.Errorf("%w: the secret file %s (%q): %v", keycache.ErrIntrospection, quote(path), SettingPrefix+"introspection_secret_file", err)
	}
	// A secret others may read is no secret (as PostgreSQL's own
	// ssl_key_file: the owner and at most its group).
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err == nil && st.Mode&0o004 != 0 {
		return "", fmt.Errorf("%w: the secret file %s (%q) is readable by others (mode %04o); make it readable only by its owner (and group)", keycache.ErrIntrospection, quote(path), SettingPrefix+"introspection_secret_file", st.Mode&0o777)
	}
	b = bytes.TrimRight(b, " \t\r\n")
	if len(b) == 0 || bytes.ContainsAny(b, "\r\n\x00") {
		return "", fmt.Errorf("%w: the secret file %s (%q) must hold the secret on one line", keycache.ErrIntrospection, quote(path), SettingPrefix+"introspection_secret_file")
	}
	return string(b), nil
}

// isOpaqueShape says whether a token that failed to parse as a JWS is an
// opaque token (introspection = opaque): not of the shape of a JWS or JWE
// (3 or 5 dot-separated segments), and made of the characters of an RFC
// 6750 b64token only.
func isOpaqueShape(tok string) bool {
	if tok == "" || len(tok) > MaxTokenBytes {
		return false
	}
	if n := strings.Count(tok, "."); n == 2 || n == 4 {
		return false
	}
	end := strings.TrimRight(tok, "=")
	if end == "" {
		return false
	}
	for i := 0; i < len(end); i++ {
		c := end[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// introspect returns the endpoint's answer on the token: from the shared
// cache when a positive one is fresh, else from the answer supplied by the
// module, else from the endpoint (not with CacheOnly). done is true when
// res/err is the final outcome.
func (r *run) introspect(ctx context.Context) (answer []byte, cached bool, res Result, done bool, err error) {
	r.begin(checkIntrospection)
	in := r.v.intro
	if in == nil {
		res, err = r.internal(ReasonInternal, errors.New("no introspector is configured"))
		return nil, false, res, true, err
	}
	key := keycache.IntrospectionKey(r.req.Issuer, r.req.Token)
	if ttl := r.pol.IntrospectionCacheTTL; ttl > 0 && r.v.answer == nil {
		a, ok, lerr := in.LookupIntrospection(key, ttl)
		if lerr != nil {
			res, err = r.internal(ReasonInsecureCache, fmt.Errorf("cannot use the introspection cache: %w", lerr))
			return nil, false, res, true, err
		}
		if ok {
			if r.tr != nil {
				r.note("A positive answer cached less than " + seconds(ttl.Seconds()) + " ago (\"" + SettingPrefix + "introspection_cache_ttl\") was used.")
			}
			return a, true, Result{}, false, nil
		}
	}
	var ierr error
	switch {
	case r.v.answer != nil:
		answer, ierr = r.v.answer.answer, r.v.answer.err
	case r.req.CacheOnly:
		return nil, false, Result{}, true, &NeedsIntrospectionError{Issuer: r.req.Issuer}
	default:
		answer, ierr = introspectWith(ctx, in, r.pol, r.req.Issuer, r.req.Token)
	}
	if ierr == nil && (len(answer) > keycache.MaxIntrospectionBytes || !keycache.IsJSONObject(answer)) {
		ierr = errors.New("the answer is not a JSON object of at most 64 KiB")
	}
	if ierr == nil {
		// The rules of a JWT payload: nesting bounded, no duplicate
		// member names (parsers disagree about which one wins).
		if msg := checkJSON(answer); msg != "" {
			ierr = errors.New("the answer " + msg)
		}
	}
	if ierr != nil {
		if errors.Is(ierr, keycache.ErrNeedsNetwork) {
			return nil, false, Result{}, true, ierr
		}
		res, err = r.reject(ReasonIntrospectionFailed, fmt.Sprintf("The introspection request to issuer %s failed: %s. Introspection fails closed: the login is refused.", quote(r.req.Issuer), strings.TrimSuffix(oneLine(ierr), ".")))
		return nil, false, res, true, err
	}
	return answer, false, Result{}, false, nil
}

// judgeActive applies the rules every introspection answer must pass:
// "active" is the JSON boolean true; iss, when present, is the pg_hba
// issuer; token_type, when present, is "Bearer".
func (r *run) judgeActive(answer []byte) (Reason, string) {
	m := gjson.GetManyBytes(answer, "active", "iss", "token_type")
	switch a := m[0]; {
	case !a.Exists():
		return ReasonTokenInactive, "The introspection answer has no \"active\" member; only the JSON boolean true means active (RFC 7662)."
	case a.Type == gjson.False:
		return ReasonTokenInactive, fmt.Sprintf("The identity provider reports the token inactive (revoked, expired, or its session or user ended) at %s.", r.now.UTC().Format(time.RFC3339))
	case a.Type != gjson.True:
		return ReasonTokenInactive, fmt.Sprintf("The introspection answer's \"active\" is %s, not the JSON boolean true (RFC 7662); it is not taken as active.", quoteClaim(a))
	}
	if iss := m[1]; iss.Exists() && (iss.Type != gjson.String || iss.Str != r.req.Issuer) {
		return ReasonIssMismatch, fmt.Sprintf("The introspection answer names issuer %s, not the pg_hba.conf issuer %s.", quoteClaim(iss), quote(r.req.Issuer))
	}
	if tt := m[2]; tt.Exists() && (tt.Type != gjson.String || !strings.EqualFold(tt.Str, "bearer")) {
		return ReasonWrongTokenType, fmt.Sprintf("The introspection answer's token_type is %s; a bearer access token (\"Bearer\") is required.", quoteClaim(tt))
	}
	return "", ""
}

// remember caches a positive answer until the TTL or the token's exp,
// whichever comes first. Failing to write it only costs a request later.
func (r *run) remember(answer []byte, exps ...gjson.Result) {
	ttl := r.pol.IntrospectionCacheTTL
	if ttl <= 0 || r.v.intro == nil {
		return
	}
	until := r.now.Add(ttl)
	for _, e := range exps {
		if exp, ok := numericDate(e); ok {
			if t := time.Unix(int64(exp), 0); t.Before(until) {
				until = t
			}
		}
	}
	if !until.After(r.now) {
		return
	}
	_ = r.v.intro.StoreIntrospection(keycache.IntrospectionKey(r.req.Issuer, r.req.Token), answer, until)
}

// validateOpaque judges a token that is not a JWT by its introspection
// answer: active, then the same claim checks as a JWT's (iss when present,
// aud, exp required, nbf, iat, client, scopes, token type), identity and
// role from the answer.
func (r *run) validateOpaque(ctx context.Context) (Result, error) {
	r.opaque = true
	answer, cached, res, done, err := r.introspect(ctx)
	if done {
		return res, err
	}
	r.tok = &token{payload: answer}
	r.tok.collectClaims()
	r.verified = true // the answer came from the issuer itself
	if reason, detail := r.judgeActive(answer); reason != "" {
		return r.reject(reason, detail)
	}
	for _, c := range []string{checkAlg, checkCrit, checkKeyHeaders, checkCty} {
		r.skip(c, "An opaque token has no header: its introspection answer is judged instead.")
	}
	if reason, detail := r.checkClaims(); reason != "" {
		return r.reject(reason, detail)
	}
	for _, c := range []string{checkKeys, checkKID, checkSignature} {
		r.skip(c, "An opaque token has no signature: the identity provider vouched for it by introspection.")
	}
	if reason, detail := r.checkIdentity(); reason != "" {
		return r.reject(reason, detail)
	}
	grant, res, done, err := r.roleStep()
	if done {
		return res, err
	}
	if !cached {
		r.remember(answer, r.tok.claims.exp)
	}
	return r.accept(grant), nil
}

// checkActiveJWT is the last step of introspection = always: the JWT
// passed every offline check; the provider must also report it active.
func (r *run) checkActiveJWT(ctx context.Context) (res Result, done bool, err error) {
	answer, cached, res, done, err := r.introspect(ctx)
	if done {
		return res, true, err
	}
	if reason, detail := r.judgeActive(answer); reason != "" {
		res, err = r.reject(reason, detail)
		return res, true, err
	}
	if r.tr != nil {
		r.note("The identity provider reports the token active.")
	}
	if !cached {
		r.remember(answer, r.tok.claims.exp, gjson.GetBytes(answer, "exp"))
	}
	return Result{}, false, nil
}
