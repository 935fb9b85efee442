//go:build ojw_backend

package keycache

import (
	"context"
	"fmt"
	"time"
)

// The backend's build: no HTTP client is linked (see http_fetch.go). The
// module only ever queries with CacheOnly and leaves fetches to the
// oauth_jwt_fetch helper; a fetch attempted anyway fails cleanly.

// HTTPClient stands for the HTTP client of the full build.
type HTTPClient struct{}

// NewHTTPClient checks the client settings as the full build does and
// returns a placeholder.
func NewHTTPClient(timeout time.Duration, caFile, proxyURL string) (*HTTPClient, error) {
	if _, _, err := checkClientSettings(timeout, caFile, proxyURL); err != nil {
		return nil, err
	}
	return &HTTPClient{}, nil
}

func (c *Cache) setClient(base *HTTPClient) error {
	c.client = base
	return nil
}

func crossCheckJWKS(string, []byte) error { return nil }

func (c *Cache) httpGet(_ context.Context, rawURL, _ string) ([]byte, error) {
	return nil, fmt.Errorf("GET %s: this build of oauth_jwt cannot fetch; oauth_jwt_fetch does", redactString(rawURL))
}
