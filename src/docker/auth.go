package docker

import (
	"github.com/docker/docker/api/types/registry"
)

// RegistryAuth are credentials for one registry. Password is a secret: it
// is sent to the engine in the X-Registry-Auth header only, never logged
// and never part of an error.
type RegistryAuth struct {
	Username      string
	Password      string
	ServerAddress string
}

// String keeps the password out of any accidental %v.
func (a RegistryAuth) String() string {
	return "RegistryAuth{" + a.Username + "@" + a.ServerAddress + ", password ***}"
}

// GoString hides the password from %#v as well.
func (a RegistryAuth) GoString() string { return a.String() }

// encodeAuth builds the X-Registry-Auth header value. The engine wants the
// header even for anonymous pushes, so nil encodes an empty config.
func encodeAuth(a *RegistryAuth) (string, error) {
	cfg := registry.AuthConfig{}
	if a != nil {
		cfg = registry.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: a.ServerAddress}
	}
	return registry.EncodeAuthConfig(cfg)
}
