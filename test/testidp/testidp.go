// Package testidp is a small OpenID Connect identity provider for the
// integration tests of oauth_jwt. It serves a discovery document (OpenID
// Connect Discovery 1.0, RFC 8414) and a JSON Web Key Set (RFC 7517) shaped
// like Keycloak's, mints JSON Web Tokens (RFC 7519, signed as RFC 7515 JWS)
// with the keys it publishes, rotates keys, and injects faults into its
// endpoints: refused connections, hanging or slow answers, server errors,
// garbage and oversized bodies, and a discovery document naming another
// issuer. It also mints the hostile tokens a validator following RFC 8725
// must reject: alg "none", HS256 keyed with the published public key, and a
// signature by a key that is not published under the kid it claims.
//
// It listens on loopback only and has no login, no token endpoint and no
// users: it is a fault injector, not a stand-in for Keycloak, which is
// tested separately.
package testidp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Paths of the two endpoints the IdP serves, relative to its issuer. They
// are Keycloak's. Requests accepts them as well as full URL paths.
const (
	PathDiscovery = "/.well-known/openid-configuration"
	PathJWKS      = "/protocol/openid-connect/certs"
)

// Keycloak endpoint paths relative to the issuer, named in the discovery
// document; the device and token endpoints serve the device flow only.
const (
	pathAuth     = "/protocol/openid-connect/auth"
	pathToken    = "/protocol/openid-connect/token"
	pathDevice   = "/protocol/openid-connect/auth/device"
	pathUserinfo = "/protocol/openid-connect/userinfo"
)

// Bounds that keep every test finite.
const (
	defaultAddr      = "127.0.0.1:0"
	defaultTokenTTL  = 5 * time.Minute
	closeWait        = 2 * time.Second
	relistenAttempts = 50
	relistenPause    = 50 * time.Millisecond
)

// Options configure an IdP. The zero value is a plain-HTTP provider with
// an RSA key and the issuer at the root of its base URL.
type Options struct {
	// Realm is the path suffix of the issuer, such as "/realms/test": the
	// issuer is the base URL followed by Realm. Empty, or a path starting
	// with "/" and not ending with one.
	Realm string
	// TLS serves https with a certificate from a fresh self-signed CA,
	// whose PEM file CAFile names.
	TLS bool
	// KeyType selects the signing keys: KeyTypeRSA (2048 bits, RS256, the
	// default) or KeyTypeEC (P-256, ES256).
	KeyType string
	// Dir is where the CA file is written when TLS is set. When empty a
	// fresh temporary directory is made and Close removes it.
	Dir string
	// Addr is the listen address. It must be a loopback address; the
	// default is "127.0.0.1:0" (a free port).
	Addr string
	// Now is the clock for the default iat and exp claims of Mint;
	// time.Now when nil.
	Now func() time.Time
}

// IdP is a running test identity provider. Its methods are safe for
// concurrent use. Close it when done.
type IdP struct {
	realm   string
	keyType string
	now     func() time.Time
	addr    string // host:port, kept across ModeDown
	issuer  string
	tlsConf *tls.Config
	caFile  string
	tmpDir  string // made by Start, removed by Close

	life   sync.Mutex    // serialises SetMode and Close (listener up/down)
	srv    *http.Server  // nil while down or closed
	served chan struct{} // closed when srv.Serve has returned

	mu       sync.Mutex
	mode     Mode
	release  chan struct{} // closed and replaced on every mode change
	closed   bool
	done     chan struct{} // closed by Close
	handlers sync.WaitGroup
	counts   map[string]int
	keys     []*keyEntry // every key made, in order of creation
	active   string      // kid of the signing key
	encKID   string      // kid of the "use":"enc" key

	introID, introSecret string                    // the introspection client
	introMode            IntroMode                 // fault mode of the introspection endpoint
	introOver            map[string]any            // claims changed in every active answer
	opaque               map[string]map[string]any // opaque token -> its claims
	revoked              map[string]bool           // tokens revoked

	deviceClaims map[string]any // claims of device-flow tokens
	deviceSeq    int64          // device codes handed out (atomic)
}

// Start makes the keys, listens on a loopback port and serves until Close.
func Start(opts Options) (*IdP, error) {
	if opts.KeyType == "" {
		opts.KeyType = KeyTypeRSA
	}
	if opts.Realm != "" && (!strings.HasPrefix(opts.Realm, "/") || strings.HasSuffix(opts.Realm, "/")) {
		return nil, fmt.Errorf("testidp: realm %q must start with \"/\" and not end with one", opts.Realm)
	}
	if opts.Addr == "" {
		opts.Addr = defaultAddr
	}
	if err := checkLoopback(opts.Addr); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sig, err := NewKey(opts.KeyType)
	if err != nil {
		return nil, err
	}
	enc, err := NewKey(KeyTypeRSA)
	if err != nil {
		return nil, err
	}
	p := &IdP{
		realm:   opts.Realm,
		keyType: opts.KeyType,
		now:     opts.Now,
		release: make(chan struct{}),
		done:    make(chan struct{}),
		counts:  make(map[string]int),
		keys: []*keyEntry{
			{key: sig, use: useSig, published: true},
			{key: enc, use: useEnc, published: true},
		},
		active: sig.KID,
		encKID: enc.KID,
	}
	if opts.TLS {
		if err := p.setupTLS(opts.Dir); err != nil {
			p.removeFiles()
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		p.removeFiles()
		return nil, fmt.Errorf("testidp: listen: %w", err)
	}
	p.addr = ln.Addr().String()
	scheme := "http"
	if opts.TLS {
		scheme = "https"
	}
	p.issuer = scheme + "://" + p.addr + opts.Realm
	p.serve(ln)
	return p, nil
}

// checkLoopback refuses listen addresses that are not loopback.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("testidp: listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("testidp: listen address %q is not a loopback address", addr)
	}
	return nil
}

// Issuer is the issuer identifier, such as
// "http://127.0.0.1:PORT/realms/test", without a trailing slash.
func (p *IdP) Issuer() string { return p.issuer }

// DiscoveryURL is the URL of the OpenID Connect discovery document.
func (p *IdP) DiscoveryURL() string { return p.issuer + PathDiscovery }

// JWKSURI is the URL of the JSON Web Key Set, as the discovery document
// names it in jwks_uri.
func (p *IdP) JWKSURI() string { return p.issuer + PathJWKS }

// CAFile is the path of the PEM file holding the CA certificate that signed
// the server certificate; empty unless Options.TLS was set.
func (p *IdP) CAFile() string { return p.caFile }

// Requests is the number of requests received for path since Start or
// ResetCounts. Path is PathDiscovery, PathJWKS, or any URL path as the
// client sent it (such as "/realms/test/.well-known/openid-configuration").
// Requests count on arrival, whatever the mode then does with them.
func (p *IdP) Requests(path string) int {
	if path == PathDiscovery || path == PathJWKS || path == PathIntrospect {
		path = p.realm + path
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[path]
}

// ResetCounts sets every request counter back to zero.
func (p *IdP) ResetCounts() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.counts)
}

// Mode is the current fault mode.
func (p *IdP) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode switches the discovery and JWKS endpoints to m. Requests waiting
// in ModeHang or ModeSlow are released and answered as m says. Entering
// ModeDown closes the listener and every open connection; leaving it
// listens again on the same port, so Issuer stays valid. The error is
// non-nil when the IdP is closed or the port could not be taken again (the
// IdP then stays down).
func (p *IdP) SetMode(m Mode) error {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errors.New("testidp: set mode: closed")
	}
	prev := p.mode
	p.mode = m
	close(p.release)
	p.release = make(chan struct{})
	p.mu.Unlock()

	switch {
	case m == ModeDown && prev != ModeDown:
		p.stop()
	case m != ModeDown && prev == ModeDown:
		ln, err := p.relisten()
		if err != nil {
			p.mu.Lock()
			p.mode = ModeDown
			p.mu.Unlock()
			return err
		}
		p.serve(ln)
	}
	return nil
}

// relisten takes the port back after ModeDown, retrying for a short while.
func (p *IdP) relisten() (net.Listener, error) {
	var err error
	for range relistenAttempts {
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			return ln, nil
		}
		time.Sleep(relistenPause)
	}
	return nil, fmt.Errorf("testidp: listen again on %s: %w", p.addr, err)
}

// Close stops serving, releases hanging requests and removes the files
// Start wrote. It waits at most a few seconds for handlers to return.
// Calling it again does nothing.
func (p *IdP) Close() {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()

	p.stop()
	finished := make(chan struct{})
	go func() {
		p.handlers.Wait()
		close(finished)
	}()
	timer := time.NewTimer(closeWait)
	defer timer.Stop()
	select {
	case <-finished:
	case <-timer.C:
	}
	p.removeFiles()
}

// removeFiles deletes the CA file and the directory Start made for it.
func (p *IdP) removeFiles() {
	if p.caFile != "" {
		_ = os.Remove(p.caFile)
	}
	if p.tmpDir != "" {
		_ = os.RemoveAll(p.tmpDir)
	}
}

// serve starts an HTTP server on ln. The caller holds p.life or is Start.
func (p *IdP) serve(ln net.Listener) {
	if p.tlsConf != nil {
		ln = tls.NewListener(ln, p.tlsConf)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(p.handle),
		ReadHeaderTimeout: 10 * time.Second,
		// Failed TLS handshakes from deliberately untrusting clients are
		// expected; keep them out of the test output.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	p.srv, p.served = srv, served
}

// stop closes the listener and every connection, without waiting for
// handlers. The caller holds p.life.
func (p *IdP) stop() {
	if p.srv == nil {
		return
	}
	_ = p.srv.Close()
	<-p.served
	p.srv, p.served = nil, nil
}
