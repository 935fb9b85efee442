package hostile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/oauth-jwt/oauth_jwt/test/loadkit"
	"github.com/oauth-jwt/oauth_jwt/test/pgtest"
	"github.com/oauth-jwt/oauth_jwt/test/results"
)

// saslExchange is the client side of one OAUTHBEARER attempt made by hand.
type saslExchange struct {
	final   pgproto3.BackendMessage // ErrorResponse, AuthenticationOk, ... nil on EOF
	cont    []byte                  // data of an AuthenticationSASLContinue, if any
	readErr error
}

// describe says what the client got.
func (x saslExchange) describe() string {
	var s []string
	if x.cont != nil {
		s = append(s, "SASL continue "+string(x.cont))
	}
	switch m := x.final.(type) {
	case *pgproto3.ErrorResponse:
		s = append(s, m.Severity+" "+m.Code+" "+m.Message)
	case *pgproto3.AuthenticationOk:
		s = append(s, "AuthenticationOk")
	case nil:
		s = append(s, "connection closed")
	default:
		s = append(s, fmt.Sprintf("%T", m))
	}
	return strings.Join(s, "; ")
}

// rawSASL logs in as user with a hand-made SASLInitialResponse: mechanism
// and data as given, or frame (the whole message, type byte included)
// when not nil.
func rawSASL(t *testing.T, c *pgtest.Cluster, user, mech string, data, frame []byte) saslExchange {
	t.Helper()
	nc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	fe := pgproto3.NewFrontend(nc, nc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": user, "database": "postgres"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := fe.Receive()
	if err != nil {
		t.Fatalf("startup: %v", err)
	}
	sasl, ok := msg.(*pgproto3.AuthenticationSASL)
	if !ok || len(sasl.AuthMechanisms) != 1 || sasl.AuthMechanisms[0] != "OAUTHBEARER" {
		t.Fatalf("server asked for %#v, want SASL OAUTHBEARER", msg)
	}
	if frame != nil {
		if _, err := nc.Write(frame); err != nil {
			return saslExchange{readErr: err}
		}
	} else {
		fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: mech, Data: data})
		if err := fe.Flush(); err != nil {
			return saslExchange{readErr: err}
		}
	}
	var x saslExchange
	for {
		msg, err := fe.Receive()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") {
				x.readErr = err
			}
			return x
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationSASLContinue:
			// An error status (RFC 7628 §3.2.2): answer with the dummy
			// response, as libpq does, to get the server's verdict.
			x.cont = append([]byte(nil), m.Data...)
			fe.Send(&pgproto3.SASLResponse{Data: []byte{0x01}})
			if err := fe.Flush(); err != nil {
				return x
			}
		case *pgproto3.ErrorResponse, *pgproto3.AuthenticationOk:
			x.final = m
			return x
		}
	}
}

// Malformed and oversized SASL OAUTHBEARER messages are refused by
// PostgreSQL itself (src/backend/libpq/auth-oauth.c parses the GS2 header,
// the key/value pairs and the bearer token's characters, and the message
// length is bounded) before the validator is called: the client is
// refused, the log has PostgreSQL's reason, and no oauth_jwt line.
func TestMalformedSASL(t *testing.T) {
	ci := startCorpusIssuer(t)
	c := corpusCluster(t, ci)
	kv := corpusBase()
	kv["oauth_jwt.log_accepted"] = "on" // any validator call leaves a line
	c.SetConf(kv)
	watch := loadkit.WatchCrashes(t, c)
	valid := std(ci).build(t)
	const user = "corpus_ident"
	msg := func(s string) []byte { return []byte(s) }
	bearer := func(tok string) []byte { return msg("n,,\x01auth=Bearer " + tok + "\x01\x01") }

	// Control: the hand-made exchange works with a valid token, and the
	// validator is called.
	mark := c.LogMark()
	x := rawSASL(t, c, user, "OAUTHBEARER", bearer(valid), nil)
	if _, ok := x.final.(*pgproto3.AuthenticationOk); !ok {
		t.Fatalf("control login with a valid token: %s\n%s", x.describe(), c.LogSince(mark))
	}
	if !strings.Contains(waitVerdict(t, c, mark, user), "oauth_jwt: bearer token accepted") {
		t.Fatalf("control login: the validator was not called")
	}
	// GS2 flag "y" (the client could bind but believes the server cannot)
	// is legitimate without channel binding: the token reaches the
	// validator like any other.
	mark = c.LogMark()
	x = rawSASL(t, c, user, "OAUTHBEARER", msg("y,,\x01auth=Bearer "+valid+"\x01\x01"), nil)
	if _, ok := x.final.(*pgproto3.AuthenticationOk); !ok {
		t.Fatalf("GS2 flag y with a valid token: %s\n%s", x.describe(), c.LogSince(mark))
	}

	// A frame whose SASL data length field lies.
	lying := func(declared int32, data string) []byte {
		body := append([]byte("OAUTHBEARER\x00"), 0, 0, 0, 0)
		binary.BigEndian.PutUint32(body[len(body)-4:], uint32(declared))
		body = append(body, data...)
		f := []byte{'p', 0, 0, 0, 0}
		binary.BigEndian.PutUint32(f[1:], uint32(len(body)+4))
		return append(f, body...)
	}
	huge := strings.Repeat("A", 1<<20)
	cases := []struct {
		name  string
		mech  string
		data  []byte
		frame []byte
		want  string // PostgreSQL's log text
	}{
		{"GS2 header: unknown channel-binding flag", "OAUTHBEARER", msg("x,,\x01auth=Bearer " + valid + "\x01\x01"), nil, "malformed OAUTHBEARER message"},
		{"GS2 header: channel binding requested", "OAUTHBEARER", msg("p=tls-server-end-point,,\x01auth=Bearer " + valid + "\x01\x01"), nil, "channel binding"},
		{"GS2 header: authorization identity", "OAUTHBEARER", msg("n,a=postgres,\x01auth=Bearer " + valid + "\x01\x01"), nil, "authorization identity"},
		{"GS2 header missing", "OAUTHBEARER", msg("\x01auth=Bearer " + valid + "\x01\x01"), nil, "malformed OAUTHBEARER message"},
		{"no auth key", "OAUTHBEARER", msg("n,,\x01\x01"), nil, "malformed OAUTHBEARER message"},
		{"no auth key, another key", "OAUTHBEARER", msg("n,,\x01host=example.com\x01\x01"), nil, "malformed OAUTHBEARER message"},
		{"auth key twice", "OAUTHBEARER", msg("n,,\x01auth=Bearer " + valid + "\x01auth=Bearer " + valid + "\x01\x01"), nil, "malformed OAUTHBEARER message"},
		{"key in upper case", "OAUTHBEARER", msg("n,,\x01AUTH=Bearer " + valid + "\x01\x01"), nil, "malformed OAUTHBEARER message"},
		{"key with invalid characters", "OAUTHBEARER", msg("n,,\x01au th=x\x01auth=Bearer " + valid + "\x01\x01"), nil, "malformed OAUTHBEARER message"},
		{"value with a control character", "OAUTHBEARER", msg("n,,\x01auth=Bearer " + valid + "\x01x=\x02\x01\x01"), nil, "malformed OAUTHBEARER message"},
		{"missing final separator", "OAUTHBEARER", msg("n,,\x01auth=Bearer " + valid + "\x01"), nil, "malformed OAUTHBEARER message"},
		{"data after the final separator", "OAUTHBEARER", msg("n,,\x01auth=Bearer " + valid + "\x01\x01trailing"), nil, "malformed OAUTHBEARER message"},
		{"NUL inside the message", "OAUTHBEARER", msg("n,,\x01auth=Bearer " + valid[:30] + "\x00" + valid[30:] + "\x01\x01"), nil, "malformed OAUTHBEARER message"},
		{"scheme Basic", "OAUTHBEARER", msg("n,,\x01auth=Basic dXNlcjpwYXNzd29yZA==\x01\x01"), nil, "malformed OAuth bearer token"},
		{"scheme without token", "OAUTHBEARER", msg("n,,\x01auth=Bearer\x01\x01"), nil, "malformed OAuth bearer token"},
		{"empty bearer token", "OAUTHBEARER", msg("n,,\x01auth=Bearer \x01\x01"), nil, "malformed OAuth bearer token"},
		{"token with illegal characters", "OAUTHBEARER", bearer(valid[:40] + "$%^&*()" + valid[40:]), nil, "malformed OAuth bearer token"},
		{"token with non-ASCII bytes", "OAUTHBEARER", bearer(valid[:40] + "\xc3\xa9\xff" + valid[40:]), nil, "malformed"},
		{"token with a quote and a backslash", "OAUTHBEARER", bearer(`abc"def\ghi`), nil, "malformed OAuth bearer token"},
		{"token of 1 MiB", "OAUTHBEARER", bearer(huge), nil, "invalid message length"},
		{"SASL data length field says more than sent", "", nil, lying(1<<20, "n,,\x01auth=Bearer abc\x01\x01"), "insufficient data left in message"},
		{"SASL data length field says less than sent", "", nil, lying(5, "n,,\x01auth=Bearer abc\x01\x01"), "invalid message format"},
		{"SASL data length field negative", "", nil, lying(-2, "n,,\x01auth=Bearer abc\x01\x01"), "insufficient data left in message"},
		{"another mechanism", "SCRAM-SHA-256", msg("n,,n=,r=abcdef"), nil, "invalid SASL authentication mechanism"},
		{"the discovery request (empty auth)", "OAUTHBEARER", msg("n,,\x01auth=\x01\x01"), nil, "OAuth"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mark := c.LogMark()
			x := rawSASL(t, c, user, tc.mech, tc.data, tc.frame)
			if x.readErr != nil {
				t.Fatalf("reading the answer: %v", x.readErr)
			}
			if _, ok := x.final.(*pgproto3.AuthenticationOk); ok {
				t.Fatalf("ACCEPTED")
			}
			time.Sleep(150 * time.Millisecond)
			log := c.LogSince(mark)
			n := len(tc.data)
			if tc.frame != nil {
				n = len(tc.frame)
			}
			r := results.SASL{Name: tc.name, Bytes: n, Client: x.describe(), ValidatorCalled: strings.Contains(log, "oauth_jwt")}
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(line, tc.want) {
					r.Server = pgMessage(line)
					break
				}
			}
			figuresMu.Lock()
			figures.SASL = append(figures.SASL, r)
			figuresMu.Unlock()
			t.Logf("client: %s; server: %s", r.Client, r.Server)
			if r.ValidatorCalled {
				t.Errorf("the validator was called:\n%s", log)
			}
			switch {
			case tc.name == "the discovery request (empty auth)" && c.Major >= 19:
				// PostgreSQL 19 no longer logs the discovery round trip (the
				// first connection of every libpq device-flow login) as a
				// failed authentication; 18 does.
				if strings.Contains(log, "authentication failed") {
					t.Errorf("PostgreSQL %d logged the discovery request as a failed login:\n%s", c.Major, log)
				}
			case r.Server == "":
				t.Errorf("the server log lacks %q:\n%s", tc.want, log)
			}
			if strings.Contains(log, valid[:40]) {
				t.Errorf("token text reached the server log:\n%s", log)
			}
		})
	}
	watch.Check(t)
}

// pgMessage is a log line without its prefix.
func pgMessage(line string) string {
	if i := strings.Index(line, "postgres "); i >= 0 {
		line = line[i+len("postgres "):]
	}
	return strings.TrimSpace(line)
}
