package devcloud

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/gammazero/nexus/v3/wamp"
)

func TestAsUint64(t *testing.T) {
	tests := []struct {
		in   any
		want uint64
		ok   bool
	}{
		{uint64(7), 7, true},
		{int64(7), 7, true},
		{int(7), 7, true},
		{float64(7), 7, true},
		{json.Number("7"), 7, true},
		{"7", 7, true},
		{" 7 ", 7, true},
		{"7.0", 7, true},
		{uint64(1<<64 - 1), 1<<64 - 1, true},
		{int64(-1), 0, false},
		{float64(7.5), 0, false},
		{float64(-1), 0, false},
		{"x", 0, false},
		{"", 0, false},
		{nil, 0, false},
		{true, 0, false},
	}
	for _, tt := range tests {
		got, ok := asUint64(tt.in)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("asUint64(%#v) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseWireJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    any
		wantErr bool
	}{
		{`5`, uint64(5), false},
		{`-5`, int64(-5), false},
		{`5.5`, 5.5, false},
		{`18446744073709551615`, uint64(1<<64 - 1), false},
		{`{"a":[1,{"b":-2}],"c":"x"}`, map[string]any{"a": []any{uint64(1), map[string]any{"b": int64(-2)}}, "c": "x"}, false},
		{`[1] [2]`, nil, true},
		{`{`, nil, true},
	}
	for _, tt := range tests {
		got, err := ParseWireJSON([]byte(tt.in))
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseWireJSON(%s) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseUser(t *testing.T) {
	tests := []struct {
		in      string
		want    User
		wantErr bool
	}{
		{"100:pw:READ,operate", User{AuthID: "100", Secret: "pw", Privileges: []string{"READ", "operate"}}, false},
		{"100:pw", User{AuthID: "100", Secret: "pw"}, false},
		{"100:p:w:READ", User{}, true}, // the secret cannot hold ':' before privileges that are not privileges
		{"system:other", User{AuthID: "system", Secret: "other"}, false},
		{"alice:pw", User{}, true},
		{"100:", User{}, true},
		{"100", User{}, true},
		{"100:pw:FLY", User{}, true},
	}
	for _, tt := range tests {
		got, err := ParseUser(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("ParseUser(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

func TestLoadUsersRejectsBadFiles(t *testing.T) {
	for name, content := range map[string]string{
		"not json":          `{`,
		"unknown key":       `[{"authid":"1","secret":"s","privs":["READ"]}]`,
		"bad authid":        `[{"authid":"bob","secret":"s"}]`,
		"no secret":         `[{"authid":"1"}]`,
		"unknown privilege": `[{"authid":"1","secret":"s","privileges":["ROOT"]}]`,
	} {
		t.Run(name, func(t *testing.T) {
			path := t.TempDir() + "/users.json"
			if err := writeFile(path, content); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadUsers(path); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// FuzzBackendPayload sends arbitrary JSON as the positional argument of
// every backend procedure: the answer is a result or a WAMP error, never a
// recovered panic.
func FuzzBackendPayload(f *testing.F) {
	for _, seed := range []string{
		`[]`, `[null]`, `[1]`, `["x"]`, `[[]]`, `[{}]`,
		`[{"device_key":1000}]`, `[{"device_key":"1000","status":"CONNECTED","stats":{"cpu_usage":1.5}}]`,
		`[{"device_key":1000,"app_key":1,"stage":"PROD","state":"RUNNING"}]`,
		`[{"device_key":1000,"app_key":1,"stage":"PROD","ports":[{"port":80}]}]`,
		`[{"privilege":"READ","requestor_account_key":"100"}]`, `[{"callerID":-1}]`,
		`[{"device_key":1000,"port":99999999999,"protocol":"udp"}]`, `[{"device_key":1000,"port":-5}]`,
		`["serial", {"app_key": 1}]`,
	} {
		f.Add(seed)
	}
	c, err := Start(context.Background(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	if _, _, err := c.NewDevice(f.TempDir()); err != nil {
		f.Fatal(err)
	}
	procs := map[string]handler{
		ProcReadDeviceMetadata: c.readDeviceMetadata, ProcGetAppCredKey: c.getAppCredKey,
		ProcUpdateDeviceStatus: c.updateDeviceStatus, ProcUpdateDeviceArchitecture: c.updateDeviceArchitecture,
		ProcCheckPrivilege: c.checkPrivilege, ProcGetRequestedAppStates: c.getRequestedAppStates,
		ProcUpdateAppOnDevice: c.updateAppOnDevice, ProcGetRegistryToken: c.getRegistryToken,
		ProcExposePort: c.exposePort, ProcClosePort: c.closePort,
		ProcStudioDevices: c.studioDevices, ProcStudioApps: c.studioApps, ProcStudioSetRequested: c.studioSetRequested,
	}
	f.Fuzz(func(t *testing.T, payload string) {
		v, err := ParseWireJSON([]byte(payload))
		args, ok := v.([]any)
		if err != nil || !ok {
			return
		}
		for name, h := range procs {
			res := c.serve(name, h)(context.Background(), &wamp.Invocation{
				Arguments: args,
				Details:   wamp.Dict{"caller_authid": SystemAuthID, "caller_authrole": RoleSystem},
			})
			if res.Err == errURIRuntime && len(res.Args) > 0 && strings.HasPrefix(res.Args[0].(string), "internal error") {
				t.Fatalf("%s panicked on %s: %v", name, payload, res.Args)
			}
		}
	})
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
