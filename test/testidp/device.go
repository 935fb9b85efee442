package testidp

import (
	"fmt"
	"net/http"
	"sync/atomic"
)

// deviceGrant is the grant type libpq's device flow polls with.
const deviceGrant = "urn:ietf:params:oauth:grant-type:device_code"

// SetDeviceClaims sets the claims of the access token that the device flow
// hands out (merged over Mint's defaults). The flow approves every code at
// once, so that real psql can log in through this provider without a
// person; nil restores the default (sub "test-user").
func (p *IdP) SetDeviceClaims(claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deviceClaims = claims
}

// handleDevice serves the device authorization and token endpoints
// (RFC 8628), the part of OAuth that psql drives. They ignore fault modes.
func (p *IdP) handleDevice(w http.ResponseWriter, r *http.Request, token bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request"})
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("client_id") == "" && r.Header.Get("Authorization") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client"})
		return
	}
	if !token {
		n := atomic.AddInt64(&p.deviceSeq, 1)
		writeJSON(w, http.StatusOK, map[string]any{
			"device_code":               fmt.Sprintf("device-code-%d", n),
			"user_code":                 fmt.Sprintf("TEST-%04d", n%10000),
			"verification_uri":          p.issuer + "/device",
			"verification_uri_complete": fmt.Sprintf("%s/device?user_code=TEST-%04d", p.issuer, n%10000),
			"expires_in":                600,
			"interval":                  1,
		})
		return
	}
	if r.PostForm.Get("grant_type") != deviceGrant || r.PostForm.Get("device_code") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	p.mu.Lock()
	claims := map[string]any{}
	for k, v := range p.deviceClaims {
		claims[k] = v
	}
	p.mu.Unlock()
	if _, ok := claims["azp"]; !ok {
		claims["azp"] = r.PostForm.Get("client_id")
	}
	tok, err := p.Mint(claims)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 300})
}
