package wamp

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	nx "github.com/gammazero/nexus/v3/wamp"
	"github.com/rs/zerolog"

	"reagent/src/config"
	"reagent/src/errdefs"
)

// fakeBackend answers check_privilege from a table; the rest is inert.
type fakeBackend struct {
	mu      sync.Mutex
	allowed map[uint64]map[Privilege]bool
	err     error
	checks  []privKey
}

func (f *fakeBackend) AddTestament(context.Context, uint64) error { return nil }
func (f *fakeBackend) ReadDeviceMetadata(context.Context) (DeviceMetadata, error) {
	return DeviceMetadata{}, nil
}
func (f *fakeBackend) GetAppCredKey(context.Context) (string, error) { return "k", nil }
func (f *fakeBackend) UpdateDeviceStatus(context.Context, DeviceStatus) (string, error) {
	return "", nil
}
func (f *fakeBackend) UpdateDeviceArchitecture(context.Context) error { return nil }
func (f *fakeBackend) SetSwarmKey(int64)                              {}
func (f *fakeBackend) CheckPrivilege(_ context.Context, account uint64, p Privilege) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks = append(f.checks, privKey{account, p})
	if f.err != nil {
		return false, f.err
	}
	return f.allowed[account][p], nil
}

func (f *fakeBackend) checked() []privKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]privKey(nil), f.checks...)
}

func testSession(t *testing.T, be Backend, mod func(*Options)) *Session {
	t.Helper()
	opts := Options{
		Flock:   &config.Flock{SerialNumber: "serial-1", SwarmKey: 1, DeviceKey: 2, DeviceEndpointURL: "ws://127.0.0.1:1/ws"},
		Backend: be,
		Log:     zerolog.Nop(),
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// invoke runs a registered procedure's nexus handler as the router would.
func invoke(t *testing.T, s *Session, name string, caller any, args nx.List, kwargs nx.Dict) (nx.URI, nx.List) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	l := &link{ctx: ctx}
	details := nx.Dict{}
	if caller != nil {
		details["caller_authid"] = caller
	}
	res := s.invocationHandler(l, name)(ctx, &nx.Invocation{Arguments: args, ArgumentsKw: kwargs, Details: details})
	return res.Err, res.Args
}

func TestAuthorization(t *testing.T) {
	be := &fakeBackend{allowed: map[uint64]map[Privilege]bool{
		42: {Read: true},
		7:  {Maintain: true},
	}}
	s := testSession(t, be, func(o *Options) { o.PrivilegeCacheTTL = -1 })
	var gotAccount uint64
	ok := func(_ context.Context, c *Call) (Result, error) {
		gotAccount = c.Account
		return Result{Args: []any{"done"}}, nil
	}
	s.Register("read_thing", Read, ok)
	s.Register("maintain_thing", Maintain, ok)
	s.Register("public_thing", Public, ok)
	s.RegisterDynamic("dyn_thing", func(_ context.Context, c *Call) (Privilege, error) {
		if c.Kwargs["install"] == true {
			return Install, nil
		}
		return Read, nil
	}, ok)

	cases := []struct {
		name        string
		proc        string
		caller      any
		kwargs      nx.Dict
		wantURI     nx.URI // "" = success
		wantAccount uint64
		wantChecks  []privKey
	}{
		{"public for anyone", "public_thing", nil, nil, "", 0, nil},
		{"system trusted", "maintain_thing", "system", nil, "", 0, nil},
		{"system delegates uint", "read_thing", "system", nx.Dict{"requestor_account_key": uint64(42)}, "", 42, []privKey{{42, Read}}},
		{"system delegates float", "read_thing", "system", nx.Dict{"requestor_account_key": 42.0}, "", 42, []privKey{{42, Read}}},
		{"system delegates string", "read_thing", "system", nx.Dict{"requestor_account_key": "42"}, "", 42, []privKey{{42, Read}}},
		{"system delegates to denied", "maintain_thing", "system", nx.Dict{"requestor_account_key": int64(42)}, uriNotAuthorized, 42, []privKey{{42, Maintain}}},
		{"system delegation null", "maintain_thing", "system", nx.Dict{"requestor_account_key": nil}, "", 0, nil},
		{"system delegation zero", "maintain_thing", "system", nx.Dict{"requestor_account_key": uint64(0)}, "", 0, nil},
		{"system delegation invalid", "read_thing", "system", nx.Dict{"requestor_account_key": "x"}, uriInvalidArgument, 0, nil},
		{"system delegation negative", "read_thing", "system", nx.Dict{"requestor_account_key": int64(-3)}, uriInvalidArgument, 0, nil},
		{"user allowed", "read_thing", "42", nil, "", 42, []privKey{{42, Read}}},
		{"user denied", "maintain_thing", "42", nil, uriNotAuthorized, 0, []privKey{{42, Maintain}}},
		{"user delegation ignored", "maintain_thing", "42", nx.Dict{"requestor_account_key": uint64(7)}, uriNotAuthorized, 0, []privKey{{42, Maintain}}},
		{"undisclosed caller", "read_thing", nil, nil, uriNotAuthorized, 0, nil},
		{"device authid", "read_thing", "1-2", nil, uriNotAuthorized, 0, nil},
		{"non-string caller", "read_thing", uint64(42), nil, uriNotAuthorized, 0, nil},
		{"huge account", "read_thing", "99999999999999999999", nil, uriNotAuthorized, 0, nil},
		{"dynamic read", "dyn_thing", "42", nil, "", 42, []privKey{{42, Read}}},
		{"dynamic install denied", "dyn_thing", "42", nx.Dict{"install": true}, uriNotAuthorized, 0, []privKey{{42, Install}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(be.checked())
			gotAccount = 0
			uri, args := invoke(t, s, tc.proc, tc.caller, nil, tc.kwargs)
			if uri != tc.wantURI {
				t.Fatalf("uri = %q (args %v), want %q", uri, args, tc.wantURI)
			}
			if tc.wantURI == "" && gotAccount != tc.wantAccount {
				t.Fatalf("account = %d, want %d", gotAccount, tc.wantAccount)
			}
			if tc.wantURI != "" {
				assertErrorShape(t, args)
			}
			checks := be.checked()[before:]
			if len(checks) != len(tc.wantChecks) {
				t.Fatalf("checks = %v, want %v", checks, tc.wantChecks)
			}
			for i := range checks {
				if checks[i] != tc.wantChecks[i] {
					t.Fatalf("checks = %v, want %v", checks, tc.wantChecks)
				}
			}
		})
	}
}

func assertErrorShape(t *testing.T, args nx.List) {
	t.Helper()
	if len(args) != 1 {
		t.Fatalf("error args = %v, want [{error: text}]", args)
	}
	d, ok := args[0].(map[string]any)
	if !ok || len(d) != 1 {
		t.Fatalf("error args = %#v, want [{error: text}]", args)
	}
	if s, ok := d["error"].(string); !ok || s == "" {
		t.Fatalf("error args = %#v, want a non-empty text", args)
	}
}

func TestPrivilegeCheckFailureIsNotADenialButRefuses(t *testing.T) {
	be := &fakeBackend{err: errors.New("backend down")}
	s := testSession(t, be, nil)
	ran := false
	s.Register("read_thing", Read, func(context.Context, *Call) (Result, error) { ran = true; return Result{}, nil })
	uri, args := invoke(t, s, "read_thing", "42", nil, nil)
	if uri != uriCanceled || ran {
		t.Fatalf("uri = %q, ran = %v", uri, ran)
	}
	assertErrorShape(t, args)
	if got := args[0].(map[string]any)["error"]; got != "could not verify privileges: backend down" {
		t.Fatalf("text = %q", got)
	}
}

func TestPrivilegeCache(t *testing.T) {
	now := time.Unix(1000, 0)
	be := &fakeBackend{allowed: map[uint64]map[Privilege]bool{42: {Read: true}}}
	s := testSession(t, be, func(o *Options) {
		o.PrivilegeCacheTTL = 10 * time.Second
		o.Now = func() time.Time { return now }
	})
	s.Register("read_thing", Read, func(context.Context, *Call) (Result, error) { return Result{}, nil })
	for i := 0; i < 3; i++ {
		if uri, _ := invoke(t, s, "read_thing", "42", nil, nil); uri != "" {
			t.Fatal(uri)
		}
	}
	if n := len(be.checked()); n != 1 {
		t.Fatalf("%d checks within the TTL, want 1", n)
	}
	now = now.Add(11 * time.Second)
	invoke(t, s, "read_thing", "42", nil, nil)
	if n := len(be.checked()); n != 2 {
		t.Fatalf("%d checks after the TTL, want 2", n)
	}
}

func TestHandlerErrorsAndPanics(t *testing.T) {
	s := testSession(t, &fakeBackend{}, nil)
	s.Register("bad_input", Public, func(context.Context, *Call) (Result, error) {
		return Result{}, errdefs.InvalidArgument("first param should be a dict")
	})
	s.Register("not_found", Public, func(context.Context, *Call) (Result, error) {
		return Result{}, errdefs.NotFound("no such app")
	})
	s.Register("denied", Public, func(context.Context, *Call) (Result, error) {
		return Result{}, errdefs.NotAuthorized("no")
	})
	s.Register("panics", Public, func(_ context.Context, c *Call) (Result, error) {
		_ = c.Args[3] // index out of range
		return Result{}, nil
	})
	s.Register("nil_map", Public, func(context.Context, *Call) (Result, error) {
		var m map[string]int
		m["x"] = 1
		return Result{}, nil
	})
	s.Register("hello", Public, func(_ context.Context, c *Call) (Result, error) {
		return Result{Args: []any{"hi"}, Kwargs: map[string]any{"caller": c.Caller}}, nil
	})
	cases := []struct {
		proc, uri, text string
	}{
		{"bad_input", uriInvalidArgument, "first param should be a dict"},
		{"not_found", uriCanceled, "no such app"},
		{"denied", uriNotAuthorized, "no"},
		{"panics", uriCanceled, "internal error in panics"},
		{"nil_map", uriCanceled, "internal error in nil_map"},
		{"missing", uriCanceled, "procedure missing is no longer available"},
	}
	for _, tc := range cases {
		t.Run(tc.proc, func(t *testing.T) {
			uri, args := invoke(t, s, tc.proc, "system", nil, nil)
			if string(uri) != tc.uri {
				t.Fatalf("uri = %q, want %q", uri, tc.uri)
			}
			assertErrorShape(t, args)
			if got := args[0].(map[string]any)["error"]; got != tc.text {
				t.Fatalf("text = %q, want %q", got, tc.text)
			}
		})
	}
	// After the panics the session still serves.
	uri, args := invoke(t, s, "hello", "system", nil, nil)
	if uri != "" || len(args) != 1 || args[0] != "hi" {
		t.Fatalf("hello after panics: %q %v", uri, args)
	}
	if uri, args := invoke(t, s, procEstablished, nil, nil, nil); uri != "" || args[0] != "Hello :-)" {
		t.Fatalf("wamp_connection_established: %q %v", uri, args)
	}
}

func TestProceduresTable(t *testing.T) {
	s := testSession(t, &fakeBackend{}, nil)
	h := func(context.Context, *Call) (Result, error) { return Result{}, nil }
	s.Register("a", Read, h)
	s.RegisterDynamic("b", func(context.Context, *Call) (Privilege, error) { return Install, nil }, h)
	got := s.Procedures()
	want := map[string]Privilege{"a": Read, "b": Dynamic, procEstablished: Public}
	if len(got) != len(want) {
		t.Fatalf("table = %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("table = %v, want %v", got, want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Register without a privilege did not panic")
		}
	}()
	s.Register("c", "", h)
}

func TestNamesDevice(t *testing.T) {
	cases := []struct {
		name   string
		args   []any
		kwargs map[string]any
		want   bool
	}{
		{"dict device_key", []any{map[string]any{"device_key": uint64(2)}}, nil, true},
		{"dict other key", []any{map[string]any{"device_key": uint64(3)}}, nil, false},
		{"dict serial", []any{map[string]any{"serial_number": "serial-1"}}, nil, true},
		{"bare key float", []any{2.0}, nil, true},
		{"bare serial", []any{"serial-1"}, nil, true},
		{"kwargs", nil, map[string]any{"device_key": "2"}, true},
		{"nothing", nil, nil, false},
		{"other serial", []any{"serial-2"}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := namesDevice(tc.args, tc.kwargs, 2, "serial-1"); got != tc.want {
				t.Fatalf("namesDevice = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestApplyMetadataSavesOnlyChanges(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/device.flock"
	raw := `{"secret":"s","swarm_key":1,"device_key":2,"serial_number":"serial-1","device_endpoint_url":"ws://127.0.0.1:1/ws",` +
		`"name":"old","swarm_name":"sw","swarm_owner_name":"me","custom_field":"kept"}`
	fl, err := config.ParseFlock([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := fl.Save(path); err != nil {
		t.Fatal(err)
	}
	s := testSession(t, &fakeBackend{}, func(o *Options) { o.Flock = fl; o.FlockPath = path })
	be := &fakeBackend{}

	changed, err := s.applyMetadata(DeviceMetadata{Name: "old", SwarmName: "sw", OwnerName: "me", SwarmKey: 1}, be)
	if err != nil || changed {
		t.Fatalf("unchanged metadata: %v %v", changed, err)
	}
	changed, err = s.applyMetadata(DeviceMetadata{Name: "new", SwarmKey: 9}, be)
	if err != nil || !changed {
		t.Fatalf("changed metadata: %v %v", changed, err)
	}
	got, err := config.LoadFlock(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "new" || got.SwarmKey != 9 || got.SwarmName != "sw" || got.Secret.Reveal() != "s" {
		t.Fatalf("saved flock = %+v", got)
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), `"custom_field": "kept"`) {
		t.Fatalf("an unknown key was lost: %s", data)
	}
	if s.AuthID() != "9-2" {
		t.Fatalf("authid after swarm change = %s", s.AuthID())
	}
	if fl.SwarmKey != 1 {
		t.Fatal("the caller's Flock was modified")
	}
	// Flock hands out the current metadata, as a copy.
	cur := s.Flock()
	if cur.Name != "new" || cur.SwarmKey != 9 || cur.SwarmName != "sw" || cur.SerialNumber != "serial-1" {
		t.Fatalf("Flock() = %+v", cur)
	}
	cur.Name = "changed by the caller"
	if s.Flock().Name != "new" {
		t.Fatal("Flock() handed out the session's own copy")
	}
}
