// Command approve sits on psql's stderr during an OAuth device-flow login against the
// Keycloak of `make demo`:
//
//	psql "... oauth_issuer=... oauth_client_id=psql" 2>&1 1>&3 | approve [-auto] [-user alice]
//
// It passes on what a person should see (psql's messages and the prompt "Visit <uri> and
// enter the code: <code>") and drops libpq's PGOAUTHDEBUG traces, which hold the tokens
// and the device code (PGOAUTHDEBUG=UNSAFE is needed only because the demo's issuer is
// plain http on loopback).
//
// Without -auto it adds, under the prompt, which user to log in as in the browser. With
// -auto it approves the code itself, as that user, the way a person with a browser would
// (keycloak.ApproveDevice: login form, then consent). Everything goes to stderr. It exits
// 1 when the approval fails (psql then dies on its next write to the closed pipe).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
)

func main() {
	user := flag.String("user", "alice", "Keycloak user who approves the login")
	password := flag.String("password", "", "the user's password (default: the demo realm's password of -user)")
	auto := flag.Bool("auto", false, "approve the device code without a person")
	timeout := flag.Duration("timeout", 2*time.Minute, "time limit of the automatic approval")
	flag.Parse()
	if *password == "" {
		*password = keycloak.Passwords[*user]
	}
	out := os.Stderr
	r := bufio.NewReader(os.Stdin)
	prompted := false
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			text := strings.TrimRight(line, "\r\n")
			if uri, code, ok := keycloak.ParseDevicePrompt(text); ok && !prompted {
				prompted = true
				fmt.Fprintln(out, text)
				if *auto {
					ctx, cancel := context.WithTimeout(context.Background(), *timeout)
					aerr := keycloak.ApproveDevice(ctx, uri, code, *user, *password)
					cancel()
					if aerr != nil {
						fmt.Fprintf(out, "approve: approving the code as %s failed: %v\n", *user, aerr)
						os.Exit(1)
					}
					fmt.Fprintf(out, "approve: logged in to Keycloak as %s and granted access (what a person does in the browser)\n", *user)
				} else {
					fmt.Fprintf(out, "\n  Open %s in a browser on this machine\n", complete(uri, code))
					fmt.Fprintf(out, "  (or %s and type the code %s),\n", uri, code)
					fmt.Fprintf(out, "  log in as %s / %s and grant access. psql goes on by itself.\n\n", *user, *password)
				}
			} else if keycloak.SafeStderrLine(text) {
				fmt.Fprintln(out, text)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintln(out, "approve: reading psql's output:", err)
				os.Exit(1)
			}
			return
		}
	}
}

// complete is the verification URI with the code filled in (Keycloak's
// verification_uri_complete).
func complete(uri, code string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	q := u.Query()
	q.Set("user_code", code)
	u.RawQuery = q.Encode()
	return u.String()
}
