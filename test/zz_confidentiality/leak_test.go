// Package confidentiality checks that no token, token fragment or client
// secret ever reaches the server log (issue 6). It runs last in
// `go test ./test/...` (hence the directory name) and re-runs a
// representative mix of the other suites' scenarios on one server that
// logs everything it can: log_min_messages = debug5, log_connections =
// all, log_disconnections, log_statement = all, verbose errors, and
// oauth_jwt.log_accepted = on. It keeps every token minted or seen (also
// the device-flow tokens psql receives, read from its PGOAUTHDEBUG
// traces), then greps the whole server log for each token, each of its
// segments of 8 characters or more, anything shaped like a JWT, the OAuth
// client secret and the SCRAM password.
//
//	OJW_PG_CONFIG=... OJW_BUILD_DIR=$PWD/build/<major> go test -count=1 -v ./test/zz_confidentiality/
package confidentiality

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/results"
	"github.com/oauth-jwt/oauth_jwt/test/testidp"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

const (
	introSecret   = "is-5e2a8c1d7f3b4a9e-very-secret"
	clientSecret  = "cs-9f1c2e7a4b8d4c6e-very-secret"
	scramPassword = "pw-3b7e1d9c5a2f4e8b-very-secret"
)

// jwtRE finds compact JWS strings (base64url of `{"` starts with "eyJ");
// looseRE anything that looks like the start of a base64url JSON segment.
var (
	jwtRE   = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*`)
	looseRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{16,}`)
)

// seen keeps every token of the run.
type seen struct {
	mu   sync.Mutex
	toks []string
}

func (s *seen) add(toks ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range toks {
		if t != "" {
			s.toks = append(s.toks, t)
		}
	}
}

func (s *seen) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.toks...)
}

func TestNothingSecretInTheServerLog(t *testing.T) {
	settings := []string{
		"log_min_messages = debug5",
		"log_connections = 'all'",
		"log_disconnections = on",
		"log_statement = 'all'",
		"log_error_verbosity = verbose",
		"log_min_error_statement = debug5",
		"log_hostname = off",
		"oauth_validator_libraries = 'oauth_jwt'",
		"password_encryption = 'scram-sha-256'",
	}
	c := pgtest.New(t, pgtest.Options{Conf: settings})
	idp := loadkit.StartIdP(t, testidp.Options{})
	var toks seen
	mint := func(sub string, over map[string]any, opts ...testidp.MintOption) string {
		tok := loadkit.Token(t, idp, sub, over, opts...)
		toks.add(tok)
		return tok
	}
	conf := loadkit.BaseConf(map[string]string{
		"oauth_jwt.log_accepted":         "on",
		"oauth_jwt.allowed_client_ids":   "'psql, pg-service'",
		"oauth_jwt.kid_refetch_interval": "1",
		"oauth_jwt.http_timeout":         "'1s'",
	})
	c.SetConf(conf)
	c.SetHBA(
		"host all scram_user 127.0.0.1/32 scram-sha-256",
		loadkit.HBA("all", idp.Issuer()),
	)
	c.Exec("create role alice login", "create role bob login", "create role carol login",
		fmt.Sprintf("create role scram_user login password '%s'", scramPassword))
	// The statement above is logged with the password (log_statement =
	// all): that is PostgreSQL's own behaviour for CREATE ROLE ... PASSWORD
	// by an administrator, not a login. Start the checked log after it.
	mark := c.LogMark()
	res := results.Leak{Logins: map[string]int{}, SettingsUsed: append(settings, "oauth_jwt.log_accepted = on")}
	ctx := loadkit.Ctx(t, 5*time.Minute)

	login := func(kind, role, tok string) bool {
		conn, err := c.ConnectOAuth(ctx, role, tok)
		if err != nil {
			res.Logins[kind+" refused"]++
			return false
		}
		defer conn.Close(ctx)
		var who string
		if err := conn.QueryRow(ctx, "select current_user").Scan(&who); err != nil {
			t.Errorf("query: %v", err)
		}
		res.Logins[kind+" accepted"]++
		return true
	}

	t.Run("accepted logins and a short storm", func(t *testing.T) {
		for _, r := range []string{"alice", "bob", "carol"} {
			if !login("oauth_jwt", r, mint(r, nil)) {
				t.Fatalf("%s refused\n%s", r, c.LogTail(20))
			}
		}
		var wg sync.WaitGroup
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := []string{"alice", "bob", "carol"}[i%3]
				tok := mint(r, nil)
				for j := 0; j < 5; j++ {
					conn, err := c.ConnectOAuth(ctx, r, tok)
					if err == nil {
						conn.Exec(ctx, "select 1")
						conn.Close(ctx)
					}
				}
			}()
		}
		wg.Wait()
		res.Logins["storm"] += 50
	})

	t.Run("every kind of refusal", func(t *testing.T) {
		base := loadkit.Claims("alice", nil)
		must := func(tok string, err error) string {
			if err != nil {
				t.Fatal(err)
			}
			toks.add(tok)
			return tok
		}
		foreign, err := testidp.NewKey(testidp.KeyTypeRSA)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		// A token whose claims repeat its own header segment: the module
		// must redact it.
		hdr := map[string]any{"alg": "RS256", "typ": "JWT", "kid": idp.ActiveKID()}
		hb, _ := json.Marshal(hdr)
		selfSeg := b64(hb)
		bad := []string{
			must(idp.MintNone(base)),
			must(idp.MintHS256WithPublicKey(base)),
			must(idp.MintWithForeignKey(base)),
			mint("alice", nil, testidp.WithKey(foreign)),
			mint("alice", nil, testidp.WithKID(idp.EncKID())),
			mint("alice", nil, testidp.WithAlg(jwa.PS256())),
			mint("alice", map[string]any{"exp": now.Add(-10 * time.Minute).Unix(), "iat": now.Add(-20 * time.Minute).Unix()}),
			mint("alice", map[string]any{"nbf": now.Add(10 * time.Minute).Unix()}),
			mint("alice", map[string]any{"iat": now.Add(10 * time.Minute).Unix()}),
			mint("alice", map[string]any{"exp": nil}),
			mint("alice", map[string]any{"iss": "https://evil.example/realms/test"}),
			mint("alice", map[string]any{"aud": "account"}),
			mint("alice", map[string]any{"azp": "other-app"}),
			mint("alice", map[string]any{"typ": "ID"}),
			mint("alice", nil, testidp.WithHeader("jku", "https://evil.example/jwks")),
			mint("alice", nil, testidp.WithHeader("crit", []string{"exp"})),
			mint("alice", map[string]any{"sub": nil}),
			mint("alice", map[string]any{"sub": selfSeg, "preferred_username": selfSeg, "azp": selfSeg}),
			mint("alice", map[string]any{"pad": strings.Repeat("P", 40000)}),
			"this-is-not-a-jwt-but-a-secret-looking-string",
		}
		toks.add(bad[len(bad)-1])
		for _, tok := range bad {
			if login("refusals", "alice", tok) {
				t.Errorf("a bad token was accepted")
			}
		}
		// The right token for another role.
		if login("refusals", "bob", mint("alice", nil)) {
			t.Errorf("alice's token logged in as bob")
		}
	})

	t.Run("malformed SASL carrying a real token", func(t *testing.T) {
		tok := mint("alice", nil)
		for _, data := range []string{
			"x,,\x01auth=Bearer " + tok + "\x01\x01",
			"n,a=" + tok + ",\x01auth=Bearer " + tok + "\x01\x01",
			"n,,\x01auth=Bearer " + tok + "\x01" + tok + "=x\x01\x01",
			"n,,\x01auth=Bearer " + tok + "$\x01\x01",
			"n,,\x01auth=Bearer " + tok + "\x01\x01" + tok,
		} {
			rawSASL(t, c, "alice", data)
		}
		res.Logins["malformed SASL"] += 5
	})

	t.Run("identity provider faults", func(t *testing.T) {
		c.SetConf(merge(conf, map[string]string{"oauth_jwt.cache_refresh_interval": "1", "oauth_jwt.cache_max_stale": "3"}))
		defer c.SetConf(conf)
		login("faults", "alice", mint("alice", nil))
		for _, m := range []testidp.Mode{testidp.ModeDown, testidp.ModeError500, testidp.ModeGarbage, testidp.ModeIssuerMismatch, testidp.ModeHang} {
			if err := idp.SetMode(m); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond)
			login("faults", "alice", mint("alice", nil))
			login("faults", "alice", mint("alice", nil, testidp.WithKID("no-such-kid")))
		}
		time.Sleep(2 * time.Second) // beyond cache_max_stale
		login("faults", "alice", mint("alice", nil))
		if err := idp.SetMode(testidp.ModeNormal); err != nil {
			t.Fatal(err)
		}
		// Rotation.
		if _, err := idp.Rotate(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(11 * time.Second) // past the retry interval of the failures above
		if !login("faults", "alice", mint("alice", nil)) {
			t.Errorf("no recovery after the faults\n%s", c.LogTail(20))
		}
		// An insecure cache directory.
		dir := loadkit.CacheDir(c)
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		login("faults", "alice", mint("alice", nil))
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	})

	var hashes []string // introspection cache keys: no prefix of one may be logged
	t.Run("introspection", func(t *testing.T) {
		idp.SetIntrospectionClient("pg-introspect", introSecret)
		secret := filepath.Join(c.Dir, "introspect.secret")
		if err := os.WriteFile(secret, []byte(introSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		chown(t, secret)
		introConf := func(mode string) map[string]string {
			return merge(conf, map[string]string{
				"oauth_jwt.introspection":             "'" + mode + "'",
				"oauth_jwt.introspection_client_id":   "'pg-introspect'",
				"oauth_jwt.introspection_secret_file": "'" + secret + "'",
			})
		}
		opaque := func(sub string) string {
			tok := idp.MintOpaque(map[string]any{"sub": sub, "aud": loadkit.Audience, "azp": "psql", "scope": "openid"})
			toks.add(tok)
			hashes = append(hashes, keycache.IntrospectionKey(idp.Issuer(), tok))
			return tok
		}
		c.SetConf(introConf("opaque"))
		defer c.SetConf(conf)
		tok := opaque("alice")
		for range 2 { // the second from the shared cache
			if !login("introspection", "alice", tok) {
				t.Errorf("opaque token refused\n%s", c.LogTail(10))
			}
		}
		revoked := opaque("alice")
		idp.Revoke(revoked)
		login("introspection", "alice", revoked)
		for _, m := range []testidp.IntroMode{testidp.IntroActiveString, testidp.IntroOversized, testidp.IntroGarbage, testidp.IntroError500} {
			idp.SetIntrospectionMode(m)
			login("introspection", "alice", opaque("alice"))
		}
		idp.SetIntrospectionMode(testidp.IntroNormal)
		idp.SetIntrospectionClient("pg-introspect", "another-secret")
		login("introspection", "alice", opaque("alice"))
		idp.SetIntrospectionClient("pg-introspect", introSecret)
		c.SetConf(introConf("always"))
		jwt := mint("alice", nil)
		hashes = append(hashes, keycache.IntrospectionKey(idp.Issuer(), jwt))
		login("introspection", "alice", jwt)
		idp.Revoke(jwt)
		c.SetConf(merge(introConf("always"), map[string]string{"oauth_jwt.introspection_cache_ttl": "0"}))
		login("introspection", "alice", jwt)
	})

	t.Run("psql device flow", func(t *testing.T) {
		for _, tc := range []struct {
			user   string
			claims map[string]any
			ok     bool
		}{
			{"alice", map[string]any{"sub": "alice", "aud": loadkit.Audience, "scope": "openid", "azp": "psql"}, true},
			{"bob", map[string]any{"sub": "bob", "aud": loadkit.Audience, "scope": "openid", "azp": "psql"}, true},
			{"carol", map[string]any{"sub": "carol", "aud": "account", "scope": "openid", "azp": "psql"}, false},
		} {
			idp.SetDeviceClaims(tc.claims)
			conninfo := "host=127.0.0.1 port=" + strconv.Itoa(c.Port) + " dbname=postgres user=" + tc.user +
				" oauth_issuer=" + idp.Issuer() + " oauth_client_id=psql oauth_client_secret=" + clientSecret
			out, stderr, err := c.Psql(ctx, []string{"PGOAUTHDEBUG=UNSAFE"}, "-X", "-A", "-t", "-w", "-d", conninfo,
				"-c", "select current_user")
			found := jwtRE.FindAllString(stderr, -1)
			toks.add(found...)
			res.DeviceTokens += len(found)
			if len(found) == 0 {
				t.Errorf("%s: no token seen in psql's debug traces; the check would miss device-flow tokens", tc.user)
			}
			if tc.ok != (err == nil && strings.TrimSpace(out) == tc.user) {
				t.Errorf("%s: psql login ok=%v (out %q, err %v), want %v", tc.user, err == nil, strings.TrimSpace(out), err, tc.ok)
			}
			if tc.ok {
				res.DeviceFlows++
			}
		}
		idp.SetDeviceClaims(nil)
	})

	t.Run("scram", func(t *testing.T) {
		cfg := loadkit.PasswordConfig(t, c, "scram_user", scramPassword)
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
		cfg.Password = scramPassword + "-wrong"
		if conn, err := pgx.ConnectConfig(ctx, cfg); err == nil {
			conn.Close(ctx)
			t.Errorf("a wrong password was accepted")
		}
	})

	// The whole server log, from after the role setup.
	time.Sleep(500 * time.Millisecond)
	log := c.LogSince(mark)
	res.LogBytes, res.LogLines = len(log), strings.Count(log, "\n")
	res.Reasons = loadkit.Reasons(log)
	res.DebugLines = strings.Count(log, "DEBUG:")
	res.Statements = strings.Count(log, "statement: ")
	all := toks.all()
	res.Tokens = len(all)
	found, nsegs := leaks(log, all)
	res.Segments, res.Leaks = nsegs, len(found)
	for i, f := range found {
		if i == 10 {
			break
		}
		t.Errorf("the server log contains %s", f)
	}
	for _, h := range hashes {
		if strings.Contains(log, h[:8]) {
			t.Errorf("the server log contains the prefix of an introspection cache key (a token hash)")
			break
		}
	}
	if strings.Contains(log, introSecret) {
		t.Errorf("the server log contains the introspection client secret")
	}
	// The detector itself finds what it looks for.
	for _, canary := range []string{all[0], strings.Split(all[1], ".")[1][:20], clientSecret, "x eyJhbGciOiJSUzI1NiJ9 x"} {
		if f, _ := leaks(log+"\n"+canary+"\n", all); len(f) == 0 {
			t.Errorf("the leak detector misses a planted %d-character string", len(canary))
		}
	}
	// The check is only worth something if the log holds what it should.
	for what, ok := range map[string]bool{
		"debug5 lines":               res.DebugLines > 1000,
		"logged statements":          res.Statements > 10,
		"accepted logins":            res.Reasons["ok"] >= 10,
		"refusals with reasons":      len(res.Reasons) >= 15,
		"stale-key warnings":         strings.Contains(log, "using stale signing keys"),
		"insecure cache":             strings.Contains(log, "insecure key cache"),
		"a redacted claim":           strings.Contains(log, "[redacted]"),
		"psql device-flow logins":    res.DeviceFlows == 2,
		"malformed SASL refusals":    strings.Contains(log, "malformed OAUTHBEARER message"),
		"connection and disconnects": strings.Contains(log, "disconnection:"),
		"introspection refusals":     res.Reasons["token_inactive"] > 0 && res.Reasons["introspection_failed"] > 0,
	} {
		if !ok {
			t.Errorf("the log lacks %s: the check would prove little", what)
		}
	}
	t.Logf("server log: %d bytes, %d lines (%d DEBUG, %d statements); %d tokens and %d distinct segments checked; reasons %s; leaks: %d",
		res.LogBytes, res.LogLines, res.DebugLines, res.Statements, res.Tokens, res.Segments, loadkit.ReasonsString(res.Reasons), res.Leaks)
	if path := os.Getenv("OJW_LEAK_OUT"); path != "" {
		if err := results.Write(path, res); err != nil {
			t.Error(err)
		}
	}
}

// leaks lists what of toks (whole, or a segment of 8 characters or
// more), JWT-shaped text and the secrets log contains; it also returns the
// number of distinct segments checked.
func leaks(log string, toks []string) ([]string, int) {
	var found []string
	segs := map[string]bool{}
	for _, tok := range toks {
		if strings.Contains(log, tok) {
			found = append(found, "a whole token")
		}
		for _, s := range strings.Split(tok, ".") {
			if len(s) >= 8 {
				segs[s] = true
			}
		}
	}
	for s := range segs {
		if strings.Contains(log, s) {
			found = append(found, fmt.Sprintf("a token segment of %d characters", len(s)))
		}
	}
	// Any substring of 8 or more characters of a segment: a truncated one.
	for s := range segs {
		for i := 0; i+16 <= len(s); i += 8 {
			if strings.Contains(log, s[i:i+16]) {
				found = append(found, "16 characters of a token segment")
				break
			}
		}
	}
	if m := looseRE.FindAllString(log, -1); len(m) > 0 {
		found = append(found, fmt.Sprintf("%d JWT-shaped strings (eyJ...)", len(m)))
	}
	for _, secret := range []string{clientSecret, scramPassword} {
		if strings.Contains(log, secret) {
			found = append(found, "a secret")
		}
	}
	return found, len(segs)
}

func merge(a, b map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

// rawSASL sends one SASLInitialResponse with data and reads until the
// server ends the exchange.
func rawSASL(t *testing.T, c *pgtest.Cluster, user, data string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	fe := pgproto3.NewFrontend(nc, nc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": user, "database": "postgres"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := fe.Receive(); err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "OAUTHBEARER", Data: []byte(data)})
	if err := fe.Flush(); err != nil {
		return
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.AuthenticationSASLContinue:
			fe.Send(&pgproto3.SASLResponse{Data: []byte{0x01}})
			_ = fe.Flush()
		case *pgproto3.ErrorResponse, *pgproto3.AuthenticationOk:
			return
		}
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// chown hands path to the server's OS user when the test runs as root.
func chown(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", pgtest.ServerUser+":", path).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
}
