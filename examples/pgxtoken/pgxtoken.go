// Package pgxtoken shows how a Go service logs in to PostgreSQL 18 through
// oauth_jwt: it gets an access token from the identity provider with the
// OAuth 2.0 client credentials grant (RFC 6749, section 4.4), keeps it until
// shortly before it expires, and hands it to pgx through
// pgconn.Config.OAuthTokenProvider (pgx v5.12 or later), which sends it
// with SASL OAUTHBEARER. No discovery and no device flow: the service knows
// its token endpoint.
//
//	src := &pgxtoken.ClientCredentials{
//		TokenURL:     "https://sso.example.com/realms/corp/protocol/openid-connect/token",
//		ClientID:     "pg-service",
//		ClientSecret: secret, // from a file or a secret store, never a command-line argument
//	}
//	cfg, err := pgxtoken.Config("host=db.example.com user=app_writer dbname=app sslmode=verify-full", src)
//	conn, err := pgx.ConnectConfig(ctx, cfg)
//
// With a pool, set the provider on the pool's connection config:
//
//	pcfg, err := pgxpool.ParseConfig("host=db.example.com user=app_writer dbname=app sslmode=verify-full")
//	pcfg.ConnConfig.OAuthTokenProvider = src.Token
//	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
//
// Do not put libpq's oauth_issuer or oauth_client_id in a pgx connection
// string: pgx does not know them and sends them to the server as run-time
// parameters, which fails the connection.
//
// The project's tests run this code: test/clients (TestPgxClientCredentials,
// against a token endpoint backed by the test identity provider) and
// test/e2e (TestClientExamples, against Keycloak).
package pgxtoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// refreshMargin is how long before its expiry a cached token is replaced,
// so that a token never expires between the request and the server's check.
const refreshMargin = time.Minute

// maxResponseBytes bounds the token endpoint's answer.
const maxResponseBytes = 1 << 20

// ClientCredentials gets and caches access tokens with the client
// credentials grant. Its Token method is safe for concurrent use: a pool
// opening many connections at once makes one request.
type ClientCredentials struct {
	// TokenURL is the provider's token endpoint ("token_endpoint" in its
	// discovery document).
	TokenURL string
	// ClientID and ClientSecret authenticate the service. They are sent
	// with HTTP Basic authentication (RFC 6749, section 2.3.1) unless
	// SecretInBody is set.
	ClientID     string
	ClientSecret string
	// SecretInBody sends client_id and client_secret as form fields
	// (client_secret_post) instead of HTTP Basic.
	SecretInBody bool
	// Scope, when set, is sent as the scope parameter: Okta needs a custom
	// scope, Entra ID "api://<api client id>/.default".
	Scope string
	// Params are extra form parameters, e.g. {"audience": {"https://db.example.com"}}
	// for Auth0, which issues a JWT for an API only when the request names it.
	Params url.Values
	// HTTPClient makes the requests; http.DefaultClient when nil. Give it
	// a timeout.
	HTTPClient *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

// tokenResponse is the part of RFC 6749's token response (section 5.1)
// that matters here.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Error       string `json:"error"`
	ErrorDesc   string `json:"error_description"`
}

// Token returns an access token: the cached one while it is valid for more
// than a minute, else a new one from the token endpoint. Its signature is
// that of pgconn.Config.OAuthTokenProvider.
func (c *ClientCredentials) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.token != "" && now.Add(refreshMargin).Before(c.expires) {
		return c.token, nil
	}
	tok, ttl, err := c.fetch(ctx)
	if err != nil {
		return "", err
	}
	c.token, c.expires = tok, now.Add(ttl)
	return tok, nil
}

func (c *ClientCredentials) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// fetch makes one client credentials request. Errors never contain the
// secret or the token.
func (c *ClientCredentials) fetch(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if c.Scope != "" {
		form.Set("scope", c.Scope)
	}
	for k, vs := range c.Params {
		form[k] = append([]string(nil), vs...)
	}
	if c.SecretInBody {
		form.Set("client_id", c.ClientID)
		form.Set("client_secret", c.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if !c.SecretInBody {
		req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("token request to %s: %w", c.TokenURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return "", 0, fmt.Errorf("token response from %s: %w", c.TokenURL, err)
	}
	var tr tokenResponse
	jsonErr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		if jsonErr == nil && tr.Error != "" {
			return "", 0, fmt.Errorf("token endpoint %s: %s: %s (HTTP %d)", c.TokenURL, tr.Error, tr.ErrorDesc, resp.StatusCode)
		}
		return "", 0, fmt.Errorf("token endpoint %s answered HTTP %d", c.TokenURL, resp.StatusCode)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return "", 0, fmt.Errorf("token endpoint %s answered %q, not JSON", c.TokenURL, mt)
	}
	if jsonErr != nil {
		return "", 0, fmt.Errorf("token response from %s: %w", c.TokenURL, jsonErr)
	}
	if tr.AccessToken == "" {
		return "", 0, errors.New("token response from " + c.TokenURL + " has no access_token")
	}
	if !strings.EqualFold(tr.TokenType, "Bearer") {
		return "", 0, fmt.Errorf("token response from %s has token_type %q, want Bearer", c.TokenURL, tr.TokenType)
	}
	ttl := time.Duration(tr.ExpiresIn) * time.Second
	if tr.ExpiresIn <= 0 {
		ttl = 0 // unknown lifetime: do not cache
	}
	return tr.AccessToken, ttl, nil
}

// Config parses a pgx connection string and makes every connection made
// with the result log in with a token from src.
func Config(connString string, src *ClientCredentials) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	cfg.OAuthTokenProvider = src.Token
	return cfg, nil
}
