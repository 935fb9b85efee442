package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ANSI colours, used only on a terminal.
const (
	cReset  = "\x1b[0m"
	cBold   = "\x1b[1m"
	cDim    = "\x1b[2m"
	cRed    = "\x1b[31m"
	cGreen  = "\x1b[32m"
	cYellow = "\x1b[33m"
)

// lineWidth is where long texts wrap. It is fixed (not the terminal's
// width) so that the output is the same everywhere.
const lineWidth = 100

// printer writes the human report.
type printer struct {
	w      io.Writer
	colour bool
}

func (p *printer) paint(code, s string) string {
	if !p.colour || s == "" {
		return s
	}
	return code + s + cReset
}

func (p *printer) printf(format string, args ...any) { fmt.Fprintf(p.w, format, args...) }

// section starts a titled block.
func (p *printer) section(title string) { p.printf("\n%s\n", p.paint(cBold, title)) }

// row is one label and value of an aligned block.
type row struct{ label, value string }

// rows prints label/value pairs with the values aligned and wrapped.
func (p *printer) rows(rs []row) {
	width := 0
	for _, r := range rs {
		width = max(width, utf8.RuneCountInString(r.label))
	}
	for _, r := range rs {
		p.field("  ", r.label, width, r.value)
	}
}

// field prints "indent label value", wrapping value under itself.
func (p *printer) field(indent, label string, width int, value string) {
	pad := strings.Repeat(" ", width-utf8.RuneCountInString(label))
	hang := indent + strings.Repeat(" ", width+2)
	lines := wrap(value, lineWidth-len(hang))
	if len(lines) == 0 {
		lines = []string{""}
	}
	p.printf("%s%s%s  %s\n", indent, p.paint(cDim, label), pad, lines[0])
	for _, l := range lines[1:] {
		p.printf("%s%s\n", hang, l)
	}
}

// status renders a check status as a fixed-width word.
func (p *printer) status(s string) string {
	switch s {
	case "pass":
		return p.paint(cGreen, "PASS")
	case "fail":
		return p.paint(cRed+cBold, "FAIL")
	case "warn":
		return p.paint(cYellow, "WARN")
	}
	return p.paint(cDim, "skip")
}

// checkOut is one check, for both outputs.
type checkOut struct {
	Name   string `json:"name"`
	Status string `json:"status"` // pass, fail, skip (issuer: also warn)
	Got    string `json:"got"`
	Want   string `json:"want"`
	Reason string `json:"reason"`
	Detail string `json:"detail"`
	Hint   string `json:"hint"`
}

// checks prints a list of checks: status, name and what was found, then
// what was wanted, the reason, the detail and the hint under it.
func (p *printer) checks(cs []checkOut) {
	width := 0
	for _, c := range cs {
		width = max(width, len(c.Name))
	}
	indent := "  " + "    " + "  " + strings.Repeat(" ", width) + "  "
	for _, c := range cs {
		first, rest := c.Got, []row{}
		if c.Status == "skip" || first == "" {
			first = c.Detail
		} else if c.Detail != "" {
			label := "note"
			if c.Status == "fail" {
				label = "detail"
			}
			rest = append(rest, row{label, c.Detail})
		}
		if c.Reason != "" {
			rest = append([]row{{"reason", c.Reason}}, rest...)
		}
		if c.Want != "" && c.Status != "skip" {
			rest = append([]row{{"want", c.Want}}, rest...)
		}
		if c.Hint != "" {
			rest = append(rest, row{"hint", c.Hint})
		}
		name := c.Name + strings.Repeat(" ", width-len(c.Name))
		lines := wrap(first, lineWidth-len(indent))
		if len(lines) == 0 {
			lines = []string{""}
		}
		p.printf("  %s  %s  %s\n", p.status(c.Status), name, lines[0])
		for _, l := range lines[1:] {
			p.printf("%s%s\n", indent, l)
		}
		for _, r := range rest {
			p.field(indent, r.label, 6, r.value)
		}
	}
}

// wrap breaks s into lines of at most width runes at spaces; words longer
// than width stay whole.
func wrap(s string, width int) []string {
	if width < 20 {
		width = 20
	}
	var out []string
	for _, para := range strings.Split(s, "\n") {
		words := strings.Fields(para)
		line := ""
		for _, w := range words {
			switch {
			case line == "":
				line = w
			case utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) <= width:
				line += " " + w
			default:
				out = append(out, line)
				line = w
			}
		}
		if line != "" || len(words) == 0 {
			out = append(out, line)
		}
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// indentJSON pretty-prints a JSON document for the human output.
func indentJSON(raw json.RawMessage, prefix string) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, prefix, "  "); err != nil {
		return prefix + string(raw)
	}
	return prefix + b.String()
}

// writeJSON writes v as indented JSON, without HTML escaping.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// logOut is a record the server writes, as its log shows it.
type logOut struct {
	Level   string `json:"level"` // DEBUG1, LOG, WARNING
	Message string `json:"message"`
	Detail  string `json:"detail"`
}

// keyOut describes a key of the issuer's key set.
type keyOut struct {
	KID      string   `json:"kid"`
	Type     string   `json:"kty"`
	Alg      string   `json:"alg"`
	Use      string   `json:"use"`
	Bits     int      `json:"bits"`
	Verifies []string `json:"verifies"`
	Problem  string   `json:"problem"`
}

// keys prints the key table.
func (p *printer) keys(ks []keyOut) {
	var rs []row
	for _, k := range ks {
		desc := k.Type
		if k.Bits > 0 {
			desc += fmt.Sprintf(" %d", k.Bits)
		}
		if k.Alg != "" {
			desc += ", alg " + k.Alg
		}
		if k.Use != "" {
			desc += ", use " + k.Use
		}
		if len(k.Verifies) > 0 {
			desc += ": verifies " + strings.Join(k.Verifies, ", ")
		} else {
			desc += ": verifies nothing. " + k.Problem
		}
		rs = append(rs, row{fmt.Sprintf("kid %q", k.KID), desc})
	}
	p.rows(rs)
}

// serverLog prints records as the server log shows them.
func (p *printer) serverLog(ls []logOut) {
	for _, l := range ls {
		lvl := l.Level
		if lvl == "DEBUG1" {
			lvl = "DEBUG"
		}
		p.field("  ", lvl+":", 8, "oauth_jwt: "+l.Message)
		if l.Detail != "" {
			p.field("  ", "DETAIL:", 8, l.Detail)
		}
	}
}

// termSafe escapes what a terminal could take for a control sequence:
// non-printable runes (C0 and C1 controls, bidirectional overrides...) and
// invalid UTF-8. Tokens and discovery documents come from outside; the text
// report must not let them move the cursor or recolour the screen.
func termSafe(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || r != '\n' && !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\n' || unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		case r <= 0xffff:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			fmt.Fprintf(&b, "\\U%08x", r)
		}
		i += size
	}
	return b.String()
}

var rawMessageType = reflect.TypeOf(json.RawMessage(nil))

// sanitize applies termSafe, in place, to every string reachable from the
// pointer v (structs, slices, json.RawMessage), before the text report is
// written.
func sanitize(v any) { sanitizeValue(reflect.ValueOf(v)) }

func sanitizeValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			sanitizeValue(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				sanitizeValue(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Type() == rawMessageType {
			if !v.IsNil() {
				v.SetBytes([]byte(termSafe(string(v.Bytes()))))
			}
			return
		}
		for i := 0; i < v.Len(); i++ {
			sanitizeValue(v.Index(i))
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString(termSafe(v.String()))
		}
	}
}
