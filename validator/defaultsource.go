package validator

import (
	"errors"
	"fmt"
	"time"

	"github.com/oauth-jwt/oauth_jwt/internal/trustedfile"
	"github.com/oauth-jwt/oauth_jwt/validator/keycache"
)

// defaultSource builds the server-wide key cache of cfg: one HTTP client
// (http_timeout, ca_file, http_proxy) and one cache directory shared by all
// backends.
func defaultSource(cfg *Config, now func() time.Time) (*keycache.Cache, error) {
	if cfg.CacheDir == "" {
		return nil, &ConfigError{Setting: SettingPrefix + "cache_dir",
			Msg: "no key cache directory: set it, or let the server pass its data directory"}
	}
	client, err := keycache.NewHTTPClient(cfg.HTTPTimeout, cfg.CAFile, cfg.HTTPProxy)
	if err != nil {
		setting := "ca_file"
		if cfg.CAFile == "" {
			setting = "http_proxy"
		}
		msg := "cannot build the HTTP client: " + err.Error()
		if errors.Is(err, trustedfile.ErrUntrusted) || errors.Is(err, trustedfile.ErrTooLarge) {
			msg = err.Error() // names the file and the fix
		}
		return nil, &ConfigError{Setting: SettingPrefix + setting, Msg: msg, Err: err}
	}
	c, err := keycache.New(keycache.Config{
		Dir:                cfg.CacheDir,
		RefreshInterval:    cfg.CacheRefreshInterval,
		MaxStale:           cfg.CacheMaxStale,
		KIDRefetchInterval: cfg.KIDRefetchInterval,
		HTTPClient:         client,
		RequireHTTPS:       cfg.RequireHTTPS,
		Now:                now,
	})
	if err != nil {
		if errors.Is(err, keycache.ErrInsecureCache) {
			return nil, fmt.Errorf("cannot use the key cache directory: %w", err)
		}
		return nil, &ConfigError{Setting: SettingPrefix + "cache_dir", Msg: "cannot use the key cache directory", Err: err}
	}
	return c, nil
}
