//go:build ojw_backend

package keycache

import (
	"context"
	"fmt"
)

// Introspect is not available in the backend's build: the module hands the
// request to the oauth_jwt_fetch helper.
func (c *Cache) Introspect(context.Context, IntrospectQuery) ([]byte, error) {
	return nil, fmt.Errorf("%w: this build of oauth_jwt cannot make requests; oauth_jwt_fetch does", ErrIntrospection)
}
