package testidp

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// PathIntrospect is the RFC 7662 introspection endpoint, relative to the
// issuer (Keycloak's path), named in the discovery document.
const PathIntrospect = "/protocol/openid-connect/token/introspect"

// IntrospectionURL is the absolute URL of the introspection endpoint.
func (p *IdP) IntrospectionURL() string { return p.issuer + PathIntrospect }

// IntroMode is a fault mode of the introspection endpoint alone.
type IntroMode int

// Fault modes for SetIntrospectionMode. The discovery and JWKS endpoints
// keep their own Mode.
const (
	// IntroNormal answers as RFC 7662 says: the token's claims with
	// "active": true, or {"active": false} for an unknown or revoked token.
	IntroNormal IntroMode = iota
	// IntroActiveString answers "active" as the string "true".
	IntroActiveString
	// IntroNoActive leaves "active" out.
	IntroNoActive
	// IntroGarbage answers 200 with a body that is not JSON.
	IntroGarbage
	// IntroOversized answers 200 with a JSON object of 1 MiB.
	IntroOversized
	// IntroError500 answers 500.
	IntroError500
	// IntroHang never answers (until the mode changes or Close).
	IntroHang
	// IntroSlow answers correctly after IntroSlowDelay.
	IntroSlow
)

// IntroSlowDelay is how long IntroSlow waits.
const IntroSlowDelay = 3 * time.Second

// SetIntrospectionClient sets the confidential client the endpoint accepts
// (HTTP Basic, id and secret form-urlencoded as RFC 6749 section 2.3.1
// says). Until it is set, every introspection request gets 401.
func (p *IdP) SetIntrospectionClient(id, secret string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.introID, p.introSecret = id, secret
}

// SetIntrospectionMode switches the introspection endpoint to m; requests
// waiting in IntroHang or IntroSlow are released and answered as m says.
func (p *IdP) SetIntrospectionMode(m IntroMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.introMode = m
	close(p.release)
	p.release = make(chan struct{})
}

// SetIntrospectionOverride changes the claims of every active answer: a
// value replaces the claim, nil removes it (missing or wrong iss, aud,
// exp...). A nil map restores the plain answers.
func (p *IdP) SetIntrospectionOverride(claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.introOver = claims
}

// MintOpaque issues an opaque access token (random, not a JWT) whose
// introspection answer holds the default claims of Mint (iss, iat, exp in
// five minutes, sub "test-user") and claims (nil removes a claim).
func (p *IdP) MintOpaque(claims map[string]any) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := "opq_" + base64.RawURLEncoding.EncodeToString(b)
	now := p.now()
	c := map[string]any{"iss": p.issuer, "iat": now.Unix(), "exp": now.Add(defaultTokenTTL).Unix(),
		"sub": "test-user", "token_type": "Bearer"}
	for k, v := range claims {
		switch v := v.(type) {
		case nil:
			delete(c, k)
		case time.Time:
			c[k] = v.Unix()
		default:
			c[k] = v
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opaque == nil {
		p.opaque = map[string]map[string]any{}
	}
	p.opaque[tok] = c
	return tok
}

// Revoke makes the endpoint answer {"active": false} for token (opaque or
// JWT) from now on, as RFC 7009 revocation does.
func (p *IdP) Revoke(token string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.revoked == nil {
		p.revoked = map[string]bool{}
	}
	p.revoked[token] = true
}

// introspectionAnswer is the RFC 7662 answer on tok: an opaque token's
// claims, a JWT's payload (the endpoint trusts its own tokens), or
// inactive.
func (p *IdP) introspectionAnswer(tok string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	inactive := map[string]any{"active": false}
	if p.revoked[tok] {
		return inactive
	}
	var claims map[string]any
	if c, ok := p.opaque[tok]; ok {
		claims = map[string]any{}
		for k, v := range c {
			claims[k] = v
		}
	} else if parts := strings.Split(tok, "."); len(parts) == 3 {
		raw, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil || json.Unmarshal(raw, &claims) != nil || claims["iss"] != p.issuer {
			return inactive
		}
		if exp, ok := claims["exp"].(float64); !ok || p.now().Unix() >= int64(exp) {
			return inactive
		}
	} else {
		return inactive
	}
	claims["active"] = true
	for k, v := range p.introOver {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return claims
}

// handleIntrospect serves the introspection endpoint.
func (p *IdP) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return
	}
	p.mu.Lock()
	wantID, wantSecret := p.introID, p.introSecret
	p.mu.Unlock()
	id, secret, ok := r.BasicAuth()
	if ok {
		var e1, e2 error
		id, e1 = url.QueryUnescape(id)
		secret, e2 = url.QueryUnescape(secret)
		ok = e1 == nil && e2 == nil
	}
	if !ok || wantID == "" || id != wantID || secret != wantSecret {
		w.Header().Set("WWW-Authenticate", `Basic realm="testidp"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	tok := r.PostForm.Get("token")
	for {
		p.mu.Lock()
		mode, release := p.introMode, p.release
		p.mu.Unlock()
		var wait <-chan time.Time
		switch mode {
		case IntroHang:
		case IntroSlow:
			wait = time.After(IntroSlowDelay)
		default:
			p.introRespond(w, tok, mode)
			return
		}
		select {
		case <-wait:
			p.introRespond(w, tok, IntroNormal)
			return
		case <-release:
		case <-r.Context().Done():
			return
		case <-p.done:
			panic(http.ErrAbortHandler)
		}
	}
}

func (p *IdP) introRespond(w http.ResponseWriter, tok string, m IntroMode) {
	w.Header().Set("Cache-Control", "no-store")
	switch m {
	case IntroGarbage:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("<html>not JSON</html>\n"))
		return
	case IntroOversized:
		writeJSON(w, http.StatusOK, map[string]any{"active": true, "padding": strings.Repeat("A", 1<<20)})
		return
	case IntroError500:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	a := p.introspectionAnswer(tok)
	switch m {
	case IntroActiveString:
		if a["active"] == true {
			a["active"] = "true"
		}
	case IntroNoActive:
		delete(a, "active")
	}
	writeJSON(w, http.StatusOK, a)
}
