package testidp_test

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/oauth-jwt/oauth_jwt/test/testidp"
)

// Mint a token, verify it against the published keys, then take the
// identity provider down and bring it back.
func Example() {
	idp, err := testidp.Start(testidp.Options{Realm: "/realms/test"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer idp.Close()

	tok, err := idp.Mint(map[string]any{"sub": "alice", "aud": "pg"})
	if err != nil {
		fmt.Println(err)
		return
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(idp.JWKSURI())
	if err != nil {
		fmt.Println(err)
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		fmt.Println(err)
		return
	}
	set, err := jwk.Parse(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	t, err := jwt.ParseString(tok, jwt.WithKeySet(set), jwt.WithIssuer(idp.Issuer()), jwt.WithAudience("pg"))
	if err != nil {
		fmt.Println(err)
		return
	}
	sub, _ := t.Subject()
	fmt.Println("verified token for", sub)

	_ = idp.SetMode(testidp.ModeDown)
	_, err = client.Get(idp.DiscoveryURL())
	fmt.Println("down:", err != nil)
	_ = idp.SetMode(testidp.ModeNormal)
	resp, err = client.Get(idp.DiscoveryURL())
	if err == nil {
		resp.Body.Close()
		fmt.Println("back:", resp.Status)
	}
	fmt.Println("discovery requests:", idp.Requests(testidp.PathDiscovery))
	// Output:
	// verified token for alice
	// down: true
	// back: 200 OK
	// discovery requests: 1
}
