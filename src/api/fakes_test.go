package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/gammazero/nexus/v3/transport/serialize"

	"reagent/src/config"
	"reagent/src/docker"
	"reagent/src/wamp"
)

const testSerial = "c6aa09d3-9a4e-4b2f-8f0e-bf75cdd7f149"

// registered is one procedure as the recorder saw it.
type registered struct {
	priv    wamp.Privilege
	dyn     wamp.PrivilegeFunc
	handler wamp.Handler
}

// recorder is a Registrar that keeps what was registered.
type recorder struct {
	procs map[string]registered
}

func (r *recorder) Register(name string, p wamp.Privilege, h wamp.Handler) {
	if _, dup := r.procs[name]; dup {
		panic("registered twice: " + name)
	}
	r.procs[name] = registered{priv: p, handler: h}
}

func (r *recorder) RegisterDynamic(name string, p wamp.PrivilegeFunc, h wamp.Handler) {
	if _, dup := r.procs[name]; dup {
		panic("registered twice: " + name)
	}
	r.procs[name] = registered{dyn: p, handler: h}
}

// call invokes a registered handler the way src/wamp does after the
// privilege check (caller "system").
func (r *recorder) call(t *testing.T, name string, args []any, kwargs map[string]any) (wamp.Result, error) {
	t.Helper()
	p, ok := r.procs[name]
	if !ok {
		t.Fatalf("%s is not registered", name)
	}
	return p.handler(context.Background(), &wamp.Call{Args: args, Kwargs: kwargs, Caller: "system"})
}

// fakeDocker answers from fixed data and records prune requests.
type fakeDocker struct {
	mu         sync.Mutex
	containers []map[string]any
	images     []docker.Image
	prune      docker.PruneReport
	err        error
	pruneCalls []bool
}

func (f *fakeDocker) ListContainersRaw(context.Context) ([]map[string]any, error) {
	return f.containers, f.err
}

func (f *fakeDocker) ListImages(context.Context) ([]docker.Image, error) { return f.images, f.err }

func (f *fakeDocker) PruneImages(_ context.Context, all bool) (docker.PruneReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pruneCalls = append(f.pruneCalls, all)
	return f.prune, f.err
}

func (f *fakeDocker) calls() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.pruneCalls...)
}

// newTest builds the handlers with fakes and a recorder; adjust h before
// calling reg.
func newTest(t *testing.T, d Deps) (*handlers, func() *recorder) {
	t.Helper()
	if d.Flock == nil {
		d.Flock = &config.Flock{SerialNumber: testSerial, SwarmKey: 1, DeviceKey: 2}
	}
	if d.Runner == nil {
		d.Runner = &recordingRunner{}
	}
	h, err := newHandlers(d)
	if err != nil {
		t.Fatal(err)
	}
	return h, func() *recorder {
		r := &recorder{procs: map[string]registered{}}
		h.register(r)
		return r
	}
}

// recordingRunner stands in for reboot/poweroff/systemctl.
type recordingRunner struct {
	mu    sync.Mutex
	calls [][]string
	ran   chan struct{}
}

func (r *recordingRunner) Run(_ context.Context, name string, args ...string) error {
	r.mu.Lock()
	r.calls = append(r.calls, append([]string{name}, args...))
	ran := r.ran
	r.mu.Unlock()
	if ran != nil {
		ran <- struct{}{}
	}
	return nil
}

func (r *recordingRunner) get() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.calls...)
}

// fixture is a RESULT (or event) in the reference's shape.
type fixture struct {
	Topic  string         `json:"topic,omitempty"`
	Args   []any          `json:"args"`
	Kwargs map[string]any `json:"kwargs"`
}

func loadFixture(t *testing.T, name string) fixture {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

// wire encodes v with nexus's JSON serializer — what the router receives —
// and decodes it back generically, numbers kept as json.Number.
func wire(t *testing.T, v any) any {
	t.Helper()
	b, err := (&serialize.JSONSerializer{}).SerializeDataItem(v)
	if err != nil {
		t.Fatalf("serialize %#v: %v", v, err)
	}
	return generic(t, b)
}

func generic(t *testing.T, b []byte) any {
	t.Helper()
	var out any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return out
}

// assertWire checks that a handler's Result goes out exactly as the
// fixture (empty and absent args/kwargs are the same on the wire).
func assertWire(t *testing.T, res wamp.Result, name string) {
	t.Helper()
	f := loadFixture(t, name)
	check := func(what string, got, want any, empty bool) {
		t.Helper()
		if empty {
			if g := wire(t, got); g != nil && !isEmpty(g) {
				t.Errorf("%s %s: got %s, want none", name, what, mustJSON(g))
			}
			return
		}
		if g, w := wire(t, got), normalize(t, want); !reflect.DeepEqual(g, w) {
			t.Errorf("%s %s:\n got  %s\n want %s", name, what, mustJSON(g), mustJSON(w))
		}
	}
	check("args", res.Args, f.Args, len(f.Args) == 0)
	check("kwargs", res.Kwargs, f.Kwargs, len(f.Kwargs) == 0)
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// normalize puts a fixture value through the same JSON round trip.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return generic(t, b)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}
