//go:build !ojw_backend

package keycache

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// This file is the network half of the cache. The module's backend build
// (tag ojw_backend) leaves it out, so that neither net/http, crypto/tls nor
// jwx is linked into every backend: fetches run in the oauth_jwt_fetch
// helper, which is built without the tag.

// HTTPClient is the client a Cache fetches with.
type HTTPClient = http.Client

// NewHTTPClient returns the HTTP client the cache should use to reach an
// identity provider:
//
//   - timeout bounds each request as a whole (http.Client.Timeout); the
//     dial, TLS handshake and response header waits have shorter bounds of
//     their own;
//   - TLS 1.2 or later, verified against the PEM certificates in caFile
//     when it is set (instead of the system roots, as curl's --cacert and
//     libpq's PGOAUTHCAFILE do; an error when the file cannot be read or
//     holds no certificate), else against the system roots, which
//     crypto/x509 loads only at the first TLS handshake;
//   - proxyURL ("" = none) is the only proxy ever used: the environment
//     (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) is ignored, since a backend's
//     environment is not the configuration;
//   - at most MaxRedirects redirects, never from https to http.
func NewHTTPClient(timeout time.Duration, caFile, proxyURL string) (*http.Client, error) {
	caPEM, proxyU, err := checkClientSettings(timeout, caFile, proxyURL)
	if err != nil {
		return nil, err
	}
	var roots *x509.CertPool // nil: the system roots, loaded lazily by crypto/x509
	if caFile != "" {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("keycache: CA file %s holds no PEM certificate", caFile)
		}
	}
	var proxy func(*http.Request) (*url.URL, error) // nil: no proxy, whatever the environment says
	if proxyU != nil {
		proxy = http.ProxyURL(proxyU)
	}
	dialer := &net.Dialer{Timeout: timeout / 2, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                  proxy,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    timeout / 2,
		ResponseHeaderTimeout:  timeout * 3 / 4,
		ExpectContinueTimeout:  time.Second,
		IdleConnTimeout:        30 * time.Second,
		MaxIdleConns:           4,
		MaxIdleConnsPerHost:    2,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Timeout:       timeout,
		Transport:     transport,
		CheckRedirect: checkRedirect,
	}, nil
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > MaxRedirects {
		return fmt.Errorf("stopped after %d redirects", MaxRedirects)
	}
	for _, prev := range via {
		if prev.URL.Scheme == "https" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirect from https to %s refused", req.URL.Scheme)
		}
	}
	return nil
}

// setClient keeps a copy of base whose redirects also obey the https rule.
func (c *Cache) setClient(base *http.Client) error {
	client := *base
	next := base.CheckRedirect
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := c.checkParsedURL(req.URL); err != nil {
			return fmt.Errorf("redirect refused: %w", err)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	c.client = &client
	return nil
}

// crossCheckJWKS parses a fetched key set with jwx as well, leniently (as
// ParseKeySet is): a set jwx cannot read at all is not stored.
func crossCheckJWKS(jwksURL string, body []byte) error {
	if _, err := jwk.Parse(body, jwk.WithMaxKeys(MaxKeys), jwk.WithStrictKeySetParsing(false)); err != nil {
		return fmt.Errorf("JWKS at %s: %s", redactString(jwksURL), truncate(err.Error(), 200))
	}
	return nil
}

// httpGet fetches rawURL and returns its body: status 200 required, body at
// most maxBody bytes. Error texts name the URL without secrets.
func (c *Cache) httpGet(ctx context.Context, rawURL, accept string) ([]byte, error) {
	shown := redactString(rawURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", shown, err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "oauth_jwt")
	resp, err := c.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the full URL
		}
		return nil, fmt.Errorf("GET %s: %w", shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("GET %s: status %d %s", shown, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if resp.ContentLength > c.maxBody {
		return nil, fmt.Errorf("GET %s: %w (Content-Length %d, limit %d bytes)", shown, ErrTooLarge, resp.ContentLength, c.maxBody)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading the body: %w", shown, err)
	}
	if int64(len(body)) > c.maxBody {
		return nil, fmt.Errorf("GET %s: %w (limit %d bytes)", shown, ErrTooLarge, c.maxBody)
	}
	return body, nil
}
