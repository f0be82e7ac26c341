package wamp

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/rs/zerolog"
)

// link is one WELCOMEd nexus session and what has been done on it.
//
// nexus's client is not made to be closed while in use: its sends go
// through safePeer for that reason. A cancelled call sends CANCEL and then
// waits up to ResponseTimeout for the router's ERROR, which never comes
// once our GOODBYE got there first. So every use of cli is counted, and
// closing a link goes: no new use; the running uses, already cancelled,
// are waited for while the router is there to answer them; GOODBYE,
// bounded; the TCP connection closed under the client when the router
// does not answer; the peer's forwarder ended once the last use is over.
type link struct {
	cli       *client.Client
	peer      *safePeer
	conn      *connRef // the TCP connection under peer
	sessionID uint64
	ctx       context.Context // ends with the connection

	// Guarded by Session.mu.
	// regDone/subDone: the registration (subscription) step has taken its
	// snapshot, so later Register (Subscribe) calls act on cli directly.
	regDone, subDone bool
	uses             int           // goroutines inside a method of cli
	closing          bool          // closeLink has begun: no new use
	closed           bool          // cli.Close has returned
	idle             chan struct{} // non-nil while closeLink waits for uses to end

	closeOnce sync.Once
}

// useLocked counts one use of l's client; false once l is closing. The
// caller holds Session.mu and calls release when the use ends.
func (l *link) useLocked() bool {
	if l.closing {
		return false
	}
	l.uses++
	return true
}

// acquire returns the current link with one use counted; nil when there
// is no link or it is closing.
func (s *Session) acquire() *link {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.link == nil || !s.link.useLocked() {
		return nil
	}
	return s.link
}

// release ends a use counted by acquire or useLocked.
func (s *Session) release(l *link) {
	s.mu.Lock()
	l.uses--
	last := l.uses == 0
	if last && l.idle != nil {
		close(l.idle)
		l.idle = nil
	}
	shut := last && l.closed
	s.mu.Unlock()
	if shut {
		l.peer.shutdown()
	}
}

// withLink runs fn as one counted use of l's client; client.ErrNotConn
// when l is closing.
func (s *Session) withLink(l *link, fn func(cli *client.Client) error) error {
	s.mu.Lock()
	ok := l.useLocked()
	s.mu.Unlock()
	if !ok {
		return client.ErrNotConn
	}
	defer s.release(l)
	return fn(l.cli)
}

// closeLink closes l's client once; a second caller waits for the first.
// l.ctx must have ended, so that the running uses are being cancelled.
// Each wait is bounded by half of CloseTimeout, so a router that answers
// nothing holds up the shutdown by about CloseTimeout.
func (s *Session) closeLink(l *link, log zerolog.Logger) {
	l.closeOnce.Do(func() {
		bound := s.opts.CloseTimeout / 2
		s.mu.Lock()
		l.closing = true
		idle := make(chan struct{})
		if l.uses == 0 {
			close(idle)
		} else {
			l.idle = idle
		}
		s.mu.Unlock()

		// With the router there, a cancelled call's CANCEL is answered
		// within a round trip; a dead connection answers nothing, and the
		// calls see the client's end by themselves.
		if !waitClosed(idle, l.cli.Done(), bound) {
			log.Warn().Dur("after", bound).Msg("calls still running at disconnect; closing under them")
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Close says GOODBYE when connected, waits for the router's
			// answer and for the running handlers, whose contexts have
			// ended.
			_ = l.cli.Close()
			s.mu.Lock()
			l.closed = true
			shut := l.uses == 0
			s.mu.Unlock()
			if shut {
				l.peer.shutdown()
			}
		}()
		if waitClosed(done, nil, bound) {
			return
		}
		log.Warn().Dur("after", bound).Msg("no answer to GOODBYE; dropping the connection")
		l.conn.close()
		if !waitClosed(done, nil, bound) {
			log.Error().Dur("after", 2*bound).Msg("the session did not close: a procedure handler ignores its context")
		}
	})
}

// waitClosed waits until a or b is closed (b may be nil) or d has passed;
// false when d passed.
func waitClosed(a, b <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a:
		return true
	case <-b:
		return true
	case <-t.C:
		return false
	}
}

// connRef keeps the TCP connection a dial made, so that a link whose
// router stops answering can be dropped without waiting for nexus.
type connRef struct {
	mu sync.Mutex
	c  net.Conn
}

func (r *connRef) set(c net.Conn) {
	r.mu.Lock()
	r.c = c
	r.mu.Unlock()
}

func (r *connRef) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	c := r.c
	r.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}
