package keycloak

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/html"
)

var promptRE = regexp.MustCompile(`Visit (\S+) and enter the code: (\S+)`)

// SafeStderrLine says whether a line of psql's standard error may be shown
// or logged: psql's own messages, never the traces PGOAUTHDEBUG=UNSAFE
// prints ("[libcurl] ...", "[libpq] ...", which carry tokens and secrets)
// nor any line naming a secret.
func SafeStderrLine(line string) bool {
	if strings.HasPrefix(line, "[") {
		return false
	}
	for _, secret := range []string{"access_token", "refresh_token", "id_token", "device_code", "client_secret", "Bearer", "eyJ"} {
		if strings.Contains(line, secret) {
			return false
		}
	}
	return true
}

// ParseDevicePrompt recognises libpq's device-flow prompt on stderr,
// "Visit <verification_uri> and enter the code: <user_code>" (oauth-curl.c prompt_user),
// and returns the URI and the code.
func ParseDevicePrompt(stderrLine string) (uri, code string, ok bool) {
	m := promptRE.FindStringSubmatch(strings.TrimRight(stderrLine, "\r\n"))
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// ApproveDevice approves a pending device authorization as a user, the way a person with a
// browser would: GET verificationURI?user_code=userCode (or verificationURI as given when
// userCode is "": a verification_uri_complete), then repeatedly take the first form of the
// page, copy its hidden inputs, fill username/password (login), device_user_code (code
// entry), press "accept" (consent), and submit it, until Keycloak says the device login
// succeeded. A cookie jar carries the login session. It fails, naming the page, on a
// rejected login, an error page, or a form it does not know (for instance a profile update
// or another required action).
func ApproveDevice(ctx context.Context, verificationURI, userCode, username, password string) error {
	start := verificationURI
	if userCode != "" {
		u, err := url.Parse(verificationURI)
		if err != nil {
			return fmt.Errorf("approve device: %w", err)
		}
		q := u.Query()
		q.Set("user_code", userCode)
		u.RawQuery = q.Encode()
		start = u.String()
	}
	_, err := approve(ctx, start, userCode, username, password)
	return err
}

// page is what the approver knows of an HTML page.
type page struct {
	url     *url.URL
	status  int
	title   string
	heading string   // h1#kc-page-title
	alerts  []string // error / info texts
	text    string   // all visible text (squeezed)
	form    *form    // the first form, if any
}

type form struct {
	id, action, method string
	fields             []field
}

type field struct {
	tag, typ, name, value string
	checked               bool
}

func (p *page) String() string {
	s := fmt.Sprintf("%q (HTTP %d, %s", p.title, p.status, p.url)
	if p.heading != "" {
		s += fmt.Sprintf(", heading %q", p.heading)
	}
	if len(p.alerts) > 0 {
		s += fmt.Sprintf(", messages %q", p.alerts)
	}
	return s + ")"
}

func (p *page) succeeded() bool {
	return strings.Contains(p.heading, "Successful") ||
		strings.Contains(p.text, "Device Login Successful") ||
		strings.Contains(p.text, "You may close this browser window and go back to your device")
}

// approve runs the approval from startURL; it returns the pages it went through, as
// "title | heading | form id" strings (for tests).
func approve(ctx context.Context, startURL, userCode, username, password string) ([]string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, startURL, nil)
	if err != nil {
		return nil, err
	}
	p, err := fetchPage(client, req)
	if err != nil {
		return nil, err
	}
	var trace []string
	loggedIn, codeSent := false, false
	for step := 0; step < 12; step++ {
		desc := p.title + " | " + p.heading
		if p.form != nil {
			desc += " | form " + p.form.id
		}
		trace = append(trace, desc)
		if p.succeeded() {
			return trace, nil
		}
		if p.form == nil {
			return trace, fmt.Errorf("approve device: page %s has no form and does not report success", p)
		}
		vals := url.Values{}
		var submit *field
		hasPassword, hasCode := false, false
		for i := range p.form.fields {
			f := &p.form.fields[i]
			switch {
			case f.tag == "button" || f.typ == "submit" || f.typ == "image":
				if f.name == "accept" || (submit == nil && f.name != "cancel") {
					submit = f
				}
			case f.typ == "button" || f.typ == "reset" || f.name == "":
			case f.typ == "hidden":
				vals.Add(f.name, f.value)
			case f.typ == "checkbox" || f.typ == "radio":
				if f.checked {
					vals.Add(f.name, f.value)
				}
			case f.name == "username":
				vals.Set("username", username)
			case f.name == "password":
				vals.Set("password", password)
				hasPassword = true
			case f.name == "device_user_code" || f.name == "user_code":
				if userCode == "" {
					return trace, fmt.Errorf("approve device: page %s asks for the user code, which was not given", p)
				}
				vals.Set(f.name, userCode)
				hasCode = true
			default:
				return trace, fmt.Errorf("approve device: unknown form %q on page %s: field %q (type %q); fields %s",
					p.form.id, p, f.name, f.typ, p.form.names())
			}
		}
		if hasPassword {
			if loggedIn {
				return trace, fmt.Errorf("approve device: login as %q rejected: page %s", username, p)
			}
			loggedIn = true
		}
		if hasCode {
			if codeSent {
				return trace, fmt.Errorf("approve device: user code %q rejected: page %s", userCode, p)
			}
			codeSent = true
		}
		if submit != nil && submit.name != "" {
			vals.Set(submit.name, submit.value) // as a browser does for the clicked button
		}
		action, err := p.url.Parse(p.form.action) // the parser has unescaped &amp;
		if err != nil {
			return trace, fmt.Errorf("approve device: form action %q on page %s: %w", p.form.action, p, err)
		}
		if strings.EqualFold(p.form.method, "get") {
			action.RawQuery = vals.Encode()
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, action.String(), nil)
		} else {
			req, err = http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(vals.Encode()))
			if err == nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
		}
		if err != nil {
			return trace, err
		}
		if p, err = fetchPage(client, req); err != nil {
			return trace, err
		}
	}
	return trace, fmt.Errorf("approve device: no success after 12 pages; last page %s", p)
}

func (f *form) names() string {
	var n []string
	for _, x := range f.fields {
		if x.name != "" {
			n = append(n, x.name+"("+x.typ+")")
		}
	}
	return strings.Join(n, " ")
}

func fetchPage(client *http.Client, req *http.Request) (*page, error) {
	req.Header.Set("Accept", "text/html")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("approve device: %s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("approve device: %s %s: %w", req.Method, req.URL, err)
	}
	doc, err := html.Parse(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("approve device: %s %s: HTML: %w", req.Method, req.URL, err)
	}
	p := &page{url: resp.Request.URL, status: resp.StatusCode}
	var text strings.Builder
	var walk func(n *html.Node, curForm *form)
	walk = func(n *html.Node, curForm *form) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "style", "noscript", "template":
				return
			case "title":
				if p.title == "" {
					p.title = squeeze(textOf(n))
				}
			case "h1":
				if attr(n, "id") == "kc-page-title" || p.heading == "" {
					p.heading = squeeze(textOf(n))
				}
			case "form":
				if p.form == nil {
					p.form = &form{id: attr(n, "id"), action: attr(n, "action"), method: attr(n, "method")}
					curForm = p.form
				} else if curForm == nil {
					curForm = &form{} // later forms: parse into a throw-away
				}
			case "input", "button", "select", "textarea":
				if curForm != nil {
					f := field{tag: n.Data, typ: strings.ToLower(attr(n, "type")), name: attr(n, "name"), value: attr(n, "value")}
					_, f.checked = attrOK(n, "checked")
					switch {
					case n.Data == "button" && f.typ == "":
						f.typ = "submit"
					case n.Data == "input" && f.typ == "":
						f.typ = "text"
					case n.Data != "input" && n.Data != "button":
						f.typ = n.Data
					}
					curForm.fields = append(curForm.fields, f)
				}
			}
			id, class := attr(n, "id"), attr(n, "class")
			if strings.HasPrefix(id, "input-error") || id == "kc-error-message" ||
				strings.Contains(class, "kc-feedback-text") || strings.Contains(class, "alert__title") ||
				strings.Contains(class, "alert-error") || strings.Contains(class, "instruction") {
				if t := squeeze(textOf(n)); t != "" && !slices.Contains(p.alerts, t) {
					p.alerts = append(p.alerts, t)
				}
			}
		}
		if n.Type == html.TextNode {
			text.WriteString(n.Data)
			text.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, curForm)
		}
	}
	walk(doc, nil)
	p.text = squeeze(text.String())
	return p, nil
}

func attrOK(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func attr(n *html.Node, key string) string { v, _ := attrOK(n, key); return v }

func textOf(n *html.Node) string {
	var b strings.Builder
	var f func(*html.Node)
	f = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
			b.WriteByte(' ')
		}
		if n.Type == html.ElementNode && (n.Data == "script" || n.Data == "style") {
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			f(c)
		}
	}
	f(n)
	return b.String()
}

func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }
