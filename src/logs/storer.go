package logs

import (
	"context"
	"errors"
	"time"

	"reagent/src/errdefs"
	"reagent/src/store"
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
// transaction, after them the marker of the container lines dropped since
// the last one. On failure the lines stay buffered, ahead of newer ones,
// and are tried again after a backoff (at once when force); meanwhile the
// follower waits for a moment and then drops new lines, counted. Lines the
// store refuses as invalid are dropped and logged.
func (r *Relay) storeStream(ctx context.Context, s *stream, force bool) error {
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	s.mu.Lock()
	if s.forgotten || (len(s.pend) == 0 && s.dropped == 0) || !force && r.now().Before(s.retryAt) {
		s.mu.Unlock()
		return nil
	}
	announced := r.announceDropsLocked(s)
	warn := 0
	if now := r.now(); s.dropUnwarned > 0 && now.Sub(s.dropWarned) >= dropWarnEvery {
		warn = s.dropUnwarned
		s.dropWarned, s.dropUnwarned = now, 0
	}
	batch, cost := s.pend, s.pendCost
	s.pend, s.pendCost, s.spare = s.spare, 0, nil
	close(s.room)
	s.room = make(chan struct{})
	agentDropped := s.agentDropped
	s.agentDropped = 0
	s.mu.Unlock()
	if announced {
		r.pubSig.markDirty() // the stream's marker goes out with the next flush
	}

	if warn > 0 {
		r.log.Warn().Str("log", s.name).Int("lines", warn).Dur("within", dropWarnEvery).
			Msg("log lines dropped: the app prints faster than they can be stored")
	}
	if agentDropped > 0 {
		r.log.Warn().Str("log", s.name).Int("lines", agentDropped).Msg("agent log lines not stored: buffer full")
	}
	_, err := r.st.AppendLogs(ctx, s.name, s.key, batch)
	if err == nil {
		clear(batch) // let the texts go
		s.mu.Lock()
		if s.failures > 0 {
			r.log.Info().Str("log", s.name).Int("failures", s.failures).Msg("storing log lines again")
		}
		s.failures, s.retryAt = 0, time.Time{}
		if cap(batch) <= maxSpareLines && !s.forgotten {
			s.spare = batch[:0]
		}
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

// maxSpareLines bounds the batch array a log keeps for reuse, so a burst
// of short lines does not pin a large one.
const maxSpareLines = 4096

// announceDropsLocked turns the count of dropped container lines into the
// marker line "… N log line(s) dropped (rate limit)" at the end of pend,
// for the history, and into the stream's own drop count, which the
// publisher announces in order with the next publication. It reports
// whether there was anything to announce. Caller holds s.mu.
func (r *Relay) announceDropsLocked(s *stream) bool {
	n := s.dropped
	if n == 0 {
		return false
	}
	s.dropped = 0
	s.dropUnwarned += n
	text := dropMarker(n)
	s.pend = append(s.pend, store.LogLine{Time: r.now().UTC(), Stream: agentStream, Text: text})
	s.pendCost += len(text) + lineOverhead
	if s.live {
		s.pub.fail(n)
	}
	return true
}

// markLineLocked stores an agent line about the log and publishes it as a
// plain line, in order with the container lines around it, even when the
// buffers are full: there is at most one per announced event. Caller
// holds s.mu.
func (r *Relay) markLineLocked(s *stream, text string) {
	first := len(s.pend) == 0
	s.pend = append(s.pend, store.LogLine{Time: r.now().UTC(), Stream: agentStream, Text: text})
	s.pendCost += len(text) + lineOverhead
	signal(r.storeSig, first, false)
	if s.live {
		pubFirst := s.pub.size() == 0
		s.pub.addLine(text)
		signal(r.pubSig, pubFirst, false)
	}
}
