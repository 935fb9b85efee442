package keycache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// Two logins in a row: the first fetches the discovery document and the
// JWKS, the second (in a real server: another backend process) is served
// from the cache directory without any request.
func ExampleCache_Keys() {
	var issuer string
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": issuer, "jwks_uri": issuer + "/certs"})
		case "/certs":
			fmt.Fprint(w, `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer idp.Close()
	issuer = idp.URL

	tmp, err := os.MkdirTemp("", "keycache-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(tmp)
	client, err := keycache.NewHTTPClient(5*time.Second, "", "")
	if err != nil {
		panic(err)
	}
	cfg := keycache.Config{
		Dir:        filepath.Join(tmp, "oauth_jwt"),
		HTTPClient: client,
		// RequireHTTPS is false: http is allowed for this loopback server.
	}
	for login := 1; login <= 2; login++ {
		cache, err := keycache.New(cfg) // each backend builds its own
		if err != nil {
			panic(err)
		}
		keys, err := cache.Keys(context.Background(), keycache.Query{Issuer: issuer})
		if err != nil {
			panic(err)
		}
		fmt.Printf("login %d: %d key(s), fetched=%v\n", login, keys.Set.Len(), keys.Fetched)
	}
	// Output:
	// login 1: 1 key(s), fetched=true
	// login 2: 1 key(s), fetched=false
}
