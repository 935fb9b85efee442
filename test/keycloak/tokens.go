package keycloak

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HTTPClient is used for token, discovery and JWKS requests.
var HTTPClient = &http.Client{Timeout: 30 * time.Second}

// Endpoints of a Keycloak realm, from its issuer.
func TokenEndpoint(issuer string) string  { return issuer + "/protocol/openid-connect/token" }
func DeviceEndpoint(issuer string) string { return issuer + "/protocol/openid-connect/auth/device" }
func JWKSURL(issuer string) string        { return issuer + "/protocol/openid-connect/certs" }
func DiscoveryURL(issuer string) string   { return issuer + "/.well-known/openid-configuration" }

// TokenResponse is a token endpoint answer.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	Scope        string `json:"scope"`
}

// OAuthError is an OAuth error answer (RFC 6749 §5.2), or any other non-2xx answer.
type OAuthError struct {
	Status      int    // HTTP status
	Code        string `json:"error"`
	Description string `json:"error_description"`
	Body        string // the raw body when it was not an OAuth error document
}

func (e *OAuthError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("HTTP %d: %s: %s", e.Status, e.Code, e.Description)
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body)
}

// postForm POSTs a form and decodes a 2xx JSON answer into out; other answers give *OAuthError.
func postForm(ctx context.Context, endpoint string, form url.Values, basicUser, basicPass string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basicUser != "" {
		// RFC 6749 §2.3.1: form-urlencode, then Basic.
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	return doJSON(req, out)
}

func doJSON(req *http.Request, out any) error {
	resp, err := HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		e := &OAuthError{Status: resp.StatusCode}
		if json.Unmarshal(body, e) != nil || e.Code == "" {
			e.Body = strings.TrimSpace(string(body))
			if len(e.Body) > 500 {
				e.Body = e.Body[:500] + "…"
			}
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: decoding %q: %w", req.Method, req.URL, truncate(string(body), 200), err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// ClientCredentialsToken gets an access token for a confidential client (client_credentials
// grant, client authentication by HTTP Basic).
func ClientCredentialsToken(ctx context.Context, issuer, clientID, secret string) (string, error) {
	var tr TokenResponse
	err := postForm(ctx, TokenEndpoint(issuer), url.Values{"grant_type": {"client_credentials"}}, clientID, secret, &tr)
	if err != nil {
		return "", fmt.Errorf("client_credentials for %s: %w", clientID, err)
	}
	return tr.AccessToken, nil
}

// PasswordGrant runs the resource owner password grant for a public client with direct
// access grants enabled (in realm postgres: no-audience and short-lived; not psql).
func PasswordGrant(ctx context.Context, issuer, clientID, username, password string) (*TokenResponse, error) {
	var tr TokenResponse
	err := postForm(ctx, TokenEndpoint(issuer), url.Values{
		"grant_type": {"password"}, "client_id": {clientID},
		"username": {username}, "password": {password}, "scope": {"openid"},
	}, "", "", &tr)
	if err != nil {
		return nil, fmt.Errorf("password grant for %s/%s: %w", clientID, username, err)
	}
	return &tr, nil
}

// DeviceAuthorization is a device authorization answer (RFC 8628 §3.2).
type DeviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// RequestDeviceAuthorization starts a device flow for a public client (scope may be "").
func RequestDeviceAuthorization(ctx context.Context, issuer, clientID, scope string) (*DeviceAuthorization, error) {
	form := url.Values{"client_id": {clientID}}
	if scope != "" {
		form.Set("scope", scope)
	}
	var da DeviceAuthorization
	if err := postForm(ctx, DeviceEndpoint(issuer), form, "", "", &da); err != nil {
		return nil, fmt.Errorf("device authorization for %s: %w", clientID, err)
	}
	if da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return nil, fmt.Errorf("device authorization for %s: incomplete answer %+v", clientID, da)
	}
	return &da, nil
}

// PollDeviceToken polls the token endpoint until the device flow is approved (or denied,
// expired, or ctx ends), honouring interval and slow_down.
func PollDeviceToken(ctx context.Context, issuer, clientID string, da *DeviceAuthorization) (*TokenResponse, error) {
	interval := time.Duration(da.Interval) * time.Second
	if interval <= 0 {
		interval = 5 * time.Second
	}
	deadline := time.Now().Add(time.Duration(da.ExpiresIn) * time.Second)
	for {
		var tr TokenResponse
		err := postForm(ctx, TokenEndpoint(issuer), url.Values{
			"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {da.DeviceCode}, "client_id": {clientID},
		}, "", "", &tr)
		if err == nil {
			return &tr, nil
		}
		var oe *OAuthError
		if !errors.As(err, &oe) || (oe.Code != "authorization_pending" && oe.Code != "slow_down") {
			return nil, fmt.Errorf("device token for %s: %w", clientID, err)
		}
		if oe.Code == "slow_down" {
			interval += 5 * time.Second
		}
		if da.ExpiresIn > 0 && time.Now().After(deadline) {
			return nil, fmt.Errorf("device token for %s: expired while %s", clientID, oe.Code)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// DeviceGrant runs a whole device flow for a public client without psql or a browser:
// device authorization (scope "openid"), approval by ApproveDevice as username, then
// polling the token endpoint.
func DeviceGrant(ctx context.Context, issuer, clientID, username, password string) (*TokenResponse, error) {
	da, err := RequestDeviceAuthorization(ctx, issuer, clientID, "openid")
	if err != nil {
		return nil, err
	}
	if err := ApproveDevice(ctx, da.VerificationURI, da.UserCode, username, password); err != nil {
		return nil, err
	}
	return PollDeviceToken(ctx, issuer, clientID, da)
}

// DeviceToken is DeviceGrant returning only the access token.
func DeviceToken(ctx context.Context, issuer, clientID, username, password string) (string, error) {
	tr, err := DeviceGrant(ctx, issuer, clientID, username, password)
	if err != nil {
		return "", err
	}
	return tr.AccessToken, nil
}

// DecodeJWT splits a compact JWS and decodes its header and claims WITHOUT verifying it.
func DecodeJWT(token string) (header, claims map[string]any, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, fmt.Errorf("not a compact JWS: %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, nil, fmt.Errorf("part %d: %w", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			return nil, nil, fmt.Errorf("part %d: %w", i, err)
		}
	}
	return header, claims, nil
}

// Audiences returns the aud claim as a list (it is a string or an array).
func Audiences(claims map[string]any) []string {
	switch a := claims["aud"].(type) {
	case string:
		return []string{a}
	case []any:
		out := make([]string, 0, len(a))
		for _, v := range a {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// Strings returns a claim holding an array of strings (nil if absent or another type).
func Strings(v any) []string {
	a, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(a))
	for _, x := range a {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// RealmRoles returns realm_access.roles.
func RealmRoles(claims map[string]any) []string {
	ra, _ := claims["realm_access"].(map[string]any)
	return Strings(ra["roles"])
}

// JWK is one key of a JWKS (the fields the tests look at).
type JWK struct {
	Kid string   `json:"kid"`
	Kty string   `json:"kty"`
	Alg string   `json:"alg"`
	Use string   `json:"use"`
	Crv string   `json:"crv,omitempty"`
	N   string   `json:"n,omitempty"`
	E   string   `json:"e,omitempty"`
	X5c []string `json:"x5c,omitempty"`
}

// FetchJWKS gets a realm's JWKS.
func FetchJWKS(ctx context.Context, issuer string) ([]JWK, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, JWKSURL(issuer), nil)
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []JWK `json:"keys"`
	}
	if err := doJSON(req, &set); err != nil {
		return nil, fmt.Errorf("JWKS of %s: %w", issuer, err)
	}
	return set.Keys, nil
}

// FetchDiscovery gets a realm's OpenID configuration. If host is not "", it is sent as the
// Host header (to show that the pinned hostname ignores it).
func FetchDiscovery(ctx context.Context, issuer, host string) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, DiscoveryURL(issuer), nil)
	if err != nil {
		return nil, err
	}
	if host != "" {
		req.Host = host
	}
	var doc map[string]any
	if err := doJSON(req, &doc); err != nil {
		return nil, fmt.Errorf("discovery of %s: %w", issuer, err)
	}
	return doc, nil
}
