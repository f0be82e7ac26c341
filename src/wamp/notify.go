package wamp

import (
	"context"
	"sync"
)

// notifier delivers connection state changes to the OnStateChange
// functions from one goroutine, in order, so that a slow subscriber never
// holds up the connection loop. Changes are few (one per connect or drop),
// so the queue stays short; consecutive equal states are merged.
type notifier struct {
	wake chan struct{} // cap 1: "queue changed"

	mu    sync.Mutex // guards the fields below
	fns   []func(bool)
	queue []bool
	last  bool // the last state queued
}

func newNotifier() *notifier { return &notifier{wake: make(chan struct{}, 1)} }

func (n *notifier) add(fn func(bool)) {
	n.mu.Lock()
	n.fns = append(n.fns, fn)
	n.mu.Unlock()
}

// push queues a state; it never blocks.
func (n *notifier) push(connected bool) {
	n.mu.Lock()
	if connected == n.last {
		n.mu.Unlock()
		return
	}
	n.last = connected
	n.queue = append(n.queue, connected)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run delivers until ctx ends, then delivers what is still queued.
func (n *notifier) run(ctx context.Context) {
	for {
		n.deliver()
		select {
		case <-n.wake:
		case <-ctx.Done():
			n.deliver()
			return
		}
	}
}

func (n *notifier) deliver() {
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			n.mu.Unlock()
			return
		}
		st := n.queue[0]
		n.queue = n.queue[1:]
		fns := append([]func(bool){}, n.fns...)
		n.mu.Unlock()
		for _, fn := range fns {
			fn(st)
		}
	}
}
