package docker

import (
	"strings"

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

// dockerHubKey is the key the engine looks Docker Hub credentials up by;
// for every other registry it uses "host:port" (or a URL of that host).
const dockerHubKey = "https://index.docker.io/v1/"

// authConfigs is the build's AuthConfigs: the classic builder resolves the
// registry of every image it pulls for a FROM against these keys. Docker
// Hub is found only under dockerHubKey, so its usual host names are moved
// there. Nil without credentials: the engine pulls anonymously.
func authConfigs(m map[string]RegistryAuth) map[string]registry.AuthConfig {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]registry.AuthConfig, len(m))
	for host, a := range m {
		server := a.ServerAddress
		if server == "" {
			server = host
		}
		key := host
		switch strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(host), "https://"), "http://"), "/") {
		case "docker.io", "index.docker.io", "registry-1.docker.io", "index.docker.io/v1":
			key = dockerHubKey
		}
		out[key] = registry.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: server}
	}
	return out
}
