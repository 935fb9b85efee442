// Package hostile sends hostile input to oauth_jwt through real
// connections to a real PostgreSQL 18 server (issue 6): the validator's
// bad-token corpus rebuilt against an identity provider that publishes the
// corpus's key set (TestCorpusThroughServer), a bounded fuzz loop of
// mutated tokens (TestFuzzThroughServer, OJW_FUZZ_DURATION, default 20s),
// and raw SASL OAUTHBEARER messages that PostgreSQL itself must refuse
// before the validator is ever called (TestMalformedSASL).
//
// With OJW_HOSTILE_OUT set, the figures are written there as JSON
// (scripts/report.sh).
//
//	OJW_PG_CONFIG=... OJW_BUILD_DIR=$PWD/build/<major> go test -count=1 -v ./test/hostile/
package hostile

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/results"
)

// figures are the figures of the package (OJW_HOSTILE_OUT), written by
// the tests under figuresMu.
var (
	figuresMu sync.Mutex
	figures   results.Hostile
)

func TestMain(m *testing.M) {
	code := m.Run()
	if path := os.Getenv("OJW_HOSTILE_OUT"); path != "" {
		figuresMu.Lock()
		err := results.Write(path, &figures)
		figuresMu.Unlock()
		if err != nil {
			os.Stderr.WriteString("OJW_HOSTILE_OUT: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

var reasonRE = regexp.MustCompile(`Reason: ([a-z_]+)\.`)

// waitVerdict waits until the log after mark holds the end of a login
// attempt as role: oauth_jwt's acceptance, PostgreSQL's refusal, or a
// FATAL, then returns that log.
func waitVerdict(t testing.TB, c *pgtest.Cluster, mark int64, role string) string {
	t.Helper()
	ends := []string{"oauth_jwt: bearer token accepted", `authentication failed for user "` + role + `"`,
		"internal error in OAuth validator module", "FATAL:", "malformed OAuth bearer token", "malformed OAUTHBEARER message"}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := c.LogSince(mark)
		for _, e := range ends {
			if strings.Contains(s, e) {
				time.Sleep(30 * time.Millisecond) // the rest of the backend's lines
				return c.LogSince(mark)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no verdict in the server log after 20 s; log since mark:\n%s", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertNoToken fails when tok or a segment of at least 8 characters of
// it is in log.
func assertNoToken(t testing.TB, log, tok string) {
	t.Helper()
	if len(tok) >= 8 && strings.Contains(log, tok) {
		t.Errorf("the token reached the server log")
		return
	}
	for _, seg := range strings.Split(tok, ".") {
		if len(seg) >= 8 && strings.Contains(log, seg) {
			t.Errorf("a token segment (%d characters) reached the server log", len(seg))
			return
		}
	}
}

func pemPublic(k *rsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
