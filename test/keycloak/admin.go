package keycloak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Admin calls Keycloak's admin REST API (/admin/realms/...) as the bootstrap admin of the
// master realm (client admin-cli, password grant). Tokens of the master realm live 60 s:
// Admin gets a new one when the current one is about to expire.
type Admin struct {
	BaseURL  string // http://127.0.0.1:PORT
	Username string
	Password string

	mu      sync.Mutex
	token   string
	expires time.Time
}

// NewAdmin returns an admin client for the server at baseURL, logged in as admin/admin.
func NewAdmin(ctx context.Context, baseURL string) (*Admin, error) {
	a := &Admin{BaseURL: strings.TrimRight(baseURL, "/"), Username: AdminUser, Password: AdminPassword}
	if _, err := a.Token(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// Admin returns an admin client for this server.
func (s *Server) Admin(ctx context.Context) (*Admin, error) { return NewAdmin(ctx, s.BaseURL()) }

// Token returns a valid admin access token.
func (a *Admin) Token(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && time.Until(a.expires) > 15*time.Second {
		return a.token, nil
	}
	var tr TokenResponse
	err := postForm(ctx, TokenEndpoint(a.BaseURL+"/realms/master"), url.Values{
		"grant_type": {"password"}, "client_id": {"admin-cli"},
		"username": {a.Username}, "password": {a.Password},
	}, "", "", &tr)
	if err != nil {
		return "", fmt.Errorf("admin login: %w", err)
	}
	a.token, a.expires = tr.AccessToken, time.Now().Add(time.Duration(tr.ExpiresIn)*time.Second)
	return a.token, nil
}

// Do calls the admin API: method on /admin/realms + p (p starts with "/" or is ""), body
// (if not nil) as JSON, the 2xx JSON answer into out (if not nil). It returns the answer's
// Location header (set by creations).
func (a *Admin) Do(ctx context.Context, method, p string, body, out any) (location string, err error) {
	tok, err := a.Token(ctx)
	if err != nil {
		return "", err
	}
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return "", err
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.BaseURL+"/admin/realms"+p, rd)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := HTTPClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("admin %s %s: HTTP %d: %s", method, p, resp.StatusCode, truncate(strings.TrimSpace(buf.String()), 500))
	}
	if out != nil && buf.Len() > 0 {
		if err := json.Unmarshal(buf.Bytes(), out); err != nil {
			return "", fmt.Errorf("admin %s %s: decoding: %w", method, p, err)
		}
	}
	return resp.Header.Get("Location"), nil
}

// RealmID returns the internal id of a realm (the parentId of its components).
func (a *Admin) RealmID(ctx context.Context, realm string) (string, error) {
	var r struct {
		ID string `json:"id"`
	}
	if _, err := a.Do(ctx, http.MethodGet, "/"+url.PathEscape(realm), nil, &r); err != nil {
		return "", err
	}
	return r.ID, nil
}

// CreateRealm imports a realm representation (POST /admin/realms).
func (a *Admin) CreateRealm(ctx context.Context, rep any) error {
	_, err := a.Do(ctx, http.MethodPost, "", rep, nil)
	return err
}

// DeleteRealm deletes a realm.
func (a *Admin) DeleteRealm(ctx context.Context, realm string) error {
	_, err := a.Do(ctx, http.MethodDelete, "/"+url.PathEscape(realm), nil, nil)
	return err
}

// CreateUser creates a user from a representation and returns its id.
func (a *Admin) CreateUser(ctx context.Context, realm string, rep any) (string, error) {
	loc, err := a.Do(ctx, http.MethodPost, "/"+url.PathEscape(realm)+"/users", rep, nil)
	if err != nil {
		return "", err
	}
	return path.Base(loc), nil
}

// DeleteUser deletes a user by id.
func (a *Admin) DeleteUser(ctx context.Context, realm, id string) error {
	_, err := a.Do(ctx, http.MethodDelete, "/"+url.PathEscape(realm)+"/users/"+url.PathEscape(id), nil, nil)
	return err
}

// ClientScopeNames lists the names of a realm's client scopes.
func (a *Admin) ClientScopeNames(ctx context.Context, realm string) ([]string, error) {
	var scopes []struct {
		Name string `json:"name"`
	}
	if _, err := a.Do(ctx, http.MethodGet, "/"+url.PathEscape(realm)+"/client-scopes", nil, &scopes); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(scopes))
	for _, s := range scopes {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return names, nil
}

// Key is one entry of GET /admin/realms/{realm}/keys.
type Key struct {
	ProviderID       string `json:"providerId"` // the key provider component's id
	ProviderPriority int64  `json:"providerPriority"`
	Kid              string `json:"kid"`
	Status           string `json:"status"` // ACTIVE, PASSIVE or DISABLED
	Type             string `json:"type"`   // RSA, EC, OCT, ...
	Algorithm        string `json:"algorithm"`
	Use              string `json:"use"` // SIG or ENC
	PublicKey        string `json:"publicKey"`
	Certificate      string `json:"certificate"`
}

// KeysMetadata is GET /admin/realms/{realm}/keys: Active maps an algorithm to the kid
// Keycloak signs with.
type KeysMetadata struct {
	Active map[string]string `json:"active"`
	Keys   []Key             `json:"keys"`
}

// Keys returns a realm's keys.
func (a *Admin) Keys(ctx context.Context, realm string) (*KeysMetadata, error) {
	var km KeysMetadata
	if _, err := a.Do(ctx, http.MethodGet, "/"+url.PathEscape(realm)+"/keys", nil, &km); err != nil {
		return nil, err
	}
	return &km, nil
}

// ActiveKIDs lists the kids of a realm's ACTIVE asymmetric signing keys (those the JWKS
// publishes; not the realm's HMAC key, which has no public key).
func (a *Admin) ActiveKIDs(ctx context.Context, realm string) ([]string, error) {
	km, err := a.Keys(ctx, realm)
	if err != nil {
		return nil, err
	}
	var kids []string
	for _, k := range km.Keys {
		if k.Status == "ACTIVE" && k.Use == "SIG" && (k.PublicKey != "" || k.Certificate != "") {
			kids = append(kids, k.Kid)
		}
	}
	return kids, nil
}

// SigningKID returns the kid Keycloak currently signs alg (e.g. "RS256") tokens with.
func (a *Admin) SigningKID(ctx context.Context, realm, alg string) (string, error) {
	km, err := a.Keys(ctx, realm)
	if err != nil {
		return "", err
	}
	kid := km.Active[alg]
	if kid == "" {
		return "", fmt.Errorf("realm %s has no active %s key", realm, alg)
	}
	return kid, nil
}

// Component is a Keycloak component (here: key providers).
type Component struct {
	ID           string              `json:"id,omitempty"`
	Name         string              `json:"name"`
	ProviderID   string              `json:"providerId"`
	ProviderType string              `json:"providerType"`
	ParentID     string              `json:"parentId"`
	SubType      string              `json:"subType,omitempty"`
	Config       map[string][]string `json:"config"`
}

const keyProviderType = "org.keycloak.keys.KeyProvider"

// KeyProviders lists a realm's key provider components.
func (a *Admin) KeyProviders(ctx context.Context, realm string) ([]Component, error) {
	var cs []Component
	_, err := a.Do(ctx, http.MethodGet, "/"+url.PathEscape(realm)+"/components?type="+keyProviderType, nil, &cs)
	return cs, err
}

// Component gets one component.
func (a *Admin) Component(ctx context.Context, realm, id string) (*Component, error) {
	var c Component
	if _, err := a.Do(ctx, http.MethodGet, "/"+url.PathEscape(realm)+"/components/"+url.PathEscape(id), nil, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// SetComponentConfig sets one config value of a component (e.g. "active"="false" makes a
// key provider passive, "enabled"="false" disables it).
func (a *Admin) SetComponentConfig(ctx context.Context, realm, id, key, value string) error {
	c, err := a.Component(ctx, realm, id)
	if err != nil {
		return err
	}
	if c.Config == nil {
		c.Config = map[string][]string{}
	}
	c.Config[key] = []string{value}
	_, err = a.Do(ctx, http.MethodPut, "/"+url.PathEscape(realm)+"/components/"+url.PathEscape(id), c, nil)
	return err
}

// DeleteComponent deletes a component (a deleted key provider's keys are gone at once).
func (a *Admin) DeleteComponent(ctx context.Context, realm, id string) error {
	_, err := a.Do(ctx, http.MethodDelete, "/"+url.PathEscape(realm)+"/components/"+url.PathEscape(id), nil, nil)
	return err
}

// AddRSAKeyProvider adds an rsa-generated RS256 key provider (2048-bit key generated by
// Keycloak) with the given priority; the highest-priority active key signs. It returns the
// component id.
func (a *Admin) AddRSAKeyProvider(ctx context.Context, realm, name string, priority int64) (string, error) {
	rid, err := a.RealmID(ctx, realm)
	if err != nil {
		return "", err
	}
	c := Component{
		Name: name, ProviderID: "rsa-generated", ProviderType: keyProviderType, ParentID: rid,
		Config: map[string][]string{
			"priority": {strconv.FormatInt(priority, 10)}, "enabled": {"true"}, "active": {"true"},
			"keySize": {"2048"}, "algorithm": {"RS256"},
		},
	}
	loc, err := a.Do(ctx, http.MethodPost, "/"+url.PathEscape(realm)+"/components", c, nil)
	if err != nil {
		return "", err
	}
	if loc == "" {
		return "", fmt.Errorf("adding key provider %s: no Location in the answer", name)
	}
	return path.Base(loc), nil
}

// OldKeys says what RotateRSAKey does with the RS256 key providers that were there before.
type OldKeys int

const (
	OldKeysPassive  OldKeys = iota // active=false: no longer signs, still verifies (kept in the JWKS)
	OldKeysDisabled                // enabled=false: gone from the JWKS
	OldKeysDeleted                 // component deleted
	OldKeysKept                    // left as they are (they just lose on priority)
)

// RSAKeyProviders returns the realm's RS256 key providers (rsa-generated and imported rsa;
// not the RSA-OAEP rsa-enc-generated one).
func (a *Admin) RSAKeyProviders(ctx context.Context, realm string) ([]Component, error) {
	cs, err := a.KeyProviders(ctx, realm)
	if err != nil {
		return nil, err
	}
	var out []Component
	for _, c := range cs {
		if c.ProviderID != "rsa-generated" && c.ProviderID != "rsa" {
			continue
		}
		if alg := first(c.Config["algorithm"]); alg != "" && alg != "RS256" {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// RotateRSAKey adds a new RS256 key provider with a priority above every existing key
// provider's, then treats the older RS256 providers as old says. It returns the new kid
// (new tokens carry it) and the ids of the old provider components.
func (a *Admin) RotateRSAKey(ctx context.Context, realm string, old OldKeys) (newKID string, oldProviders []string, err error) {
	all, err := a.KeyProviders(ctx, realm)
	if err != nil {
		return "", nil, err
	}
	var maxPrio int64
	for _, c := range all {
		if p, err := strconv.ParseInt(first(c.Config["priority"]), 10, 64); err == nil && p > maxPrio {
			maxPrio = p
		}
	}
	olds, err := a.RSAKeyProviders(ctx, realm)
	if err != nil {
		return "", nil, err
	}
	id, err := a.AddRSAKeyProvider(ctx, realm, fmt.Sprintf("rsa-rotated-%d", time.Now().UnixNano()), maxPrio+100)
	if err != nil {
		return "", nil, err
	}
	km, err := a.Keys(ctx, realm)
	if err != nil {
		return "", nil, err
	}
	for _, k := range km.Keys {
		if k.ProviderID == id && k.Use == "SIG" {
			newKID = k.Kid
		}
	}
	if newKID == "" {
		return "", nil, fmt.Errorf("new key provider %s has no signing key in /keys", id)
	}
	for _, c := range olds {
		oldProviders = append(oldProviders, c.ID)
		switch old {
		case OldKeysPassive:
			err = a.SetComponentConfig(ctx, realm, c.ID, "active", "false")
		case OldKeysDisabled:
			err = a.SetComponentConfig(ctx, realm, c.ID, "enabled", "false")
		case OldKeysDeleted:
			err = a.DeleteComponent(ctx, realm, c.ID)
		}
		if err != nil {
			return newKID, oldProviders, err
		}
	}
	return newKID, oldProviders, nil
}
