package logs

import (
	"context"
	"fmt"
)

// publishLoop publishes every live log's queue at most FlushInterval after
// it filled, and at once when a log has queued FlushBytes or an agent
// message. While the link is down the queues wait (bounded; what does not
// fit is counted) until it comes up.
func (r *Relay) publishLoop(ctx context.Context) {
	for r.pubSig.wait(ctx, r.flushInterval) {
		if !r.link.Connected() {
			continue // onStateChange wakes us
		}
		waiting := false
		for _, s := range r.snapshot() {
			if ctx.Err() != nil {
				return
			}
			r.publishStream(s)
			s.mu.Lock()
			waiting = waiting || s.live && !s.pub.empty()
			s.mu.Unlock()
		}
		if waiting {
			r.pubSig.markDirty()
		}
	}
}

// publishStream sends what s has queued. A publication that fails (the
// link went down under it) and those after it count as dropped and are
// announced with the next flush.
func (r *Relay) publishStream(s *stream) {
	s.mu.Lock()
	if !s.live || s.pub.empty() {
		s.mu.Unlock()
		return
	}
	pubs := s.pub.take()
	s.mu.Unlock()
	for i, p := range pubs {
		if err := r.publish(s.topic, p.args); err != nil {
			lost := 0
			for _, q := range pubs[i:] {
				lost += q.lines
			}
			s.mu.Lock()
			s.pub.fail(lost)
			s.mu.Unlock()
			r.log.Debug().Err(err).Str("log", s.name).Int("lines", lost).Msg("log lines not published")
			return
		}
	}
}

// publish sends one publication. The link may panic when it is closed
// under a publish in flight; that must not take the agent down.
func (r *Relay) publish(topic string, args []any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("publish %s: panic: %v", topic, p)
		}
	}()
	return r.link.Publish(topic, args, nil, false)
}
