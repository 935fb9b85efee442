package keycloak

import (
	"context"
	"fmt"
	"net/url"
)

// RevokeEndpoint and IntrospectEndpoint are Keycloak's RFC 7009 and RFC
// 7662 endpoints of issuer (both named in the discovery document).
func RevokeEndpoint(issuer string) string { return issuer + "/protocol/openid-connect/revoke" }

// IntrospectEndpoint is the introspection endpoint of issuer.
func IntrospectEndpoint(issuer string) string {
	return issuer + "/protocol/openid-connect/token/introspect"
}

// Revoke revokes an access token (RFC 7009) as the public client it was
// issued to (clientSecret "") or a confidential one.
func Revoke(ctx context.Context, issuer, clientID, clientSecret, token string) error {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	user, pass := "", ""
	if clientSecret == "" {
		form.Set("client_id", clientID)
	} else {
		user, pass = clientID, clientSecret
	}
	if err := postForm(ctx, RevokeEndpoint(issuer), form, user, pass, nil); err != nil {
		return fmt.Errorf("revoking a token of %s: %w", clientID, err)
	}
	return nil
}

// Introspect asks the introspection endpoint about token as the
// confidential client id/secret and returns the answer.
func Introspect(ctx context.Context, issuer, id, secret, token string) (map[string]any, error) {
	var out map[string]any
	if err := postForm(ctx, IntrospectEndpoint(issuer), url.Values{"token": {token}}, id, secret, &out); err != nil {
		return nil, fmt.Errorf("introspection: %w", err)
	}
	return out, nil
}

// UserID returns the id of user in realm.
func (a *Admin) UserID(ctx context.Context, realm, username string) (string, error) {
	var users []struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	}
	if _, err := a.Do(ctx, "GET", "/"+realm+"/users?exact=true&username="+url.QueryEscape(username), nil, &users); err != nil {
		return "", err
	}
	for _, u := range users {
		if u.Username == username {
			return u.ID, nil
		}
	}
	return "", fmt.Errorf("no user %q in realm %s", username, realm)
}

// LogoutUser ends every session of user (admin API).
func (a *Admin) LogoutUser(ctx context.Context, realm, username string) error {
	id, err := a.UserID(ctx, realm, username)
	if err != nil {
		return err
	}
	_, err = a.Do(ctx, "POST", "/"+realm+"/users/"+id+"/logout", nil, nil)
	return err
}

// SetUserEnabled enables or disables user (admin API).
func (a *Admin) SetUserEnabled(ctx context.Context, realm, username string, enabled bool) error {
	id, err := a.UserID(ctx, realm, username)
	if err != nil {
		return err
	}
	_, err = a.Do(ctx, "PUT", "/"+realm+"/users/"+id, map[string]any{"enabled": enabled}, nil)
	return err
}
