package api

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"sync"
	"testing"

	"reagent/src/apps"
	"reagent/src/backend"
	"reagent/src/errdefs"
	"reagent/src/wamp"
)

// fakeApps records requests and answers the privilege question from a
// fixed set of installed apps.
type fakeApps struct {
	mu        sync.Mutex
	requests  []apps.Request
	installed map[apps.Key]bool
}

func (f *fakeApps) Request(_ context.Context, r apps.Request) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r)
	return nil
}

func (f *fakeApps) InstallPrivilege(_ context.Context, k apps.Key) bool { return !f.installed[k] }

func appsRecorder(t *testing.T, fa *fakeApps) *recorder {
	t.Helper()
	_, reg := newTest(t, Deps{Apps: fa})
	return reg()
}

func validKwargs() map[string]any {
	return map[string]any{
		"app_key": uint64(42), "app_name": "demo", "stage": "PROD", "target_state": "RUNNING",
		"current_state": "REMOVED", "requestor_account_key": uint64(7), "device_owner_account_key": "8",
		"release_key": "3", "new_release_key": uint64(4), "version": "1.0.0", "present_version": "",
		"newest_version": "1.0.0", "request_update": false, "cancel_transition": true,
		"environment":          map[string]any{"GREETING": map[string]any{"value": "hi"}},
		"environment_template": map[string]any{},
		"ports":                []any{map[string]any{"name": "web", "port": float64(80), "protocol": "http", "active": true}},
		"docker_credentials":   map[string]any{"ghcr.io": map[string]any{"username": "u", "password": "p"}},
		"instance_key":         "5", "app_cred_epoch": float64(2), "device_to_app_key": "ignored",
	}
}

func TestDecodeAppStateRequest(t *testing.T) {
	r, err := DecodeAppStateRequest(validKwargs())
	if err != nil {
		t.Fatal(err)
	}
	want := apps.Request{
		Key: apps.Key{AppKey: 42, Stage: "PROD"}, AppName: "demo", TargetState: "RUNNING", CurrentState: "REMOVED",
		RequestorAccountKey: 7, DeviceOwnerAccountKey: 8, ReleaseKey: 3, NewReleaseKey: 4, Version: "1.0.0",
		NewestVersion: "1.0.0", CancelTransition: true,
		Environment:         map[string]any{"GREETING": map[string]any{"value": "hi"}},
		EnvironmentTemplate: map[string]any{},
		Ports:               []backend.PortRule{{Name: "web", Port: 80, Protocol: "http", Active: true}},
		DockerCredentials:   map[string]apps.Credential{"ghcr.io": {Username: "u", Password: "p"}},
		InstanceKey:         5, AppCredEpoch: 2,
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", r, want)
	}

	fallback := validKwargs()
	delete(fallback, "target_state")
	delete(fallback, "current_state")
	delete(fallback, "requestor_account_key")
	fallback["manually_requested_state"] = "PRESENT"
	fallback["state"] = "RUNNING"
	fallback["account_id"] = "9"
	fallback["app_key"] = float64(42) // every numeric encoding of a whole number
	r, err = DecodeAppStateRequest(fallback)
	if err != nil || r.TargetState != "PRESENT" || r.CurrentState != "RUNNING" || r.RequestorAccountKey != 9 || r.AppKey != 42 {
		t.Fatalf("fallbacks: %+v %v", r, err)
	}
	for _, v := range []any{int64(42), int(42), json.Number("42"), uint32(42)} {
		kw := validKwargs()
		kw["app_key"] = v
		if r, err := DecodeAppStateRequest(kw); err != nil || r.AppKey != 42 {
			t.Errorf("app_key %T: %v %v", v, r.AppKey, err)
		}
	}
}

func TestDecodeAppStateRequestErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(kw map[string]any)
		text string
	}{
		{"missing app_key", func(kw map[string]any) { delete(kw, "app_key") }, "missing from payload app_key"},
		{"zero app_key", func(kw map[string]any) { kw["app_key"] = uint64(0) }, "missing from payload app_key"},
		{"string app_key", func(kw map[string]any) { kw["app_key"] = "42" }, "failed to parse app_key"},
		{"negative app_key", func(kw map[string]any) { kw["app_key"] = int64(-1) }, "failed to parse app_key"},
		{"fractional app_key", func(kw map[string]any) { kw["app_key"] = 4.5 }, "failed to parse app_key"},
		{"NaN app_key", func(kw map[string]any) { kw["app_key"] = math.NaN() }, "failed to parse app_key"},
		{"missing name", func(kw map[string]any) { delete(kw, "app_name") }, "missing from payload appName"},
		{"name not a string", func(kw map[string]any) { kw["app_name"] = 5 }, "failed to parse appName"},
		{"name with a path", func(kw map[string]any) { kw["app_name"] = "../../etc" }, `invalid app name "../../etc": want 1-100 letters, digits, '_' or '-', starting with a letter or digit`},
		{"missing stage", func(kw map[string]any) { delete(kw, "stage") }, "missing from payload stage"},
		{"bad stage", func(kw map[string]any) { kw["stage"] = "TEST" }, `invalid stage "TEST": must be DEV or PROD`},
		{"stage not a string", func(kw map[string]any) { kw["stage"] = true }, "failed to parse stage"},
		{"missing target", func(kw map[string]any) { delete(kw, "target_state") }, "missing from payload target_state"},
		{"unknown target", func(kw map[string]any) { kw["target_state"] = "FLYING" }, `invalid target_state "FLYING"`},
		{"target not a string", func(kw map[string]any) { kw["target_state"] = 1 }, "failed to parse target_state"},
		{"unknown current", func(kw map[string]any) { kw["current_state"] = "X" }, `invalid current_state "X"`},
		{"bad requestor", func(kw map[string]any) { kw["requestor_account_key"] = "abc" }, "failed to parse requestor_account_key"},
		{"bad owner", func(kw map[string]any) { kw["device_owner_account_key"] = []any{} }, "failed to parse device_owner_account_key"},
		{"new_release_key string", func(kw map[string]any) { kw["new_release_key"] = "4" }, "failed to parse new_release_key"},
		{"request_update string", func(kw map[string]any) { kw["request_update"] = "true" }, "failed to parse request_update"},
		{"cancel_transition number", func(kw map[string]any) { kw["cancel_transition"] = 1 }, "failed to parse cancel_transition"},
		{"environment list", func(kw map[string]any) { kw["environment"] = []any{} }, "failed to parse environment"},
		{"ports dict", func(kw map[string]any) { kw["ports"] = map[string]any{} }, "failed to parse ports"},
		{"port rule bad port", func(kw map[string]any) { kw["ports"] = []any{map[string]any{"port": "80"}} }, "failed to parse ports"},
		{"credentials without password", func(kw map[string]any) {
			kw["docker_credentials"] = map[string]any{"r": map[string]any{"username": "u"}}
		}, "failed to parse docker_credentials"},
		{"version number", func(kw map[string]any) { kw["newest_version"] = 1.1 }, "failed to parse newest_version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kw := validKwargs()
			tc.edit(kw)
			_, err := DecodeAppStateRequest(kw)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || err.Error() != tc.text {
				t.Fatalf("err %v, want invalid argument %q", err, tc.text)
			}
		})
	}
}

func TestRequestAppStateHandler(t *testing.T) {
	fa := &fakeApps{installed: map[apps.Key]bool{{AppKey: 42, Stage: "PROD"}: true}}
	r := appsRecorder(t, fa)
	p, ok := r.procs[ProcRequestAppState]
	if !ok || p.dyn == nil {
		t.Fatal("request_app_state is not registered with a dynamic privilege")
	}
	res, err := r.call(t, ProcRequestAppState, nil, validKwargs())
	if err != nil || len(res.Args) != 0 || len(res.Kwargs) != 0 {
		t.Fatalf("result %+v %v, want empty", res, err)
	}
	if len(fa.requests) != 1 || fa.requests[0].AppKey != 42 {
		t.Fatalf("requests %+v", fa.requests)
	}
	if _, err := r.call(t, ProcRequestAppState, []any{"positional args are ignored"}, map[string]any{"app_key": "x"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad call: %v", err)
	}
	if len(fa.requests) != 1 {
		t.Fatal("a bad call reached the reconciler")
	}

	priv := func(kw map[string]any) wamp.Privilege {
		t.Helper()
		got, err := p.dyn(context.Background(), &wamp.Call{Kwargs: kw})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	installed := validKwargs()
	installed["current_state"] = "REMOVED" // the caller's view does not count
	if got := priv(installed); got != wamp.Operate {
		t.Fatalf("installed app: %s", got)
	}
	unknown := validKwargs()
	unknown["app_key"] = uint64(43)
	unknown["current_state"] = "RUNNING"
	if got := priv(unknown); got != wamp.Install {
		t.Fatalf("unknown app: %s", got)
	}
	if got := priv(map[string]any{"app_key": "junk"}); got != wamp.Install {
		t.Fatalf("broken input: %s", got)
	}
}

// The decoder never panics and accepts only what validates.
func FuzzDecodeAppStateRequest(f *testing.F) {
	seed, _ := json.Marshal(validKwargs())
	f.Add(seed)
	f.Add([]byte(`{"app_key":1,"app_name":"a","stage":"DEV","manually_requested_state":"BUILT"}`))
	f.Add([]byte(`{"app_key":-1,"ports":[1,2],"docker_credentials":{"":{}}}`))
	f.Add([]byte(`{"app_key":1e30,"app_name":"x","stage":"PROD","target_state":"STARTING","instance_key":"NaN"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var kw map[string]any
		if json.Unmarshal(data, &kw) != nil {
			return
		}
		r, err := DecodeAppStateRequest(kw)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error of another class: %v", err)
			}
			return
		}
		if verr := r.Validate(); verr != nil {
			t.Fatalf("decoded an invalid request: %v", verr)
		}
	})
}
