package logs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/store"
	"reagent/src/store/storetest"
	"reagent/src/wamp"
)

// Fakes for the unit tests of this package only; the integration tests use
// the real engine, router and store.

const testSerial = "c6aa09d3-9a4e-4b2f-8f0e-bf75cdd7f149"

// published is one Publish the fake link received.
type published struct {
	topic string
	args  []any
}

// fakeLink stands in for *wamp.Session.
type fakeLink struct {
	mu        sync.Mutex
	connected bool
	subs      map[string]wamp.EventFunc
	steps     []func(context.Context) error
	watchers  []func(bool)
	matches   map[string][]any // wamp.subscription.match answers per topic
	matchErr  error
	matchLog  []string
	// beforeAnswer, when set, runs (once) while a match is in flight.
	beforeAnswer func()
	pubs         []published
	gate         chan struct{} // non-nil: Publish waits until it is closed
	entered      chan struct{} // cap 1: a Publish is waiting at the gate
	notify       chan struct{} // cap 1: a publication arrived
}

var _ Link = (*fakeLink)(nil)
var _ Link = (*wamp.Session)(nil)
var _ Engine = (*docker.Client)(nil)

func newFakeLink() *fakeLink {
	return &fakeLink{subs: map[string]wamp.EventFunc{}, matches: map[string][]any{},
		notify: make(chan struct{}, 1), entered: make(chan struct{}, 1)}
}

func (l *fakeLink) Publish(topic string, args []any, _ map[string]any, _ bool) error {
	l.mu.Lock()
	gate := l.gate
	l.mu.Unlock()
	if gate != nil {
		select {
		case l.entered <- struct{}{}:
		default:
		}
		<-gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connected {
		return fmt.Errorf("publish %s: %w", topic, errdefs.Unavailable("not connected to the cloud"))
	}
	l.pubs = append(l.pubs, published{topic, args})
	select {
	case l.notify <- struct{}{}:
	default:
	}
	return nil
}

func (l *fakeLink) Subscribe(topic string, fn wamp.EventFunc) {
	l.mu.Lock()
	l.subs[topic] = fn
	l.mu.Unlock()
}

func (l *fakeLink) Call(_ context.Context, procedure string, args []any, _ map[string]any) (wamp.Result, error) {
	if procedure != metaMatch || len(args) != 1 {
		return wamp.Result{}, errors.New("unexpected call " + procedure)
	}
	topic, _ := args[0].(string)
	l.mu.Lock()
	hook := l.beforeAnswer
	l.beforeAnswer = nil
	l.mu.Unlock()
	if hook != nil {
		hook()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.matchLog = append(l.matchLog, topic)
	if l.matchErr != nil {
		return wamp.Result{}, l.matchErr
	}
	ids := l.matches[topic]
	if ids == nil {
		return wamp.Result{Args: []any{nil}}, nil
	}
	return wamp.Result{Args: []any{ids}}, nil
}

func (l *fakeLink) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connected
}

func (l *fakeLink) OnStateChange(fn func(bool)) {
	l.mu.Lock()
	l.watchers = append(l.watchers, fn)
	l.mu.Unlock()
}

func (l *fakeLink) OnConnect(_ string, step func(context.Context) error) {
	l.mu.Lock()
	l.steps = append(l.steps, step)
	l.mu.Unlock()
}

// connect runs the on-connect steps, then reports the link up, as the
// session does.
func (l *fakeLink) connect(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	steps := append([]func(context.Context) error{}, l.steps...)
	l.mu.Unlock()
	for _, s := range steps {
		if err := s(context.Background()); err != nil {
			t.Errorf("on-connect step: %v", err)
		}
	}
	l.setConnected(true)
}

func (l *fakeLink) setConnected(up bool) {
	l.mu.Lock()
	l.connected = up
	ws := append([]func(bool){}, l.watchers...)
	l.mu.Unlock()
	for _, w := range ws {
		w(up)
	}
}

// event delivers a meta event the way the session does.
func (l *fakeLink) event(topic string, args ...any) {
	l.mu.Lock()
	fn := l.subs[topic]
	l.mu.Unlock()
	if fn != nil {
		fn(args, nil, nil)
	}
}

func (l *fakeLink) created(id uint64, uri, match string) {
	l.event(metaOnCreate, uint64(1), map[string]any{"id": id, "uri": uri, "match": match, "created": "x"})
}

func (l *fakeLink) deleted(id uint64) { l.event(metaOnDelete, uint64(1), id) }

func (l *fakeLink) setMatch(topic string, ids ...any) {
	l.mu.Lock()
	l.matches[topic] = ids
	l.mu.Unlock()
}

func (l *fakeLink) publications(topic string) []published {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []published
	for _, p := range l.pubs {
		if topic == "" || p.topic == topic {
			out = append(out, p)
		}
	}
	return out
}

// fakeEngine stands in for the engine: containers print lines, stop, and
// honour Since as the engine does.
type fakeEngine struct {
	mu      sync.Mutex
	lines   map[string][]docker.LogEntry
	running map[string]bool
	changed chan struct{} // closed and replaced on every change
	clock   time.Time
	calls   []docker.LogsOptions
	slow    chan struct{} // non-nil: lines are delivered once it is closed
	// followSkips: texts that follow reads skip, as Docker's follower
	// does when it loses its place on a rotation.
	followSkips map[string]bool
	// floor: reads that start later deliver no line older than it, as
	// after a rotation deleted the oldest file.
	floor map[string]time.Time
}

// rotate makes the lines of id older than before unavailable to reads
// that start from now on.
func (e *fakeEngine) rotate(id string, before time.Time) {
	e.mu.Lock()
	if e.floor == nil {
		e.floor = map[string]time.Time{}
	}
	e.floor[id] = before
	e.mu.Unlock()
}

// skipWhenFollowing makes follow reads jump over texts.
func (e *fakeEngine) skipWhenFollowing(texts ...string) {
	e.mu.Lock()
	if e.followSkips == nil {
		e.followSkips = map[string]bool{}
	}
	for _, t := range texts {
		e.followSkips[t] = true
	}
	e.mu.Unlock()
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{
		lines: map[string][]docker.LogEntry{}, running: map[string]bool{},
		changed: make(chan struct{}),
	}
}

func (e *fakeEngine) changedLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

func (e *fakeEngine) start(id string) {
	e.mu.Lock()
	e.running[id] = true
	e.changedLocked()
	e.mu.Unlock()
}

func (e *fakeEngine) stop(id string) {
	e.mu.Lock()
	e.running[id] = false
	e.changedLocked()
	e.mu.Unlock()
}

// print adds lines stamped with the time they are printed, as the engine
// does, each at least a microsecond after the last.
func (e *fakeEngine) print(id, stream string, texts ...string) {
	e.printAt(id, stream, time.Now(), texts...)
}

// printAt adds lines stamped from at on (each at least a microsecond
// after the last line): output the engine stored a while ago.
func (e *fakeEngine) printAt(id, stream string, at time.Time, texts ...string) {
	e.mu.Lock()
	for _, t := range texts {
		if !at.After(e.clock) {
			at = e.clock.Add(time.Microsecond)
		}
		e.clock = at
		e.lines[id] = append(e.lines[id], docker.LogEntry{Time: e.clock, Stream: stream, Text: t})
	}
	e.changedLocked()
	e.mu.Unlock()
}

func (e *fakeEngine) logCalls() []docker.LogsOptions {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]docker.LogsOptions(nil), e.calls...)
}

func (e *fakeEngine) Logs(ctx context.Context, id string, opts docker.LogsOptions, fn func(docker.LogEntry) error) error {
	e.mu.Lock()
	e.calls = append(e.calls, opts)
	_, known := e.running[id]
	floor := e.floor[id]
	e.mu.Unlock()
	if !known {
		return errdefs.NotFound("no container %s", id)
	}
	next := 0
	for {
		e.mu.Lock()
		batch := e.lines[id][next:]
		next = len(e.lines[id])
		running, changed, slow := e.running[id], e.changed, e.slow
		e.mu.Unlock()
		if slow != nil && len(batch) > 0 {
			select {
			case <-slow:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		e.mu.Lock()
		skips := e.followSkips
		e.mu.Unlock()
		for _, le := range batch {
			if le.Time.Before(opts.Since) || le.Time.Before(floor) || opts.Follow && skips[le.Text] {
				continue
			}
			if !opts.Until.IsZero() && le.Time.After(opts.Until) {
				continue
			}
			if err := fn(le); err != nil {
				return err
			}
		}
		if len(batch) > 0 {
			continue
		}
		if !running || !opts.Follow {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (e *fakeEngine) InspectContainer(_ context.Context, id string) (docker.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	running, ok := e.running[id]
	if !ok {
		return docker.Container{}, errdefs.NotFound("no container %s", id)
	}
	return docker.Container{ID: id, State: docker.ContainerState{Running: running}}, nil
}

// relayEnv is a relay over a real store with the fakes, run until the
// test ends.
type relayEnv struct {
	r      *Relay
	st     *store.Store
	link   *fakeLink
	engine *fakeEngine
	stop   func()
}

func newRelayEnv(t *testing.T, opts RelayOptions, offline bool) *relayEnv {
	t.Helper()
	e := &relayEnv{engine: newFakeEngine()}
	if fe, ok := opts.Engine.(*fakeEngine); ok {
		e.engine = fe
	}
	if opts.Store == nil {
		opts.Store = storetest.Open(t)
	}
	e.st = opts.Store
	if !offline {
		e.link = newFakeLink()
		opts.Link = e.link
	}
	opts.Serial = testSerial
	opts.Engine = e.engine
	r, err := NewRelay(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return")
			}
		})
	}
	t.Cleanup(e.stop)
	return e
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stored returns every stored line of a log.
func stored(t *testing.T, st *store.Store, name string) []store.LogLine {
	t.Helper()
	res, err := st.QueryLogs(context.Background(), name, store.LogQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Lines
}

func storedTexts(t *testing.T, st *store.Store, name string) []string {
	t.Helper()
	var out []string
	for _, l := range stored(t, st, name) {
		out = append(out, l.Text)
	}
	return out
}

// publishedTexts splits the text publications of topic into lines.
func publishedLines(l *fakeLink, topic string) []string {
	var out []string
	for _, p := range l.publications(topic) {
		if s, ok := p.args[0].(string); ok {
			out = append(out, splitLines(s)...)
		}
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}
