package keycache

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// MaxRedirects is how many redirects a client from NewHTTPClient follows.
const MaxRedirects = 3

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
//     crypto/x509 loads only at the first TLS handshake: building a client
//     costs microseconds, while loading the system pool costs 10-50 ms and
//     about 4 MB in every backend, and a warm key cache never needs it;
//   - proxyURL ("" = none) is the only proxy ever used: the environment
//     (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) is ignored, since a backend's
//     environment is not the configuration;
//   - at most MaxRedirects redirects, never from https to http.
func NewHTTPClient(timeout time.Duration, caFile, proxyURL string) (*http.Client, error) {
	if timeout <= 0 {
		return nil, errors.New("keycache: HTTP timeout must be positive")
	}
	var roots *x509.CertPool // nil: the system roots, loaded lazily by crypto/x509
	if caFile != "" {
		roots = x509.NewCertPool()
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("keycache: reading CA file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("keycache: CA file %s holds no PEM certificate", caFile)
		}
	}
	var proxy func(*http.Request) (*url.URL, error) // nil: no proxy, whatever the environment says
	if proxyURL != "" {
		u, err := url.Parse(proxyURL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("keycache: proxy URL %q is not an absolute URL", redactString(proxyURL))
		}
		switch u.Scheme {
		case "http", "https", "socks5", "socks5h":
		default:
			return nil, fmt.Errorf("keycache: proxy URL scheme %q is not supported", u.Scheme)
		}
		proxy = http.ProxyURL(u)
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
