package keycache

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestNewHTTPClientErrors(t *testing.T) {
	dir := t.TempDir()
	noCerts := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(noCerts, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, MaxCAFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.pem")
	if err := os.WriteFile(open, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o646); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(noCerts, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		timeout time.Duration
		caFile  string
		proxy   string
		want    string
	}{
		{"zero timeout", 0, "", "", "timeout must be positive"},
		{"negative timeout", -time.Second, "", "", "timeout must be positive"},
		{"missing CA file", time.Second, filepath.Join(dir, "missing.pem"), "", "reading CA file"},
		{"CA file without certificates", time.Second, noCerts, "", "no PEM certificate"},
		{"CA file is a directory", time.Second, dir, "", "is a directory, not a regular file"},
		{"CA file is a FIFO", time.Second, fifo, "", "is a FIFO, not a regular file"},
		{"CA file too large", time.Second, big, "", "more than the limit of 2097152 bytes"},
		{"CA file writable by others", time.Second, open, "", "is writable by group or others (mode 0646)"},
		{"CA file is a symbolic link", time.Second, link, "", "is a symbolic link"},
		{"proxy URL without host", time.Second, "", "proxy.example.com:3128", "not an absolute URL"},
		{"proxy URL with unsupported scheme", time.Second, "", "ftp://proxy.example.com", "not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewHTTPClient(tc.timeout, tc.caFile, tc.proxy)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want one containing %q", err, tc.want)
			}
		})
	}
}

func TestNewHTTPClientCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	tests := []struct {
		name    string
		caFile  string
		wantErr bool
	}{
		{"server certificate in the CA file", writeCAFile(t, srv), false},
		{"system roots only", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewHTTPClient(5*time.Second, tc.caFile, "")
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Get(srv.URL)
			if err == nil {
				resp.Body.Close()
			}
			var unknown x509.UnknownAuthorityError
			switch {
			case tc.wantErr && !errors.As(err, &unknown):
				t.Errorf("err = %v; want an unknown-authority error", err)
			case !tc.wantErr && err != nil:
				t.Errorf("err = %v", err)
			}
		})
	}
}

// recordingProxy is an HTTP proxy that answers every request itself and
// counts them.
func recordingProxy(tb testing.TB) (*httptest.Server, *atomic.Int64) {
	tb.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.WriteString(w, "via proxy "+r.URL.String())
	}))
	tb.Cleanup(srv.Close)
	return srv, &n
}

func TestNewHTTPClientProxy(t *testing.T) {
	envProxy, envHits := recordingProxy(t)
	confProxy, confHits := recordingProxy(t)
	for _, name := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"} {
		t.Setenv(name, envProxy.URL)
	}
	t.Setenv("NO_PROXY", "")
	const target = "http://idp.invalid/realms/test/certs"

	t.Run("environment ignored", func(t *testing.T) {
		c, err := NewHTTPClient(500*time.Millisecond, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if c.Transport.(*http.Transport).Proxy != nil {
			t.Fatal("Transport.Proxy is set; want no proxy at all")
		}
		if resp, err := c.Get(target); err == nil {
			resp.Body.Close()
			t.Errorf("GET %s succeeded; want a direct (failing) request", target)
		}
		if n := envHits.Load(); n != 0 {
			t.Errorf("the environment's proxy saw %d requests", n)
		}
	})
	t.Run("configured proxy used", func(t *testing.T) {
		c, err := NewHTTPClient(5*time.Second, "", confProxy.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Get(target)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "via proxy "+target || confHits.Load() != 1 || envHits.Load() != 0 {
			t.Errorf("body %q, configured proxy %d requests, environment's %d", body, confHits.Load(), envHits.Load())
		}
	})
}

func TestNewHTTPClientRedirects(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "plain") }))
	defer plain.Close()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/to-http":
			http.Redirect(w, r, plain.URL+"/", http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/hop/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
			if n == 0 {
				io.WriteString(w, "arrived")
				return
			}
			http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := NewHTTPClient(5*time.Second, writeCAFile(t, srv), "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{"no redirect", "/hop/0", ""},
		{"three redirects followed", fmt.Sprintf("/hop/%d", MaxRedirects), ""},
		{"four redirects refused", fmt.Sprintf("/hop/%d", MaxRedirects+1), "stopped after 3 redirects"},
		{"https to http refused", "/to-http", "redirect from https to http refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Get(srv.URL + tc.path)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if tc.wantErr == "" && string(body) != "arrived" {
					t.Errorf("body %q", body)
				}
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("err = %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("err = %v; want %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewHTTPClientTimeouts(t *testing.T) {
	const timeout = 4 * time.Second
	c, err := NewHTTPClient(timeout, "", "")
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Transport.(*http.Transport)
	if c.Timeout != timeout {
		t.Errorf("Timeout = %v", c.Timeout)
	}
	for name, d := range map[string]time.Duration{
		"TLSHandshakeTimeout":   tr.TLSHandshakeTimeout,
		"ResponseHeaderTimeout": tr.ResponseHeaderTimeout,
	} {
		if d <= 0 || d >= timeout {
			t.Errorf("%s = %v; want between 0 and %v", name, d, timeout)
		}
	}
}

// The CA file replaces the system roots, and without one the client leaves
// RootCAs nil so crypto/x509 loads the system pool only at a TLS handshake
// (building a client must stay cheap: one is built for every login).
func TestNewHTTPClientRoots(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	c, err := NewHTTPClient(time.Second, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if roots := c.Transport.(*http.Transport).TLSClientConfig.RootCAs; roots != nil {
		t.Errorf("RootCAs without a CA file = %v; want nil (system roots, loaded lazily)", roots)
	}
	c, err = NewHTTPClient(time.Second, writeCAFile(t, srv), "")
	if err != nil {
		t.Fatal(err)
	}
	roots := c.Transport.(*http.Transport).TLSClientConfig.RootCAs
	if roots == nil || !roots.Equal(poolOf(srv.Certificate())) {
		t.Errorf("RootCAs with a CA file is not exactly the file's certificates")
	}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
