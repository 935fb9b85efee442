package validator

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// Messages (errmsg) of the records a Validate call produces.
const (
	msgRejected   = "bearer token rejected"
	msgAccepted   = "bearer token accepted"
	msgStaleKeys  = "using stale signing keys"
	msgUnstored   = "key cache directory is not writable"
	msgFutureKeys = "cached signing keys are dated in the future"
	maxQuotedText = 128 // bytes of a claim value quoted in a log record
	maxAudListed  = 5   // aud values listed in a log record
	redacted      = "[redacted]"
	minScrubLen   = 8 // token segments at least this long are scrubbed from logs
)

// quote quotes a value taken from a token for a log record: at most
// maxQuotedText bytes, control characters escaped.
func quote(s string) string {
	if len(s) > maxQuotedText {
		cut := maxQuotedText
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// EscapeLogText makes a text that did not come from this package (an
// error, a fetch helper's output) safe for one log line, with the escapes
// quote uses: control characters (C0, DEL, C1) as \n, \t, \x1b, \u0085,
// the line separators U+2028 and U+2029 and the bidirectional controls
// (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069) as \uXXXX,
// and bytes that are not UTF-8 as \xNN. Everything else, backslashes
// included, is kept, so escaping twice changes nothing more.
func EscapeLogText(s string) string {
	clean := true
	for _, c := range s {
		if needsEscape(c) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case needsEscape(c):
			switch c {
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				if c < 0x80 {
					fmt.Fprintf(&b, `\x%02x`, c)
				} else {
					fmt.Fprintf(&b, `\u%04x`, c)
				}
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// needsEscape reports whether EscapeLogText escapes c (utf8.RuneError
// stands for an invalid byte; a real U+FFFD is escaped too, harmlessly).
func needsEscape(c rune) bool {
	switch {
	case c < 0x20, c == 0x7f, c >= 0x80 && c <= 0x9f:
		return true
	case c == 0x2028, c == 0x2029, c == 0x061c, c == 0x200e, c == 0x200f:
		return true
	case c >= 0x202a && c <= 0x202e, c >= 0x2066 && c <= 0x2069:
		return true
	}
	return c == utf8.RuneError
}

// quoteClaim renders a claim value of any JSON type for a log record.
func quoteClaim(r gjson.Result) string {
	switch r.Type {
	case gjson.String:
		return quote(r.Str)
	case gjson.JSON:
		if r.IsArray() {
			var b strings.Builder
			b.WriteByte('[')
			i := 0
			r.ForEach(func(_, v gjson.Result) bool {
				if i > 0 {
					b.WriteString(", ")
				}
				if i == maxAudListed {
					b.WriteString("...")
					return false
				}
				b.WriteString(quoteClaim(v))
				i++
				return true
			})
			b.WriteByte(']')
			return b.String()
		}
		return "(an object)"
	default:
		if len(r.Raw) > 32 {
			return r.Raw[:32] + "..."
		}
		return r.Raw
	}
}

// formatDate renders a NumericDate for a log record.
func formatDate(sec float64) string {
	if sec >= 0 && sec < 253402300800 { // before year 10000
		whole, frac := math.Modf(sec)
		return time.Unix(int64(whole), int64(frac*1e9)).UTC().Format(time.RFC3339)
	}
	return strconv.FormatFloat(sec, 'g', -1, 64)
}

// seconds renders a duration in whole seconds ("312 s").
func seconds(d float64) string {
	return strconv.FormatInt(int64(math.Round(d)), 10) + " s"
}

// claimSummary lists the claims that explain a verdict: iss, sub, azp (or
// client_id), aud, exp. verified says whether the signature was checked.
func claimSummary(c *claims, verified bool) string {
	var parts []string
	add := func(name string, r gjson.Result) {
		if r.Exists() {
			parts = append(parts, name+" "+quoteClaim(r))
		}
	}
	add("iss", c.iss)
	add("sub", c.sub)
	switch {
	case c.azp.Exists():
		add("azp", c.azp)
	case c.clientID.Exists():
		add("client_id", c.clientID)
	case c.appID.Exists():
		add("appid", c.appID)
	default:
		add("cid", c.cid)
	}
	add("aud", c.aud)
	if exp, ok := numericDate(c.exp); ok {
		parts = append(parts, "exp "+formatDate(exp))
	}
	if len(parts) == 0 {
		return "The token has none of the claims iss, sub, azp, aud, exp."
	}
	s := "Token claims: "
	if !verified {
		s = "Token claims (signature not verified): "
	}
	return s + strings.Join(parts, ", ") + "."
}

// tokenSegments returns the parts of tok that must never be logged.
func tokenSegments(tok string) []string {
	segs := []string{tok}
	for _, s := range strings.Split(tok, ".") {
		if len(s) >= minScrubLen {
			segs = append(segs, s)
		}
	}
	return segs
}

// scrub removes the token and its segments from every log record. The
// records are built from decoded claims and never from the token text, so
// this only matters for claims crafted to repeat a segment of the token.
func scrub(logs []LogRecord, tok string) []LogRecord {
	if len(tok) < minScrubLen {
		return logs
	}
	segs := tokenSegments(tok)
	for i := range logs {
		for _, s := range segs {
			if strings.Contains(logs[i].Message, s) {
				logs[i].Message = strings.ReplaceAll(logs[i].Message, s, redacted)
			}
			if strings.Contains(logs[i].Detail, s) {
				logs[i].Detail = strings.ReplaceAll(logs[i].Detail, s, redacted)
			}
		}
	}
	return logs
}

// containsTokenText reports whether s contains tok or one of the segments
// that scrub would redact.
func containsTokenText(s, tok string) bool {
	if len(tok) < minScrubLen {
		return false
	}
	for _, seg := range tokenSegments(tok) {
		if strings.Contains(s, seg) {
			return true
		}
	}
	return false
}
