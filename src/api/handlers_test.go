package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/transport/serialize"

	"reagent/src/config"
	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/release"
	"reagent/src/system"
)

func TestDeviceHandshake(t *testing.T) {
	h, reg := newTest(t, Deps{})
	h.now = func() time.Time { return time.Date(2024, 3, 1, 10, 15, 0, 0, time.FixedZone("CET", 3600)) }
	res, err := reg().call(t, ProcDeviceHandshake, []any{"ignored"}, map[string]any{"x": 1})
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "device_handshake.json")
}

func TestGetAgentMetadata(t *testing.T) {
	for _, capable := range []bool{true, false} {
		h, reg := newTest(t, Deps{TunnelCapable: func() bool { return capable }})
		h.detailedOS = func() string { return "linux debian 12 6.1.0-28-amd64" }
		res, err := reg().call(t, ProcGetAgentMetadata, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		// The fixture is an armv7 device; this build reports its own.
		arch, variant := release.SplitArch()
		want := AgentMetadata{OS: "linux debian 12 6.1.0-28-amd64", Arch: arch, Variant: variant,
			Version: release.Version(), SerialNumber: testSerial, CanUpdate: true,
			OSVersion: "linux debian 12 6.1.0-28-amd64", TunnelCapable: capable}
		if !reflect.DeepEqual(res.Args, []any{want}) {
			t.Fatalf("got %#v", res.Args)
		}
		// Same keys and JSON types as the fixture.
		assertSameShape(t, wire(t, res.Args), normalize(t, loadFixture(t, "get_agent_metadata.json").Args))
	}
	// No TunnelCapable: the field is still sent, false.
	_, reg := newTest(t, Deps{})
	res, _ := reg().call(t, ProcGetAgentMetadata, nil, nil)
	if m := wire(t, res.Args).([]any)[0].(map[string]any); m["tunnelCapable"] != false {
		t.Fatalf("tunnelCapable %v", m["tunnelCapable"])
	}
}

func TestGetStorageData(t *testing.T) {
	var want system.StatsPayload
	if err := json.Unmarshal([]byte(mustJSON(loadFixture(t, "get_storage_data.json").Args[0])), &want); err != nil {
		t.Fatal(err)
	}
	_, reg := newTest(t, Deps{Stats: func(context.Context) (system.StatsPayload, error) { return want, nil }})
	res, err := reg().call(t, ProcGetStorageData, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "get_storage_data.json")

	_, reg = newTest(t, Deps{Stats: func(context.Context) (system.StatsPayload, error) {
		return system.StatsPayload{}, errors.New("no /proc")
	}})
	if _, err := reg().call(t, ProcGetStorageData, nil, nil); err == nil || !strings.Contains(err.Error(), "no /proc") {
		t.Fatalf("err %v", err)
	}
}

func TestGetStorageDataDefaultsToTheAppsDir(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counters are read on linux only")
	}
	_, reg := newTest(t, Deps{Flags: &config.Flags{AppsDir: t.TempDir()}})
	res, err := reg().call(t, ProcGetStorageData, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := res.Args[0].(system.StatsPayload)
	if p.CPUCount < 1 || p.MemoryTotal == 0 || p.StorageTotal == 0 || p.DockerAppsTotal == 0 {
		t.Fatalf("stats %+v", p)
	}
	assertSameShape(t, wire(t, res.Args), normalize(t, loadFixture(t, "get_storage_data.json").Args))
}

func TestGetOSRelease(t *testing.T) {
	rel := system.OSReleases{
		Current: system.Release{Name: "ReswarmOS", Version: "2.5.1", BuildTime: "20240301T101500"},
		Latest:  system.Release{Name: "ReswarmOS", Version: "2.6.0", BuildTime: "20240601T080000"},
	}
	tests := []struct {
		name    string
		ok      bool
		err     error
		fixture string
	}{
		{"both files", true, nil, "get_os_release.json"},
		{"files missing", false, nil, "get_os_release_missing.json"},
		{"broken file", false, errors.New("parse /etc/os-release-latest.json: unexpected EOF"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, reg := newTest(t, Deps{})
			h.osRelease = func() (system.OSReleases, bool, error) { return rel, tc.ok, tc.err }
			res, err := reg().call(t, ProcGetOSRelease, nil, nil)
			if tc.err != nil {
				if err == nil {
					t.Fatal("error swallowed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertWire(t, res, tc.fixture)
		})
	}
}

func TestGetNetworkMetadata(t *testing.T) {
	h, reg := newTest(t, Deps{})
	h.addrs = func() ([]system.IfaceAddr, error) { return testAddrs(t)[:4], nil }
	res, err := reg().call(t, ProcGetNetworkMetadata, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "get_network_metadata.json")

	// The real interfaces: loopback at least, in the same shape.
	h, reg = newTest(t, Deps{})
	res, err = reg().call(t, ProcGetNetworkMetadata, nil, nil)
	if err != nil || len(res.Args) == 0 {
		t.Fatalf("%v %v", res.Args, err)
	}
	for _, a := range wire(t, res.Args).([]any) {
		m := a.(map[string]any)
		if net.ParseIP(m["IP"].(string)) == nil || len(m) != 2 {
			t.Fatalf("address %v", m)
		}
	}
}

func testAddrs(t *testing.T) []system.IfaceAddr {
	t.Helper()
	var out []system.IfaceAddr
	for _, a := range []struct{ iface, cidr string }{
		{"lo", "127.0.0.1/8"}, {"lo", "::1/128"}, {"eth0", "192.168.1.5/24"}, {"eth0", "fe80::1/64"},
		{"docker0", "172.17.0.1/16"}, {"wlan0", "10.0.0.7/8"},
	} {
		ip, n, err := net.ParseCIDR(a.cidr)
		if err != nil {
			t.Fatal(err)
		}
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		}
		n.IP = ip
		out = append(out, system.IfaceAddr{Interface: a.iface, Net: *n})
	}
	return out
}

func TestGetIPv4Addresses(t *testing.T) {
	h, reg := newTest(t, Deps{})
	h.addrs = func() ([]system.IfaceAddr, error) { return testAddrs(t), nil }
	res, err := reg().call(t, ProcGetIPv4Addresses, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "get_ipv4_addresses.json")

	h.addrs = func() ([]system.IfaceAddr, error) { return testAddrs(t)[:2], nil } // loopback only
	if res, err = reg().call(t, ProcGetIPv4Addresses, nil, nil); err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "get_ipv4_addresses_none.json")
}

// fixtureContainers decodes the list_containers fixture with the WAMP
// codec, so numbers are plain Go numbers as docker.ListContainersRaw
// returns them.
func fixtureContainers(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := (&serialize.JSONSerializer{}).DeserializeDataItem([]byte(mustJSON(loadFixture(t, "list_containers.json").Args[0])), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestListContainers(t *testing.T) {
	fd := &fakeDocker{containers: fixtureContainers(t)}
	_, reg := newTest(t, Deps{Docker: fd})
	res, err := reg().call(t, ProcListContainers, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "list_containers.json")

	fd.containers = nil
	if res, err = reg().call(t, ProcListContainers, nil, nil); err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "list_containers_none.json")
}

func TestGetImages(t *testing.T) {
	fd := &fakeDocker{images: []docker.Image{
		{ID: "sha256:3b2c", RepoTags: []string{"localhost:5001/apps/prod_amd64_1_demo:1.0.0"}, Created: 1700000000,
			Size: 4400000, VirtualSize: 4400000, Containers: 1, Labels: map[string]string{"io.ironflock.managed": "true"}},
		{ID: "sha256:9f1e", Created: 1690000000, Size: 120000, SharedSize: 1000},
	}}
	_, reg := newTest(t, Deps{Docker: fd})
	res, err := reg().call(t, ProcGetImages, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "get_images.json")
}

func TestPruneImages(t *testing.T) {
	report := docker.PruneReport{ImagesDeleted: []string{"sha256:9f1e", "sha256:77aa"},
		ImagesUntagged: []string{"localhost:5001/apps/old:1"}, SpaceReclaimed: 120000, BuildCacheReclaimed: 5000}
	tests := []struct {
		name    string
		args    []any
		wantAll bool
		wantErr string
	}{
		{name: "no args: dangling only", args: nil},
		{name: "null", args: []any{nil}},
		{name: "empty dict", args: []any{map[string]any{}}},
		{name: "all false", args: []any{map[string]any{"all": false}}},
		{name: "all null", args: []any{map[string]any{"all": nil}}},
		{name: "all", args: []any{map[string]any{"all": true}}, wantAll: true},
		{name: "not a dict", args: []any{"x"}, wantErr: "first param should be a dict"},
		{name: "all not a bool", args: []any{map[string]any{"all": "yes"}}, wantErr: "all value for container prune is not a boolean"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fd := &fakeDocker{prune: report}
			_, reg := newTest(t, Deps{Docker: fd})
			res, err := reg().call(t, ProcPruneImages, tc.args, nil)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err %v, want invalid argument %q", err, tc.wantErr)
				}
				if len(fd.calls()) != 0 {
					t.Fatal("pruned despite bad input")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fd.calls(); len(got) != 1 || got[0] != tc.wantAll {
				t.Fatalf("prune calls %v, want [%v]", got, tc.wantAll)
			}
			assertWire(t, res, "prune_images.json")
		})
	}
	// Nothing to prune: empty lists, not null.
	_, reg := newTest(t, Deps{Docker: &fakeDocker{}})
	res, err := reg().call(t, ProcPruneImages, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertWire(t, res, "prune_images_nothing.json")
}

func TestDockerErrors(t *testing.T) {
	for _, name := range []string{ProcListContainers, ProcGetImages, ProcPruneImages} {
		_, reg := newTest(t, Deps{})
		if _, err := reg().call(t, name, nil, nil); !errors.Is(err, errdefs.ErrUnavailable) {
			t.Errorf("%s without an engine: %v", name, err)
		}
		boom := errdefs.Unavailable("engine down")
		_, reg = newTest(t, Deps{Docker: &fakeDocker{err: boom}})
		if _, err := reg().call(t, name, nil, nil); !errors.Is(err, boom) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPowerProcedures(t *testing.T) {
	tests := []struct {
		proc string
		want []string
	}{
		{ProcSystemReboot, []string{"reboot"}},
		{ProcSystemShutdown, []string{"poweroff"}},
		{ProcSystemRestartAgent, []string{"systemctl", "restart", "reagent"}},
	}
	if runtime.GOOS != "linux" {
		t.Skip("commands differ per OS; system tests them all")
	}
	for _, tc := range tests {
		t.Run(tc.proc, func(t *testing.T) {
			r := &recordingRunner{ran: make(chan struct{}, 1)}
			_, reg := newTest(t, Deps{Runner: r, PowerDelay: time.Millisecond})
			res, err := reg().call(t, tc.proc, []any{"ignored"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			assertWire(t, res, "system_reboot.json")
			select {
			case <-r.ran:
			case <-time.After(10 * time.Second):
				t.Fatal("the operation never ran")
			}
			if got := r.get(); !reflect.DeepEqual(got, [][]string{tc.want}) {
				t.Fatalf("ran %v, want %v", got, tc.want)
			}
		})
	}
}

// assertSameShape checks that got has the keys of want with values of the
// same JSON kind (for values that differ per machine).
func assertSameShape(t *testing.T, got, want any) {
	t.Helper()
	if reflect.TypeOf(got) != reflect.TypeOf(want) {
		t.Fatalf("kind %T, want %T (%s vs %s)", got, want, mustJSON(got), mustJSON(want))
	}
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		if len(g) != len(w) {
			t.Fatalf("keys %s, want %s", mustJSON(g), mustJSON(w))
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				t.Fatalf("key %q missing in %s", k, mustJSON(g))
			}
			assertSameShape(t, gv, wv)
		}
	case []any:
		g := got.([]any)
		if len(w) > 0 && len(g) > 0 {
			assertSameShape(t, g[0], w[0])
		}
	}
}
