package devcloud

import (
	"sync"
	"time"

	"github.com/gammazero/nexus/v3/wamp"
)

// CallRecord is one backend call devcloud received.
type CallRecord struct {
	Procedure    string
	Args         wamp.List
	Kwargs       wamp.Dict
	CallerAuthID string
	At           time.Time
}

// Fault delays and/or fails a backend procedure.
type Fault struct {
	Delay    time.Duration
	ErrorURI string // "" = no error
	Times    int    // 0 = until cleared
}

// events keeps what devcloud saw but does not persist: backend calls,
// testaments, publications per topic and the faults to inject.
type events struct {
	// mu guards the fields below.
	mu         sync.Mutex
	calls      []CallRecord
	testaments []map[string]any
	publishes  map[string]int
	faults     map[string]Fault
}

func newEvents() *events {
	return &events{publishes: map[string]int{}, faults: map[string]Fault{}}
}

func (e *events) recordCall(r CallRecord) {
	e.mu.Lock()
	e.calls = append(e.calls, r)
	e.mu.Unlock()
}

func (e *events) recordTestament(p map[string]any) {
	e.mu.Lock()
	e.testaments = append(e.testaments, p)
	e.mu.Unlock()
}

func (e *events) countPublish(topic string) {
	e.mu.Lock()
	e.publishes[topic]++
	e.mu.Unlock()
}

// takeFault returns the fault to apply to this call of procedure, using
// up one of its Times.
func (e *events) takeFault(procedure string) (Fault, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, ok := e.faults[procedure]
	if !ok {
		return Fault{}, false
	}
	if f.Times > 0 {
		left := f
		left.Times--
		if left.Times == 0 {
			delete(e.faults, procedure)
		} else {
			e.faults[procedure] = left
		}
	}
	return f, true
}

// Calls returns every backend call received for procedure, in arrival
// order; "" returns all of them.
func (c *Cloud) Calls(procedure string) []CallRecord {
	c.ev.mu.Lock()
	defer c.ev.mu.Unlock()
	var out []CallRecord
	for _, r := range c.ev.calls {
		if procedure == "" || r.Procedure == procedure {
			out = append(out, r)
		}
	}
	return out
}

// SetFault makes the next calls of a backend procedure wait f.Delay and
// then, if f.ErrorURI is set, fail with that error instead of being served.
// f.Times limits how many calls are affected (0: until ClearFaults).
func (c *Cloud) SetFault(procedure string, f Fault) {
	c.ev.mu.Lock()
	c.ev.faults[procedure] = f
	c.ev.mu.Unlock()
}

// ClearFaults removes every injected fault.
func (c *Cloud) ClearFaults() {
	c.ev.mu.Lock()
	c.ev.faults = map[string]Fault{}
	c.ev.mu.Unlock()
}

// PublishCount is the number of PUBLISH messages remote sessions sent to
// topic.
func (c *Cloud) PublishCount(topic string) int {
	c.ev.mu.Lock()
	defer c.ev.mu.Unlock()
	return c.ev.publishes[topic]
}

// Testaments returns the payloads (args[0]) of every testament publication
// received on reswarm.api.testament_device.
func (c *Cloud) Testaments() []map[string]any {
	c.ev.mu.Lock()
	defer c.ev.mu.Unlock()
	out := make([]map[string]any, len(c.ev.testaments))
	copy(out, c.ev.testaments)
	return out
}

// changes wakes Await* waiters: every stored change closes the current
// channel and starts a new one.
type changes struct {
	mu sync.Mutex
	ch chan struct{}
}

func newChanges() *changes { return &changes{ch: make(chan struct{})} }

func (c *changes) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

func (c *changes) notify() {
	c.mu.Lock()
	close(c.ch)
	c.ch = make(chan struct{})
	c.mu.Unlock()
}
