package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"reagent/src/config"
	"reagent/src/errdefs"
	"reagent/src/release"
	"reagent/src/wamp"
)

// fakeCaller records calls and answers from a table. Unit tests only.
type fakeCaller struct {
	mu      sync.Mutex
	answers map[string]wamp.Result
	errs    map[string]error
	calls   []recorded
}

type recorded struct {
	procedure   string
	args        []any
	kwargs      map[string]any
	hasDeadline bool
	deadline    time.Duration
}

func (f *fakeCaller) Call(ctx context.Context, procedure string, args []any, kwargs map[string]any) (wamp.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dl, ok := ctx.Deadline()
	f.calls = append(f.calls, recorded{procedure, args, kwargs, ok, time.Until(dl)})
	if err := f.errs[procedure]; err != nil {
		return wamp.Result{}, err
	}
	return f.answers[procedure], nil
}

func (f *fakeCaller) last(t *testing.T) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("no call made")
	}
	return f.calls[len(f.calls)-1]
}

func testClient(f *fakeCaller) *Client {
	return New(f, &config.Flock{SerialNumber: "serial-1", SwarmKey: 1, DeviceKey: 2}, 10*time.Second)
}

// fixture reads testdata/name as generic JSON.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameJSON compares what we send with a fixture, as JSON values.
func sameJSON(t *testing.T, got any, wantJSON []byte) {
	t.Helper()
	gb, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(gb, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(wantJSON, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("sent\n%s\nwant\n%s", gb, bytes.TrimSpace(wantJSON))
	}
}

// encodings turns fixture JSON into args the way each serializer nexus may
// negotiate decodes them: float64 numbers, json.Number, and uint64/int64
// for integers (ugorji's JSON, CBOR and msgpack).
func encodings(t *testing.T, data []byte) map[string][]any {
	t.Helper()
	out := map[string][]any{}
	var plain []any
	if err := json.Unmarshal(data, &plain); err != nil {
		t.Fatal(err)
	}
	out["float64"] = plain
	var num []any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&num); err != nil {
		t.Fatal(err)
	}
	out["json.Number"] = num
	var ints []any
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&ints); err != nil {
		t.Fatal(err)
	}
	out["uint64"] = normalizeNumbers(ints).([]any)
	return out
}

var sampleStats = map[string]any{
	"cpu_count": 2, "cpu_usage": 3.5, "memory_total": uint64(4123000832), "memory_used": uint64(1062000640),
	"memory_available": uint64(2900000768), "storage_total": uint64(63000000000), "storage_used": uint64(21000000000),
	"storage_free": uint64(39000000000), "docker_apps_total": uint64(63000000000), "docker_apps_used": uint64(21000000000),
	"docker_apps_free": uint64(39000000000), "docker_apps_mounted": false,
}

// Every outgoing payload matches its reference-shaped fixture, goes to the
// reference procedure and carries a deadline.
func TestRequestsMatchFixtures(t *testing.T) {
	arch, variant := release.SplitArch()
	archFixture := strings.NewReplacer(`"ARCH"`, `"`+release.Arch()+`"`, `"GOARCH"`, `"`+arch+`"`,
		`"VARIANT"`, `"`+variant+`"`, `"VERSION"`, `"`+release.Version()+`"`).Replace(string(fixture(t, "update_device_architecture.args.json")))
	cases := []struct {
		name      string
		procedure string
		fixture   []byte
		kwargs    map[string]any // nil: none sent
		maxWait   time.Duration
		call      func(c *Client) error
	}{
		{"testament", ProcAddTestament, fixture(t, "add_testament.args.json"), nil, 10 * time.Second,
			func(c *Client) error { return c.AddTestament(context.Background(), 4242) }},
		{"read metadata", ProcReadDeviceMetadata, fixture(t, "read_device_metadata.args.json"), nil, 10 * time.Second,
			func(c *Client) error { _, err := c.ReadDeviceMetadata(context.Background()); return err }},
		{"status", ProcUpdateDeviceStatus, fixture(t, "update_device_status.args.json"), nil, 10 * time.Second,
			func(c *Client) error {
				_, err := c.UpdateDeviceStatus(context.Background(), "CONNECTED", 4242, sampleStats, true)
				return err
			}},
		{"architecture", ProcUpdateDeviceArchitecture, []byte(archFixture), nil, 10 * time.Second,
			func(c *Client) error {
				return c.UpdateDeviceArchitecture(context.Background(), "linux debian 12 6.1.0")
			}},
		{"check privilege", ProcCheckPrivilege, fixture(t, "check_privilege.args.json"), nil, 10 * time.Second,
			func(c *Client) error { _, err := c.CheckPrivilege(context.Background(), 42, "MAINTAIN"); return err }},
		{"requested states", ProcGetRequestedAppStates, fixture(t, "get_requested_app_states.args.json"), nil, 10 * time.Second,
			func(c *Client) error { _, err := c.GetRequestedAppStates(context.Background()); return err }},
		{"state report", ProcUpdateAppOnDevice, fixture(t, "update_app_on_device.state.args.json"), nil, 10 * time.Second,
			func(c *Client) error {
				return c.UpdateAppOnDevice(context.Background(), AppStateReport{AppKey: 7, Stage: "PROD", State: "RUNNING",
					RequestorAccountKey: 42, ReleaseKey: 3, UpdateStatus: "pending_remote_confirmation"})
			}},
		{"port save", ProcUpdateAppOnDevice, fixture(t, "update_app_on_device.ports.args.json"), nil, 5 * time.Second,
			func(c *Client) error {
				return c.SaveAppPorts(context.Background(), 7, "PROD", []PortRule{{Name: "web", Main: true, Active: true,
					Port: 8080, Protocol: "http", RemotePort: 20001, HostPort: 31000}})
			}},
		{"registry token", ProcGetRegistryToken, fixture(t, "get_registry_token.args.json"), nil, 10 * time.Second,
			func(c *Client) error { _, err := c.GetRegistryToken(context.Background(), 42); return err }},
		{"expose port", ProcExposePort, fixture(t, "expose_port.args.json"), map[string]any{}, 10 * time.Second,
			func(c *Client) error { _, err := c.ExposePort(context.Background(), 20001, "tcp"); return err }},
		{"close port", ProcClosePort, fixture(t, "expose_port.args.json"), map[string]any{}, 10 * time.Second,
			func(c *Client) error { return c.ClosePort(context.Background(), 20001, "tcp") }},
		{"subscription match", ProcSubscriptionMatch, []byte(`["reswarm.logs.serial-1.prod_7_demo"]`), nil, 10 * time.Second,
			func(c *Client) error {
				_, err := c.SubscriptionMatch(context.Background(), "reswarm.logs.serial-1.prod_7_demo")
				return err
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeCaller{answers: map[string]wamp.Result{
				ProcReadDeviceMetadata:    {Args: []any{map[string]any{}}},
				ProcCheckPrivilege:        {Args: []any{true}},
				ProcGetRequestedAppStates: {Args: []any{[]any{}}},
				ProcExposePort:            {Args: []any{map[string]any{"remote_port": uint64(20001)}}},
			}}
			if err := tc.call(testClient(f)); err != nil {
				t.Fatal(err)
			}
			got := f.last(t)
			if got.procedure != tc.procedure {
				t.Fatalf("procedure = %s, want %s", got.procedure, tc.procedure)
			}
			sameJSON(t, got.args, tc.fixture)
			if (tc.kwargs == nil) != (got.kwargs == nil) || len(got.kwargs) != 0 {
				t.Fatalf("kwargs = %#v, want %#v", got.kwargs, tc.kwargs)
			}
			if !got.hasDeadline || got.deadline > tc.maxWait || got.deadline < tc.maxWait-time.Second {
				t.Fatalf("deadline = %v (set %v), want ≈%v", got.deadline, got.hasDeadline, tc.maxWait)
			}
		})
	}
}

func TestSwarmKeyChangeReachesPayloads(t *testing.T) {
	f := &fakeCaller{answers: map[string]wamp.Result{ProcCheckPrivilege: {Args: []any{false}}}}
	c := testClient(f)
	c.SetSwarmKey(9)
	if _, err := c.CheckPrivilege(context.Background(), 1, "READ"); err != nil {
		t.Fatal(err)
	}
	if sk := f.last(t).args[0].(map[string]any)["swarm_key"]; sk != uint64(9) {
		t.Fatalf("swarm_key = %#v", sk)
	}
}

// Answers decode the same whatever the serializer made of the numbers.
func TestAnswersDecodeInEveryEncoding(t *testing.T) {
	for enc, args := range encodings(t, fixture(t, "read_device_metadata.result.json")) {
		t.Run("metadata/"+enc, func(t *testing.T) {
			c := testClient(&fakeCaller{answers: map[string]wamp.Result{ProcReadDeviceMetadata: {Args: args}}})
			md, err := c.ReadDeviceMetadata(context.Background())
			want := DeviceMetadata{DeviceName: "dev-1", SwarmName: "my swarm", OwnerName: "alice", SwarmKey: 3}
			if err != nil || md != want {
				t.Fatalf("metadata = %+v, %v", md, err)
			}
		})
	}
	for enc, args := range encodings(t, fixture(t, "get_requested_app_states.result.json")) {
		t.Run("requested/"+enc, func(t *testing.T) {
			c := testClient(&fakeCaller{answers: map[string]wamp.Result{ProcGetRequestedAppStates: {Args: args}}})
			recs, err := c.GetRequestedAppStates(context.Background())
			if err != nil || len(recs) != 2 {
				t.Fatalf("records = %+v, %v", recs, err)
			}
			r := recs[0]
			if r.AppKey != 7 || r.AppName != "demo" || r.Stage != "PROD" || r.CurrentState != "PRESENT" ||
				r.TargetState != "RUNNING" || r.RequestorAccountKey != 42 || r.DeviceOwnerAccountKey != 43 ||
				r.ReleaseKey != 3 || r.NewReleaseKey != 4 || !r.RequestUpdate || r.PresentVersion != "1.0.0" ||
				r.NewestVersion != "1.1.0" || r.AppCredEpoch != 2 || len(r.Ports) != 1 || r.Ports[0].HostPort != 31000 ||
				r.Ports[0].Port != 8080 || r.Environment["GREETING"] == nil || r.DockerCompose != nil {
				t.Fatalf("record 0 = %+v", r)
			}
			if recs[1].DockerCompose["services"] == nil || recs[1].Ports == nil {
				t.Fatalf("record 1 = %+v", recs[1])
			}
		})
	}
	for enc, args := range encodings(t, fixture(t, "expose_port.result.json")) {
		t.Run("expose/"+enc, func(t *testing.T) {
			c := testClient(&fakeCaller{answers: map[string]wamp.Result{ProcExposePort: {Args: args}}})
			if p, err := c.ExposePort(context.Background(), 20001, "tcp"); err != nil || p != 20001 {
				t.Fatalf("remote port = %d, %v", p, err)
			}
		})
	}
	for enc, args := range encodings(t, fixture(t, "update_device_status.result.json")) {
		t.Run("status/"+enc, func(t *testing.T) {
			c := testClient(&fakeCaller{answers: map[string]wamp.Result{ProcUpdateDeviceStatus: {Args: args}}})
			ans, err := c.UpdateDeviceStatus(context.Background(), "CONNECTED", 1, nil, false)
			if err != nil || ans.ReswarmBaseURL != "https://studio.ironflock.com" {
				t.Fatalf("answer = %+v, %v", ans, err)
			}
		})
	}
}

func TestRequestedStatesStrict(t *testing.T) {
	cases := []struct {
		name    string
		args    []any
		wantErr bool
		wantLen int
	}{
		{"empty list is authoritative", []any{[]any{}}, false, 0},
		{"no args", nil, true, 0},
		{"null", []any{nil}, true, 0},
		{"not a list", []any{map[string]any{}}, true, 0},
		{"record not a dict", []any{[]any{"x"}}, true, 0},
		{"wrong field type", []any{[]any{map[string]any{"app_key": "seven"}}}, true, 0},
		{"negative key", []any{[]any{map[string]any{"app_key": int64(-1)}}}, true, 0},
		{"one good record", []any{[]any{map[string]any{"app_key": uint64(1), "stage": "PROD"}}}, false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testClient(&fakeCaller{answers: map[string]wamp.Result{ProcGetRequestedAppStates: {Args: tc.args}}})
			recs, err := c.GetRequestedAppStates(context.Background())
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error, records %+v", recs)
				}
				return
			}
			if err != nil || recs == nil || len(recs) != tc.wantLen {
				t.Fatalf("records = %#v, %v", recs, err)
			}
		})
	}
}

func TestAnswerErrors(t *testing.T) {
	cases := []struct {
		name string
		res  wamp.Result
		call func(c *Client) error
	}{
		{"privilege not bool", wamp.Result{Args: []any{"yes"}}, func(c *Client) error {
			_, err := c.CheckPrivilege(context.Background(), 1, "READ")
			return err
		}},
		{"privilege no args", wamp.Result{}, func(c *Client) error {
			_, err := c.CheckPrivilege(context.Background(), 1, "READ")
			return err
		}},
		{"metadata not dict", wamp.Result{Args: []any{"x"}}, func(c *Client) error {
			_, err := c.ReadDeviceMetadata(context.Background())
			return err
		}},
		{"metadata swarm_key text", wamp.Result{Args: []any{map[string]any{"swarm_key": "x"}}}, func(c *Client) error {
			_, err := c.ReadDeviceMetadata(context.Background())
			return err
		}},
		{"cred key empty", wamp.Result{Args: []any{""}}, func(c *Client) error {
			_, err := c.GetAppCredKey(context.Background())
			return err
		}},
		{"registry token not string", wamp.Result{Args: []any{uint64(1)}}, func(c *Client) error {
			_, err := c.GetRegistryToken(context.Background(), 1)
			return err
		}},
		{"expose without port", wamp.Result{Args: []any{map[string]any{}}}, func(c *Client) error {
			_, err := c.ExposePort(context.Background(), 1, "tcp")
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeCaller{answers: map[string]wamp.Result{}}
			for _, p := range []string{ProcCheckPrivilege, ProcReadDeviceMetadata, ProcGetAppCredKey, ProcGetRegistryToken, ProcExposePort} {
				f.answers[p] = tc.res
			}
			if err := tc.call(testClient(f)); err == nil {
				t.Fatal("no error")
			}
		})
	}
	// A registry token answer without args is an empty token, as in the reference.
	c := testClient(&fakeCaller{answers: map[string]wamp.Result{ProcGetRegistryToken: {}}})
	if tok, err := c.GetRegistryToken(context.Background(), 1); err != nil || tok != "" {
		t.Fatalf("token = %q, %v", tok, err)
	}
}

func TestExposePortDuplicateIsSuccess(t *testing.T) {
	dup := &wamp.RemoteError{Procedure: ProcExposePort, URI: "wamp.error.runtime_error",
		Args: []any{"Duplicate value: remote port 20005 is already exposed"}}
	f := &fakeCaller{errs: map[string]error{ProcExposePort: dup}}
	if p, err := testClient(f).ExposePort(context.Background(), 20005, "tcp"); err != nil || p != 20005 {
		t.Fatalf("duplicate: %d, %v", p, err)
	}
	f = &fakeCaller{errs: map[string]error{ProcExposePort: errdefs.Unavailable("down")}}
	if _, err := testClient(f).ExposePort(context.Background(), 20005, "tcp"); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("other error: %v", err)
	}
}
