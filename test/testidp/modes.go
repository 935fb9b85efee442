package testidp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Mode is how the discovery and JWKS endpoints behave. The named constants
// are the fault modes; ModeSlow builds the one that carries a delay
// (internally a negative value).
type Mode int64

// Fault modes for SetMode.
const (
	// ModeNormal answers every request at once and correctly.
	ModeNormal Mode = iota
	// ModeDown refuses connections: the listener is closed (open
	// connections too) until the mode changes, and the port is then
	// taken again.
	ModeDown
	// ModeHang accepts requests and never answers them until the mode
	// changes, the client gives up, or Close.
	ModeHang
	// ModeError500 answers 500 Internal Server Error with a small JSON
	// error body.
	ModeError500
	// ModeGarbage answers 200 with Content-Type application/json and a
	// body that is not JSON.
	ModeGarbage
	// ModeHuge answers 200 with a HugeBodySize body, streamed in chunks
	// without a Content-Length, that starts like a JSON object and only
	// closes at the very end.
	ModeHuge
	// ModeIssuerMismatch serves a discovery document whose issuer is the
	// real one with a trailing slash appended; the JWKS stays correct.
	ModeIssuerMismatch
)

// HugeBodySize is the length of the body served in ModeHuge: 8 MiB.
const HugeBodySize = 8 << 20

// ModeSlow answers correctly, but only after d (or when the mode changes
// first). ModeSlow of zero or less is ModeNormal.
func ModeSlow(d time.Duration) Mode {
	if d <= 0 {
		return ModeNormal
	}
	return Mode(-d)
}

// delay is the ModeSlow delay of m; zero for every other mode.
func (m Mode) delay() time.Duration {
	if m < 0 {
		return time.Duration(-m)
	}
	return 0
}

// String names the mode, such as "hang" or "slow(2s)".
func (m Mode) String() string {
	switch m {
	case ModeNormal:
		return "normal"
	case ModeDown:
		return "down"
	case ModeHang:
		return "hang"
	case ModeError500:
		return "error500"
	case ModeGarbage:
		return "garbage"
	case ModeHuge:
		return "huge"
	case ModeIssuerMismatch:
		return "issuer-mismatch"
	}
	if d := m.delay(); d > 0 {
		return fmt.Sprintf("slow(%v)", d)
	}
	return fmt.Sprintf("Mode(%d)", int64(m))
}

// endpoint is one of the two served documents.
type endpoint int

const (
	endpointDiscovery endpoint = iota
	endpointJWKS
)

// handle counts the request, applies the mode and answers.
func (p *IdP) handle(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		panic(http.ErrAbortHandler)
	}
	p.handlers.Add(1)
	p.counts[r.URL.Path]++
	p.mu.Unlock()
	defer p.handlers.Done()

	var ep endpoint
	switch r.URL.Path {
	case p.realm + PathDiscovery:
		ep = endpointDiscovery
	case p.realm + PathJWKS:
		ep = endpointJWKS
	case p.realm + pathDevice:
		p.handleDevice(w, r, false)
		return
	case p.realm + pathToken:
		p.handleDevice(w, r, true)
		return
	case p.realm + PathIntrospect:
		p.handleIntrospect(w, r)
		return
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return
	}

	for {
		p.mu.Lock()
		mode, release := p.mode, p.release
		p.mu.Unlock()

		var wait <-chan time.Time
		switch {
		case mode == ModeHang:
			// wait stays nil: only a release ends the wait.
		case mode.delay() > 0:
			wait = time.After(mode.delay())
		default:
			p.respond(w, r, ep, mode)
			return
		}
		select {
		case <-wait:
			p.respond(w, r, ep, ModeNormal)
			return
		case <-release:
			// The mode changed: answer as the new one says.
		case <-r.Context().Done():
			return
		case <-p.done:
			panic(http.ErrAbortHandler)
		}
	}
}

// respond writes the answer of endpoint ep in mode m.
func (p *IdP) respond(w http.ResponseWriter, r *http.Request, ep endpoint, m Mode) {
	w.Header().Set("Cache-Control", "no-cache")
	switch m {
	case ModeDown:
		// Only a request caught while the listener closes gets here:
		// drop the connection without an answer.
		panic(http.ErrAbortHandler)
	case ModeError500:
		writeJSON(w, http.StatusInternalServerError, map[string]string{
			"error":             "server_error",
			"error_description": "testidp injected fault",
		})
	case ModeGarbage:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("<html><body>this is not JSON</body></html>\n"))
	case ModeHuge:
		p.writeHuge(w, r)
	default:
		var doc any
		if ep == endpointJWKS {
			set, err := p.jwks()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			doc = set
		} else {
			issuer := p.issuer
			if m == ModeIssuerMismatch {
				issuer += "/"
			}
			doc = p.discovery(issuer)
		}
		writeJSON(w, http.StatusOK, doc)
	}
}

// writeHuge streams HugeBodySize bytes: the start of a JSON object whose
// last string only ends with the body.
func (p *IdP) writeHuge(w http.ResponseWriter, r *http.Request) {
	const (
		head  = `{"keys":[],"padding":"`
		tail  = `"}`
		chunk = 32 << 10
	)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	if _, err := w.Write([]byte(head)); err != nil {
		return
	}
	filler := []byte(strings.Repeat("A", chunk))
	for left := HugeBodySize - len(head) - len(tail); left > 0; left -= chunk {
		if r.Context().Err() != nil {
			return
		}
		if _, err := w.Write(filler[:min(left, chunk)]); err != nil {
			return
		}
		_ = rc.Flush()
	}
	_, _ = w.Write([]byte(tail))
}

// discovery is the OpenID Connect discovery document naming issuer, with
// the essentials of Keycloak's.
func (p *IdP) discovery(issuer string) map[string]any {
	return map[string]any{
		"issuer":                        issuer,
		"authorization_endpoint":        p.issuer + pathAuth,
		"token_endpoint":                p.issuer + pathToken,
		"device_authorization_endpoint": p.issuer + pathDevice,
		"userinfo_endpoint":             p.issuer + pathUserinfo,
		"introspection_endpoint":        p.issuer + PathIntrospect,
		"jwks_uri":                      p.issuer + PathJWKS,
		"grant_types_supported": []string{
			"authorization_code", "implicit", "refresh_token", "password",
			"client_credentials", "urn:ietf:params:oauth:grant-type:device_code",
		},
		"response_types_supported": []string{
			"code", "none", "id_token", "token", "id_token token",
			"code id_token", "code token", "code id_token token",
		},
		"subject_types_supported": []string{"public", "pairwise"},
		"id_token_signing_alg_values_supported": []string{
			"PS384", "RS384", "EdDSA", "ES384", "HS256", "HS512", "ES256",
			"RS256", "HS384", "ES512", "PS256", "PS512", "RS512",
		},
		"token_endpoint_auth_methods_supported": []string{
			"private_key_jwt", "client_secret_basic", "client_secret_post",
			"tls_client_auth", "client_secret_jwt",
		},
		"scopes_supported": []string{"openid", "profile", "email", "roles", "offline_access"},
	}
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "testidp: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
