package store

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"reagent/src/errdefs"
)

func fullRequested() Requested {
	return Requested{
		Key:                   Key{AppKey: 1<<63 + 5, Stage: "PROD"}, // beyond int64: stored bit for bit
		AppName:               "MyApp",
		TargetState:           "RUNNING",
		Version:               "1.2.0",
		PresentVersion:        "1.1.0",
		NewestVersion:         "1.3.0",
		ReleaseKey:            11,
		NewReleaseKey:         12,
		RequestUpdate:         true,
		RequestorAccountKey:   21,
		DeviceOwnerAccountKey: 22,
		Environment:           json.RawMessage(`{"A":{"value":"1"}}`),
		EnvironmentTemplate:   json.RawMessage(`{"A":{"defaultValue":"0"}}`),
		Ports:                 json.RawMessage(`[{"port":80,"protocol":"http","main":true}]`),
		DockerCompose:         json.RawMessage(`{"services":{"web":{"image":"x"}}}`),
		NewDockerCompose:      json.RawMessage(`{"services":{"web":{"image":"y"}}}`),
		DockerCredentials:     json.RawMessage(`{"registry.example":{"username":"u","password":"p"}}`),
		AppCredEpoch:          3,
		InstanceKey:           1<<64 - 1,
	}
}

func TestRequestedRoundTrip(t *testing.T) {
	clk := newClock()
	s := openOpts(t, Options{Now: clk.Now})
	ctx := ctxT(t)
	in := fullRequested()

	got, err := s.PutRequested(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.Generation, want.CreatedAt, want.UpdatedAt = 1, clk.Now(), clk.Now()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PutRequested returned\n%+v\nwant\n%+v", got, want)
	}
	read, err := s.GetRequested(ctx, in.Key)
	if err != nil || !reflect.DeepEqual(read, want) {
		t.Fatalf("GetRequested = %+v, %v", read, err)
	}

	clk.Advance(time.Minute)
	in2 := in
	in2.TargetState, in2.Environment, in2.RequestUpdate, in2.DockerCredentials = "PRESENT", nil, false, json.RawMessage(" null ")
	in2.CreatedAt = time.Unix(1, 0) // ignored
	got2, err := s.PutRequested(ctx, in2)
	if err != nil {
		t.Fatal(err)
	}
	if got2.Generation != 2 || !got2.CreatedAt.Equal(want.CreatedAt) || !got2.UpdatedAt.Equal(clk.Now()) {
		t.Fatalf("second put: generation %d created %v updated %v", got2.Generation, got2.CreatedAt, got2.UpdatedAt)
	}
	if got2.TargetState != "PRESENT" || got2.Environment != nil || got2.DockerCredentials != nil || got2.RequestUpdate {
		t.Fatalf("second put did not replace fields: %+v", got2)
	}
}

func TestRequestedGenerationNeverRepeats(t *testing.T) {
	s := openTest(t)
	ctx := ctxT(t)
	k := Key{AppKey: 3, Stage: "DEV"}
	other := Key{AppKey: 3, Stage: "PROD"}
	put := func(k Key) uint64 {
		t.Helper()
		r, err := s.PutRequested(ctx, Requested{Key: k, AppName: "a", TargetState: "RUNNING"})
		if err != nil {
			t.Fatal(err)
		}
		return r.Generation
	}
	var gens []uint64
	gens = append(gens, put(k), put(k), put(other), put(k))
	if err := s.DeleteRequested(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRequested(ctx, k); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, err := s.GetRequested(ctx, k); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("after delete: %v, want not found", err)
	}
	gens = append(gens, put(k))
	if want := []uint64{1, 2, 1, 3, 4}; !reflect.DeepEqual(gens, want) {
		t.Fatalf("generations %v, want %v (per key, continuing after delete)", gens, want)
	}
}

func TestListRequestedIsOrderedByKey(t *testing.T) {
	s := openTest(t)
	ctx := ctxT(t)
	keys := []Key{{9, "PROD"}, {2, "PROD"}, {9, "DEV"}, {2, "DEV"}}
	for _, k := range keys {
		if _, err := s.PutRequested(ctx, Requested{Key: k, AppName: "a", TargetState: "PRESENT"}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.ListRequested(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []Key
	for _, r := range list {
		got = append(got, r.Key)
	}
	if want := []Key{{2, "DEV"}, {2, "PROD"}, {9, "DEV"}, {9, "PROD"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestPutRequestedValidates(t *testing.T) {
	s := openTest(t)
	ctx := ctxT(t)
	cases := []struct {
		name   string
		mutate func(*Requested)
		msg    string
	}{
		{"lower-case stage", func(r *Requested) { r.Stage = "prod" }, "stage"},
		{"zero app key", func(r *Requested) { r.AppKey = 0 }, "app key"},
		{"no name", func(r *Requested) { r.AppName = "" }, "name"},
		{"unknown state", func(r *Requested) { r.TargetState = "INHERIT" }, "INHERIT"},
		{"empty state", func(r *Requested) { r.TargetState = "" }, "state"},
		{"environment array", func(r *Requested) { r.Environment = json.RawMessage(`[1]`) }, "environment must be an object"},
		{"ports object", func(r *Requested) { r.Ports = json.RawMessage(`{}`) }, "ports must be an array"},
		{"compose string", func(r *Requested) { r.DockerCompose = json.RawMessage(`"x"`) }, "docker_compose"},
		{"broken json", func(r *Requested) { r.NewDockerCompose = json.RawMessage(`{"a":`) }, "not valid JSON"},
		{"broken credentials", func(r *Requested) {
			r.DockerCredentials = json.RawMessage(`{"r":{"password":"hunter2"`)
		}, "docker_credentials"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := fullRequested()
			c.mutate(&r)
			_, err := s.PutRequested(ctx, r)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want invalid argument mentioning %q", err, c.msg)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks a credential: %v", err)
			}
		})
	}
	if list, err := s.ListRequested(ctx); err != nil || len(list) != 0 {
		t.Fatalf("invalid puts stored rows: %v %v", list, err)
	}
}

func TestEveryKnownStateIsAccepted(t *testing.T) {
	s := openTest(t)
	ctx := ctxT(t)
	for state := range appStates {
		k := Key{AppKey: 1, Stage: "DEV"}
		if _, err := s.PutRequested(ctx, Requested{Key: k, AppName: "a", TargetState: state}); err != nil {
			t.Errorf("target %s: %v", state, err)
		}
		if _, err := s.PutActual(ctx, Actual{Key: k, AppName: "a", State: state}); err != nil {
			t.Errorf("actual %s: %v", state, err)
		}
	}
	if !appStates["STOPPED"] {
		t.Fatal("STOPPED must be a state")
	}
}
