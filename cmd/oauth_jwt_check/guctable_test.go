package main

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/oauth-jwt/oauth_jwt/validator"
)

// The tool's table of settings is the shim's (cshim/oauth_jwt.c): the same
// names, types and integer bounds; and those bounds are Go's, so a value
// the tool (or the server) accepts is one the validator accepts.
func TestGUCTableMatchesShim(t *testing.T) {
	src, err := os.ReadFile("../../cshim/oauth_jwt.c")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^\t\{"([a-z_]+)", OJW_(STRING|INT|BOOL), "(?:[^"\\]|\\.)*", [^,]+, (-?\d+), (-?\d+), (-?\d+), ([^}]+)\},`)
	rows := row.FindAllStringSubmatch(string(src), -1)
	if len(rows) < 20 {
		t.Fatalf("found %d settings in cshim/oauth_jwt.c; the row pattern no longer matches the table", len(rows))
	}
	seen := map[string]bool{}
	for _, r := range rows {
		name, typ := r[1], r[2]
		seen[name] = true
		g, ok := gucs[name]
		if !ok {
			t.Errorf("oauth_jwt.%s is defined by the shim but unknown to oauth_jwt_check", name)
			continue
		}
		want := map[string][]kind{"STRING": {kindString}, "BOOL": {kindBool}, "INT": {kindSeconds, kindMillis}}[typ]
		if !containsKind(want, g.kind) {
			t.Errorf("oauth_jwt.%s: the shim defines OJW_%s, the tool kind %d", name, typ, g.kind)
		}
		if typ != "INT" {
			continue
		}
		min, _ := strconv.Atoi(r[4])
		max, _ := strconv.Atoi(r[5])
		if g.min != min || g.max != max {
			t.Errorf("oauth_jwt.%s: the shim's bounds are %d..%d, the tool's %d..%d", name, min, max, g.min, g.max)
		}
		for _, c := range []struct {
			v  int
			ok bool
		}{{min - 1, false}, {max + 1, false}, {min, true}, {max, true}} {
			if err := validator.CheckSetting(name, strconv.Itoa(c.v)); (err == nil) != c.ok {
				t.Errorf("oauth_jwt.%s = %d: the shim's bounds are %d..%d, the validator says %v", name, c.v, min, max, err)
			}
		}
	}
	for name := range gucs {
		if !seen[name] {
			t.Errorf("oauth_jwt_check knows oauth_jwt.%s, which the shim does not define", name)
		}
	}
}

func containsKind(l []kind, k kind) bool {
	for _, x := range l {
		if x == k {
			return true
		}
	}
	return false
}
