package pgtest

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// finishingConn is the client side of a test connection. It behaves like
// libpq when the server refuses a bearer token: after the server's error
// challenge (AuthenticationSASLContinue carrying the JSON error) it sends the
// dummy response RFC 7628 section 3.2.3 asks for ("\x01") and reads the
// server's final error before closing. pgx skips that step and just hangs
// up. On PostgreSQL 18 that makes no difference to the log; PostgreSQL 19
// writes its "OAuth bearer authentication failed" entry (with the module's
// error_detail) only once the exchange is finished, and a client that hangs
// up early ends the backend silently. The tests mean to check what a DBA
// sees with the reference client, so they finish the exchange; the early
// hang-up has its own test (TestRefusalReasonWhenClientHangsUp).
type finishingConn struct {
	net.Conn

	mu        sync.Mutex
	hdr       []byte // header bytes of the current server message so far
	typ       byte
	remain    int    // body bytes of the current message still to come
	body      []byte // first bytes of an 'R' message's body
	continue_ bool   // the last complete message was AuthenticationSASLContinue
}

// DialFinishingSASL dials like pgx's default and wraps the connection.
func DialFinishingSASL(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &finishingConn{Conn: c}, nil
}

func (c *finishingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.track(p[:n])
	return n, err
}

// track follows the framing of the server's messages (type byte, int32
// length including itself, body).
func (c *finishingConn) track(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(b) > 0 {
		if c.remain == 0 && len(c.hdr) < 5 {
			k := min(5-len(c.hdr), len(b))
			c.hdr = append(c.hdr, b[:k]...)
			b = b[k:]
			if len(c.hdr) < 5 {
				return
			}
			c.typ = c.hdr[0]
			c.remain = int(binary.BigEndian.Uint32(c.hdr[1:5])) - 4
			c.body = c.body[:0]
			if c.remain <= 0 {
				c.done()
			}
			continue
		}
		k := min(c.remain, len(b))
		if c.typ == 'R' && len(c.body) < 4 {
			c.body = append(c.body, b[:min(k, 4-len(c.body))]...)
		}
		c.remain -= k
		b = b[k:]
		if c.remain == 0 {
			c.done()
		}
	}
}

func (c *finishingConn) done() {
	c.continue_ = c.typ == 'R' && len(c.body) == 4 && binary.BigEndian.Uint32(c.body) == 11
	c.hdr = c.hdr[:0]
	c.remain = 0
}

func (c *finishingConn) Close() error {
	c.mu.Lock()
	finish := c.continue_
	c.continue_ = false
	c.mu.Unlock()
	if finish {
		// SASLResponse ('p') with the single byte 0x01; then the server's
		// ErrorResponse and end of stream.
		_ = c.Conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Conn.Write([]byte{'p', 0, 0, 0, 5, 1}); err == nil {
			_, _ = io.Copy(io.Discard, c.Conn)
		}
	}
	return c.Conn.Close()
}

// RefusalLogged reports whether log (the server log since a mark) shows
// oauth_jwt's refusal with reason, logged once, where this major logs it:
//   - PostgreSQL 18: oauth_jwt's own "bearer token rejected" entry, whose
//     detail starts "Reason: <reason>.", beside the server's "OAuth bearer
//     authentication failed" entry;
//   - PostgreSQL 19: the server's own "OAuth bearer authentication failed"
//     entry with the detail "Reason: <reason>. ..." (the module's
//     error_detail), and no separate oauth_jwt entry repeating it.
func (e Env) RefusalLogged(log, reason string) bool {
	want := "DETAIL:  Reason: " + reason + "."
	if e.Major >= 19 {
		return strings.Contains(log, "OAuth bearer authentication failed for user") &&
			strings.Contains(log, want) && !strings.Contains(log, "oauth_jwt: bearer token rejected")
	}
	return strings.Contains(log, "oauth_jwt: bearer token rejected") && strings.Contains(log, want)
}

// RefusalEntry is the text of the log entry that carries a refusal's reason
// on this major (see RefusalLogged): count it to count refusals.
func (e Env) RefusalEntry() string {
	if e.Major >= 19 {
		return "OAuth bearer authentication failed for user"
	}
	return "oauth_jwt: bearer token rejected"
}
