//go:build !ojw_backend

package keycache

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tidwall/gjson"
)

// Introspect asks the issuer's introspection endpoint about q.Token (RFC
// 7662) and returns the answer: a JSON object of at most
// MaxIntrospectionBytes, from an HTTP 200. It judges nothing else (active,
// claims): the validator does. Errors match ErrIntrospection (or
// ErrInsecureURL) and never contain the token or the secret.
func (c *Cache) Introspect(ctx context.Context, q IntrospectQuery) ([]byte, error) {
	endpoint := q.Endpoint
	if endpoint == "" {
		docURL := discoveryURLOf(q.Issuer, q.DiscoveryURL)
		endpoint = c.introspectionEndpointFromCache(q.Issuer, docURL)
		if endpoint == "" {
			if err := c.checkURL(docURL); err != nil {
				return nil, err
			}
			body, err := c.httpGet(ctx, docURL, "application/json")
			if err != nil {
				return nil, fmt.Errorf("%w: the discovery document (for its introspection_endpoint): %w", ErrIntrospection, err)
			}
			if _, err := c.parseDiscovery(q.Issuer, docURL, body); err != nil && errors.Is(err, ErrDiscoveryMismatch) {
				return nil, fmt.Errorf("%w: %w", ErrIntrospection, err)
			}
			v := gjson.GetBytes(body, "introspection_endpoint")
			if v.Type != gjson.String || v.Str == "" {
				return nil, fmt.Errorf("%w: the discovery document at %s names no introspection_endpoint; set \"oauth_jwt.introspection_endpoint\"", ErrIntrospection, redactString(docURL))
			}
			endpoint = v.Str
		}
	}
	if err := c.checkURL(endpoint); err != nil {
		return nil, fmt.Errorf("introspection endpoint: %w", err)
	}
	shown := redactString(endpoint)
	form := url.Values{"token": {q.Token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: POST %s: cannot build the request", ErrIntrospection, shown)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "oauth_jwt")
	req.Header.Set("Authorization", BasicAuth(q.ClientID, q.ClientSecret))
	resp, err := c.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL
		}
		return nil, fmt.Errorf("%w: POST %s: %w", ErrIntrospection, shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		why := ""
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			why = " (the client credentials, \"oauth_jwt.introspection_client_id\" and the secret file, were refused)"
		}
		return nil, fmt.Errorf("%w: POST %s: status %d %s%s", ErrIntrospection, shown, resp.StatusCode, http.StatusText(resp.StatusCode), why)
	}
	if resp.ContentLength > MaxIntrospectionBytes {
		return nil, fmt.Errorf("%w: POST %s: the answer is too large (Content-Length %d, limit %d bytes)", ErrIntrospection, shown, resp.ContentLength, MaxIntrospectionBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxIntrospectionBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: POST %s: reading the answer: %w", ErrIntrospection, shown, err)
	}
	if len(body) > MaxIntrospectionBytes {
		return nil, fmt.Errorf("%w: POST %s: the answer is larger than %d bytes", ErrIntrospection, shown, MaxIntrospectionBytes)
	}
	if !IsJSONObject(body) {
		return nil, fmt.Errorf("%w: POST %s: the answer (%d bytes) is not a JSON object", ErrIntrospection, shown, len(body))
	}
	return body, nil
}

// BasicAuth is the Authorization header of a confidential client: id and
// secret each form-urlencoded (RFC 6749 section 2.3.1), then HTTP Basic.
func BasicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}
