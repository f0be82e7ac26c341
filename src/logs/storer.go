package logs

import (
	"context"
	"errors"
	"time"

	"reagent/src/errdefs"
)

// storeLoop stores the buffered lines of every log at most FlushInterval
// after they came, and at once when a log has buffered FlushBytes.
func (r *Relay) storeLoop(ctx context.Context) {
	for r.storeSig.wait(ctx, r.flushInterval) {
		waiting := false
		for _, s := range r.snapshot() {
			if err := r.storeStream(ctx, s, false); err != nil && ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			waiting = waiting || len(s.pend) > 0 && !s.forgotten
			s.mu.Unlock()
		}
		if waiting { // lines came meanwhile, or a retry is due later
			r.storeSig.markDirty()
		}
	}
}

// storeStream writes the buffered lines of s to the store in one
// transaction. On failure the lines stay buffered, ahead of newer ones, and
// are tried again after a backoff (at once when force); meanwhile the
// follower waits, which the engine's log file absorbs. Only lines the store
// refuses as invalid are dropped, and counted.
func (r *Relay) storeStream(ctx context.Context, s *stream, force bool) error {
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	s.mu.Lock()
	if s.forgotten || len(s.pend) == 0 || !force && r.now().Before(s.retryAt) {
		s.mu.Unlock()
		return nil
	}
	batch, cost := s.pend, s.pendCost
	s.pend, s.pendCost = nil, 0
	close(s.room)
	s.room = make(chan struct{})
	agentDropped := s.agentDropped
	s.agentDropped = 0
	s.mu.Unlock()

	if agentDropped > 0 {
		r.log.Warn().Str("log", s.name).Int("lines", agentDropped).Msg("agent log lines not stored: buffer full")
	}
	_, err := r.st.AppendLogs(ctx, s.name, s.key, batch)
	if err == nil {
		s.mu.Lock()
		if s.failures > 0 {
			r.log.Info().Str("log", s.name).Int("failures", s.failures).Msg("storing log lines again")
		}
		s.failures, s.retryAt = 0, time.Time{}
		s.mu.Unlock()
		return nil
	}
	if errors.Is(err, errdefs.ErrInvalidArgument) {
		r.log.Error().Err(err).Str("log", s.name).Int("lines", len(batch)).Msg("log lines refused by the store, dropped")
		return nil
	}
	s.mu.Lock()
	if !s.forgotten {
		s.pend = append(batch, s.pend...)
		s.pendCost += cost
	}
	s.failures++
	n := s.failures
	s.retryAt = r.now().Add(backoff(n))
	s.mu.Unlock()
	if !isCanceled(ctx, err) && n == 1 {
		r.log.Warn().Err(err).Str("log", s.name).Int("lines", len(batch)).Msg("cannot store log lines; retrying")
	}
	return err
}
