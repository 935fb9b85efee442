package keycache

import (
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/oauth-jwt/oauth_jwt/internal/trustedfile"
)

// MaxRedirects is how many redirects a client from NewHTTPClient follows.
const MaxRedirects = 3

// MaxCAFileBytes bounds the CA file (a system bundle of every public root
// is about 220 kB).
const MaxCAFileBytes = 2 << 20

// caFileRule is the trusted-file rule of the CA file (package
// trustedfile): it decides which identity providers are believed, so which
// keys are trusted. The backend reads it at every login with signals
// blocked: never a blocking open, never an unbounded read.
var caFileRule = trustedfile.Rule{What: "CA file", MaxBytes: MaxCAFileBytes}

// checkClientSettings checks what NewHTTPClient is given, in every build:
// the backend's build (tag ojw_backend) has no HTTP client but must still
// refuse a broken ca_file or http_proxy at every login, not only when a
// fetch happens. It returns the CA file's contents and the parsed proxy URL.
func checkClientSettings(timeout time.Duration, caFile, proxyURL string) (caPEM []byte, proxy *url.URL, err error) {
	if timeout <= 0 {
		return nil, nil, errors.New("keycache: HTTP timeout must be positive")
	}
	if caFile != "" {
		caPEM, err = caFileRule.Read(caFile)
		if errors.Is(err, trustedfile.ErrUntrusted) || errors.Is(err, trustedfile.ErrTooLarge) {
			return nil, nil, err // names the file and the fix
		}
		if err != nil {
			return nil, nil, fmt.Errorf("keycache: reading CA file: %w", err)
		}
		if !hasPEMCertificate(caPEM) {
			return nil, nil, fmt.Errorf("keycache: CA file %s holds no PEM certificate", caFile)
		}
	}
	if proxyURL != "" {
		u, err := url.Parse(proxyURL)
		if err != nil || u.Host == "" {
			return nil, nil, fmt.Errorf("keycache: proxy URL %q is not an absolute URL", redactString(proxyURL))
		}
		switch u.Scheme {
		case "http", "https", "socks5", "socks5h":
		default:
			return nil, nil, fmt.Errorf("keycache: proxy URL scheme %q is not supported", u.Scheme)
		}
		proxy = u
	}
	return caPEM, proxy, nil
}

// hasPEMCertificate reports whether data holds a PEM CERTIFICATE block.
func hasPEMCertificate(data []byte) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == "CERTIFICATE" && len(b.Headers) == 0 {
			return true
		}
	}
}
