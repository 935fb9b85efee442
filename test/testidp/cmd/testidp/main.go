// Command testidp runs one test identity provider (package
// github.com/oauth-jwt/oauth_jwt/test/testidp) on a loopback address for
// manual experiments with oauth_jwt. It prints the issuer and endpoint URLs,
// optionally writes a freshly minted access token to a file, and serves
// until SIGINT or SIGTERM (or for the time given with -for).
//
//	testidp -listen 127.0.0.1:0 -mint-to /tmp/token -sub alice -aud pg
//
// It is a fault injector for tests, not an identity provider: never point a
// production server at it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "testidp:", err)
		}
		stop()
		os.Exit(2)
	}
}

// modes are the fault modes -mode accepts by name.
func modes() []testidp.Mode {
	return []testidp.Mode{
		testidp.ModeNormal, testidp.ModeDown, testidp.ModeHang, testidp.ModeError500,
		testidp.ModeGarbage, testidp.ModeHuge, testidp.ModeIssuerMismatch,
	}
}

// run parses args, starts the IdP, reports on stdout and serves until ctx
// ends or the -for time has passed.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("testidp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		listen   = fs.String("listen", "127.0.0.1:0", "loopback `address` to listen on")
		realm    = fs.String("realm", "/realms/test", "issuer path suffix")
		useTLS   = fs.Bool("tls", false, "serve https with a fresh self-signed CA (its PEM file is printed)")
		keyType  = fs.String("key-type", testidp.KeyTypeRSA, "signing key type: RSA (RS256) or EC (ES256)")
		dir      = fs.String("dir", "", "`directory` for the CA file (default: a temporary one, removed on exit)")
		mintTo   = fs.String("mint-to", "", "write a freshly minted access token to `file` (mode 0600)")
		sub      = fs.String("sub", "test-user", "sub claim of the minted token")
		aud      = fs.String("aud", "", "aud claim of the minted token; several comma-separated audiences make an array")
		scope    = fs.String("scope", "", "scope claim of the minted token (space separated)")
		azp      = fs.String("azp", "", "azp claim of the minted token")
		ttl      = fs.Duration("ttl", 5*time.Minute, "lifetime of the minted token")
		claims   = fs.String("claims", "", "extra claims of the minted token as a JSON `object` (override the flags above)")
		mode     = fs.String("mode", "normal", "fault mode of the discovery and JWKS endpoints: "+modeList())
		slow     = fs.Duration("slow", 0, "answer discovery and JWKS requests after this `delay` (overrides -mode)")
		serveFor = fs.Duration("for", 0, "exit after this `duration` (default: until SIGINT or SIGTERM)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	m, err := parseMode(*mode)
	if err != nil {
		return err
	}
	if *slow > 0 {
		m = testidp.ModeSlow(*slow)
	}

	idp, err := testidp.Start(testidp.Options{Realm: *realm, TLS: *useTLS, KeyType: *keyType, Dir: *dir, Addr: *listen})
	if err != nil {
		return err
	}
	defer idp.Close()

	fmt.Fprintln(stdout, "issuer:", idp.Issuer())
	fmt.Fprintln(stdout, "discovery:", idp.DiscoveryURL())
	fmt.Fprintln(stdout, "jwks_uri:", idp.JWKSURI())
	if idp.CAFile() != "" {
		fmt.Fprintln(stdout, "ca_file:", idp.CAFile())
	}
	if *mintTo != "" {
		c := map[string]any{"sub": *sub, "exp": time.Now().Add(*ttl)}
		switch auds := strings.Split(*aud, ","); {
		case *aud == "":
		case len(auds) == 1:
			c["aud"] = auds[0]
		default:
			c["aud"] = auds
		}
		if *scope != "" {
			c["scope"] = *scope
		}
		if *azp != "" {
			c["azp"] = *azp
		}
		if *claims != "" {
			var extra map[string]any
			if err := json.Unmarshal([]byte(*claims), &extra); err != nil {
				return fmt.Errorf("-claims: %w", err)
			}
			for k, v := range extra {
				c[k] = v
			}
		}
		tok, err := idp.Mint(c)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*mintTo, []byte(tok), 0o600); err != nil {
			return fmt.Errorf("write token: %w", err)
		}
		fmt.Fprintf(stdout, "token: %s (kid %s)\n", *mintTo, idp.ActiveKID())
	}
	if err := idp.SetMode(m); err != nil {
		return err
	}
	if m != testidp.ModeNormal {
		fmt.Fprintln(stdout, "mode:", m)
	}
	fmt.Fprintln(stdout, "serving; stop with SIGINT or SIGTERM")

	if *serveFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *serveFor)
		defer cancel()
	}
	<-ctx.Done()
	return nil
}

// parseMode maps a -mode name to its Mode.
func parseMode(name string) (testidp.Mode, error) {
	for _, m := range modes() {
		if m.String() == name {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown -mode %q (want one of %s)", name, modeList())
}

// modeList names the modes -mode accepts.
func modeList() string {
	ms := modes()
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.String()
	}
	return strings.Join(names, ", ")
}
