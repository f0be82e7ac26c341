package docker

import (
	"reflect"
	"testing"

	"github.com/docker/docker/api/types/registry"
)

func TestAuthConfigs(t *testing.T) {
	cases := []struct {
		name string
		in   map[string]RegistryAuth
		want map[string]registry.AuthConfig
	}{
		{"none", nil, nil},
		{"host keeps its key, server defaults to it",
			map[string]RegistryAuth{"reg.example:5000": {Username: "u", Password: "p"}},
			map[string]registry.AuthConfig{"reg.example:5000": {Username: "u", Password: "p", ServerAddress: "reg.example:5000"}}},
		{"explicit server address",
			map[string]RegistryAuth{"reg.example": {Username: "u", Password: "p", ServerAddress: "https://reg.example"}},
			map[string]registry.AuthConfig{"reg.example": {Username: "u", Password: "p", ServerAddress: "https://reg.example"}}},
		{"docker hub under the engine's key",
			map[string]RegistryAuth{"docker.io": {Username: "hub", Password: "p"}, "127.0.0.1:5001": {Username: "t", Password: "s"}},
			map[string]registry.AuthConfig{
				dockerHubKey:     {Username: "hub", Password: "p", ServerAddress: "docker.io"},
				"127.0.0.1:5001": {Username: "t", Password: "s", ServerAddress: "127.0.0.1:5001"},
			}},
		{"docker hub given as its index URL",
			map[string]RegistryAuth{"https://index.docker.io/v1/": {Username: "hub", Password: "p"}},
			map[string]registry.AuthConfig{dockerHubKey: {Username: "hub", Password: "p", ServerAddress: "https://index.docker.io/v1/"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := authConfigs(c.in); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("authConfigs = %+v, want %+v", got, c.want)
			}
		})
	}
}
