package wamp

import (
	"sync"

	nx "github.com/gammazero/nexus/v3/wamp"
)

// safePeer stands between nexus's client and its websocket peer. The client
// sends into the peer's channel from the caller's goroutine, unguarded; the
// websocket peer closes that channel in Close, and stops reading it when its
// writer dies. A send racing Close then panics ("send on closed channel"),
// and a send after the writer died blocks until that close. safePeer's own
// channel is never closed and always read: a forwarder hands each message
// to the websocket peer, and from Close on drops them, until shutdown says
// nobody sends any more.
type safePeer struct {
	inner nx.Peer
	out   chan nx.Message // what the client sends; never closed

	closing    chan struct{} // closed by Close: stop forwarding
	discarding chan struct{} // closed by the forwarder once it no longer touches inner
	quit       chan struct{} // closed by shutdown: the forwarder ends
	ended      chan struct{} // closed when the forwarder has ended

	closeOnce, quitOnce sync.Once
}

var _ nx.Peer = (*safePeer)(nil)

// newSafePeer wraps inner and starts the forwarder; shutdown ends it.
func newSafePeer(inner nx.Peer) *safePeer {
	p := &safePeer{
		inner:      inner,
		out:        make(chan nx.Message),
		closing:    make(chan struct{}),
		discarding: make(chan struct{}),
		quit:       make(chan struct{}),
		ended:      make(chan struct{}),
	}
	go p.forward()
	return p
}

func (p *safePeer) forward() {
	defer close(p.ended)
	p.pass()
	close(p.discarding)
	for {
		select {
		case <-p.out: // the link is closed: nobody is there to read it
		case <-p.quit:
			return
		}
	}
}

// pass forwards until Close.
func (p *safePeer) pass() {
	for {
		select {
		case m := <-p.out:
			select {
			case p.inner.Send() <- m:
			case <-p.closing:
				return
			}
		case <-p.closing:
			return
		}
	}
}

func (p *safePeer) Send() chan<- nx.Message { return p.out }
func (p *safePeer) Recv() <-chan nx.Message { return p.inner.Recv() }
func (p *safePeer) IsLocal() bool           { return p.inner.IsLocal() }

// Close closes the websocket peer once the forwarder has stopped sending
// to it. Sends go on being accepted (and dropped) until shutdown.
func (p *safePeer) Close() {
	p.closeOnce.Do(func() {
		close(p.closing)
		<-p.discarding
		p.inner.Close()
	})
}

// shutdown closes the peer if needed and ends the forwarder. Call it once
// nothing can send any more: the client is closed and no use of it runs.
func (p *safePeer) shutdown() {
	p.Close()
	p.quitOnce.Do(func() { close(p.quit) })
	<-p.ended
}
