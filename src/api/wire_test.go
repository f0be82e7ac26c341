package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"reagent/src/docker"
	"reagent/src/system"
)

// Every wire struct decodes its fixture strictly (no unknown key) and
// encodes back, through the WAMP codec, to exactly the fixture.
func TestWireStructsRoundTrip(t *testing.T) {
	tests := []struct {
		fixture string
		kwargs  bool // the value is the kwargs, not args[0]
		index   int
		into    func() any
	}{
		{"device_handshake.json", true, 0, func() any { return new(Handshake) }},
		{"get_agent_metadata.json", false, 0, func() any { return new(AgentMetadata) }},
		{"get_storage_data.json", false, 0, func() any { return new(system.StatsPayload) }},
		{"get_os_release.json", false, 0, func() any { return new(system.OSReleases) }},
		{"get_network_metadata.json", false, 2, func() any { return new(NetAddr) }},
		{"get_ipv4_addresses.json", false, 0, func() any { return new([]IPv4Address) }},
		{"get_images.json", false, 0, func() any { return new(Image) }},
		{"get_images.json", false, 1, func() any { return new(Image) }},
		{"prune_images.json", false, 0, func() any { return new(PruneResult) }},
		{"prune_images_nothing.json", false, 0, func() any { return new(PruneResult) }},
		{"execute_cmd_background.json", false, 0, func() any { return new(ExecPID) }},
	}
	for _, tc := range tests {
		t.Run(tc.fixture, func(t *testing.T) {
			f := loadFixture(t, tc.fixture)
			var want any = f.Kwargs
			if !tc.kwargs {
				want = f.Args[tc.index]
			}
			v := tc.into()
			dec := json.NewDecoder(bytes.NewReader([]byte(mustJSON(want))))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				t.Fatalf("decode into %T: %v", v, err)
			}
			got := wire(t, reflect.ValueOf(v).Elem().Interface())
			if w := normalize(t, want); !reflect.DeepEqual(got, w) {
				t.Fatalf("round trip of %T:\n got  %s\n want %s", v, mustJSON(got), mustJSON(w))
			}
		})
	}
}

// The engine client satisfies the interface the procedures declare.
var _ DockerAPI = (*docker.Client)(nil)
