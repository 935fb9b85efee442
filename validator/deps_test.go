package validator

import (
	"os/exec"
	"strings"
	"testing"
)

// The backend's archive must not link an HTTP stack or jwx: linking them
// was measured to cost more login latency and memory than the validation
// itself (docs/benchmarks.md). Fetches belong to cmd/oauth_jwt_fetch. This
// guards the build tags and imports that keep it so.
func TestBackendArchiveLinksNoHTTP(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "netgo,osusergo,ojw_backend,ojw_testhooks",
		"github.com/oauth-jwt/oauth_jwt/validator/capi").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list printed %d packages; expected the runtime and more", len(deps))
	}
	for _, p := range deps {
		switch {
		case p == "net", p == "net/http", p == "crypto/tls", p == "crypto/x509",
			strings.HasPrefix(p, "github.com/lestrrat-go/"):
			t.Errorf("the backend archive links %s", p)
		}
	}
	// And the helper does have them, so the tags did not just drop code.
	out, err = exec.Command("go", "list", "-deps", "-tags", "netgo,osusergo",
		"github.com/oauth-jwt/oauth_jwt/cmd/oauth_jwt_fetch").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, want := range []string{"net/http", "crypto/tls", "github.com/lestrrat-go/jwx/v3/jwk"} {
		if !strings.Contains(" "+strings.Join(strings.Fields(string(out)), " ")+" ", " "+want+" ") {
			t.Errorf("oauth_jwt_fetch does not link %s", want)
		}
	}
}
