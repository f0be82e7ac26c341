package logs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/store"
)

// PostStart makes sure the output of the container (app is its name,
// containerID its ID) is followed: stored, and published while somebody
// subscribes. Calling it again for the same container is a no-op; for a new
// container of the same name the old follower is stopped first. Before Run
// the follower is only recorded and starts with Run. The reconciler calls
// it after every start and for every container it finds running at
// start-up.
func (r *Relay) PostStart(ctx context.Context, app, containerID string) error {
	k, err := KeyOf(app)
	if err != nil {
		return fmt.Errorf("follow log %s: %w", app, err)
	}
	if containerID == "" {
		return errdefs.InvalidArgument("follow log %s: no container ID", app)
	}
	if r.engine == nil {
		return fmt.Errorf("follow log %s: %w", app, errdefs.Unavailable("no container engine"))
	}
	for {
		r.mu.Lock()
		s := r.streamLocked(app, k)
		s.gen++
		old := s.follow
		switch {
		case old == nil:
			f := &follower{containerID: containerID}
			s.follow = f
			if r.runCtx != nil {
				r.startFollowerLocked(s, f)
			}
			r.mu.Unlock()
			return nil
		case old.containerID == containerID:
			r.mu.Unlock()
			return nil
		}
		// The name now belongs to another container: the old follower
		// goes first, so lines are stored in order.
		s.follow = nil
		cancel, done := old.cancel, old.done
		r.mu.Unlock()
		if err := stopFollower(ctx, cancel, done); err != nil {
			return fmt.Errorf("follow log %s: %w", app, err)
		}
	}
}

// Stop stops following the container called app; its history stays.
// Idempotent.
func (r *Relay) Stop(ctx context.Context, app string) error {
	r.mu.Lock()
	s := r.streams[app]
	if s == nil {
		r.mu.Unlock()
		return nil
	}
	s.gen++
	f := s.follow
	s.follow = nil
	var cancel context.CancelFunc
	var done chan struct{}
	if f != nil {
		cancel, done = f.cancel, f.done
	}
	r.mu.Unlock()
	if err := stopFollower(ctx, cancel, done); err != nil {
		return fmt.Errorf("stop following log %s: %w", app, err)
	}
	return nil
}

// Forget stops following app and deletes its history (uninstall).
func (r *Relay) Forget(ctx context.Context, app string) error {
	if err := ValidName(app); err != nil {
		return fmt.Errorf("forget log %s: %w", app, err)
	}
	if err := r.Stop(ctx, app); err != nil {
		return err
	}
	r.mu.Lock()
	s := r.streams[app]
	delete(r.streams, app)
	r.mu.Unlock()
	if s != nil {
		// Waits for a store write of this log in flight, so nothing of it
		// lands after the history is cleared.
		s.storeMu.Lock()
		defer s.storeMu.Unlock()
		s.mu.Lock()
		s.forgotten = true
		s.pend, s.pendCost, s.spare, s.dropped = nil, 0, nil, 0
		close(s.room)
		s.room = make(chan struct{})
		s.pub.discard()
		s.mu.Unlock()
	}
	if err := r.st.ClearLogs(ctx, app); err != nil {
		return fmt.Errorf("forget log %s: %w", app, err)
	}
	return nil
}

// drainTimeout is how long stopping a follower lets it read on first: the
// reconciler stops it when the container has exited, and the engine may
// still be sending the last lines (a crash message, say). A follower of a
// stopped container ends by itself once they are read.
const drainTimeout = 2 * time.Second

// stopFollower ends a follower (its cancel and done, read under
// Relay.mu; nil when it never started), after letting it drain for up to
// drainTimeout, and waits for it (bounded by ctx).
func stopFollower(ctx context.Context, cancel context.CancelFunc, done chan struct{}) error {
	if cancel == nil {
		return nil
	}
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startFollowerLocked starts f's goroutine under Run's context. It reads
// once the previous follower of the log has ended (a stop whose wait was
// cut short leaves one draining).
func (r *Relay) startFollowerLocked(s *stream, f *follower) {
	ctx, cancel := context.WithCancel(r.runCtx)
	f.cancel = cancel
	f.done = make(chan struct{})
	prev := s.lastDone
	s.lastDone = f.done
	r.followers.Add(1)
	go func() {
		defer r.followers.Done()
		defer close(f.done)
		defer cancel()
		if prev != nil {
			select {
			case <-prev:
			case <-ctx.Done():
				return
			}
		}
		r.follow(ctx, s, f)
	}()
}

// follow reads the container's output until the container has stopped (and
// no PostStart came in meanwhile), it is gone, or ctx ends. Each read
// resumes one nanosecond after the newest line already read, so a line is
// neither lost nor read twice across reconnects and agent restarts.
func (r *Relay) follow(ctx context.Context, s *stream, f *follower) {
	log := r.log.With().Str("log", s.name).Str("container", shortID(f.containerID)).Logger()
	log.Debug().Msg("following")
	failures := 0
	var jumps jumpDetector // across the reads of this container
	for {
		since, err := r.resumePoint(ctx, s)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			log.Warn().Err(err).Msg("cannot read where the log ends; retrying")
			if !sleepCtx(ctx, backoff(failures)) {
				return
			}
			continue
		}
		r.mu.Lock()
		gen, mine := s.gen, s.follow == f
		r.mu.Unlock()
		if !mine {
			return // stopped or replaced while between reads
		}
		read := 0
		wd := newStallWatchdog(ctx)
		err = r.engine.Logs(wd.ctx, f.containerID, docker.LogsOptions{Follow: true, Since: since}, func(le docker.LogEntry) error {
			read++
			now := r.now()
			if from, behind, jumped := jumps.next(le.Time, now); jumped {
				wd.pause()
				if err := r.fillWindow(ctx, s, f.containerID, from, le.Time, behind, log); err != nil {
					return err
				}
			}
			wd.saw(le.Time, now)
			return r.acceptLine(ctx, s, le)
		})
		stalled := wd.stop()
		if ctx.Err() != nil {
			return
		}
		if stalled {
			// Read again from where we are: what the engine still has
			// comes now, and a part its rotation deleted shows as a jump
			// (jumpDetector), which fillWindow reads back or marks.
			log.Warn().Dur("after", stallTimeout).Msg("the engine stopped sending a log the relay was behind on; reading it again")
			continue
		}
		if read > 0 {
			failures = 0
		}
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			log.Debug().Err(err).Msg("log stream broke")
		}
		// The stream ended: normally because the container stopped.
		ct, ierr := r.engine.InspectContainer(ctx, f.containerID)
		switch {
		case ierr == nil && ct.State.Running:
			// Restarted already, or the engine dropped the stream.
		case ierr == nil || errors.Is(ierr, errdefs.ErrNotFound):
			r.mu.Lock()
			if s.gen == gen || s.follow != f {
				if s.follow == f {
					s.follow = nil
				}
				r.mu.Unlock()
				log.Debug().Msg("container stopped: log followed to its end")
				return
			}
			r.mu.Unlock() // a PostStart came in meanwhile: look again
			continue
		default:
			if ctx.Err() != nil {
				return
			}
			log.Debug().Err(ierr).Msg("inspect after the log stream ended")
		}
		failures++
		if !sleepCtx(ctx, backoff(failures)) {
			return
		}
	}
}

// acceptLine buffers one container line for the store and, while somebody
// subscribes, for publishing. When the store buffer is full it waits for
// the store only while the line is less than waitLag old; after that the
// line is dropped and counted, and storeStream announces the count where
// the lines are missing, in the history and in the stream. A burst is
// absorbed by the engine's log file for a moment, but a follower that
// waited on would fall minutes behind and the file's rotation would
// delete its backlog without anybody knowing.
func (r *Relay) acceptLine(ctx context.Context, s *stream, le docker.LogEntry) error {
	return r.accept(ctx, s, le, false)
}

// accept is acceptLine; recovered lines (read back by fillWindow) are old
// by nature and wait for the store up to waitLag from now instead of being
// dropped at once: fillTimeout bounds the recovery as a whole.
func (r *Relay) accept(ctx context.Context, s *stream, le docker.LogEntry, recovered bool) error {
	c := len(le.Text) + lineOverhead
	t := le.Time
	if t.Year() < 1971 || t.Year() > 2200 {
		t = time.Time{} // no usable engine time: the store stamps it
	}
	now := r.now()
	stamped := t
	if stamped.IsZero() || recovered {
		stamped = now
	}
	s.mu.Lock()
	if !t.IsZero() && !s.forgotten && t.After(s.lastTime) {
		s.lastTime = t
	}
	for !s.forgotten && s.pendCost > 0 && s.pendCost+c > r.storeCap {
		wait := waitLag - now.Sub(stamped)
		if wait <= 0 {
			s.dropped++
			s.mu.Unlock()
			r.storeSig.markFull()
			return nil
		}
		room := s.room
		s.mu.Unlock()
		r.storeSig.markFull()
		if err := waitRoom(ctx, room, wait); err != nil {
			return err
		}
		now = r.now()
		s.mu.Lock()
	}
	if s.forgotten {
		s.mu.Unlock()
		return errdefs.NotFound("log %s was forgotten", s.name)
	}
	storeFirst := len(s.pend) == 0
	s.pend = append(s.pend, store.LogLine{Time: t, Stream: le.Stream, Text: le.Text})
	s.pendCost += c
	storeFull := s.pendCost >= r.flushBytes
	pubFirst, pubFull := false, false
	if s.live {
		pubFirst = s.pub.size() == 0
		s.pub.addLine(le.Text)
		pubFull = s.pub.size() >= r.flushBytes
	}
	s.mu.Unlock()
	signal(r.storeSig, storeFirst, storeFull)
	signal(r.pubSig, pubFirst, pubFull)
	return nil
}

// waitRoom waits until room is closed (the store took the buffer), d has
// passed, or ctx ends (its error).
func waitRoom(ctx context.Context, room <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-room:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// jumpDetector recognises a jump of Docker's follower over lines it did
// not send: a line more than skipThreshold after the line read before it,
// when that one was read lagThreshold or more late. Docker's json-file
// follower (20.10 and older), when the file it reads is rotated, may
// continue in a newer file or at the live end. It is the follower's own
// (one goroutine), so the check costs no lock per line.
type jumpDetector struct {
	prevTime time.Time     // engine time of the last line read
	prevLag  time.Duration // how late it was read
}

// next records the line stamped t, read at now, and reports whether it
// jumped: from is the time of the line before, behind how late that one
// was read. Lines without a usable time are ignored.
func (j *jumpDetector) next(t, now time.Time) (from time.Time, behind time.Duration, jumped bool) {
	if t.Year() < 1971 || t.Year() > 2200 {
		return time.Time{}, 0, false
	}
	jumped = !j.prevTime.IsZero() && j.prevLag >= lagThreshold && t.Sub(j.prevTime) > skipThreshold
	from, behind = j.prevTime, j.prevLag
	j.prevTime, j.prevLag = t, now.Sub(t)
	return from, behind, jumped
}

// fillWindow reads, before the line stamped to, what the engine still
// holds of the container's output after from: a jump of the follower is
// often only the follower's, the lines are still in the engine's files.
// When the engine's oldest line is younger than from, its rotation has
// deleted some of the window: a marker says which part may be missing (the
// engine cannot say how many lines it held). A fill that takes longer than
// fillTimeout is cut short, and what it did not read is marked too.
func (r *Relay) fillWindow(ctx context.Context, s *stream, containerID string, from, to time.Time, behind time.Duration,
	log zerolog.Logger) error {
	lostTo := from
	switch oldest, ok, err := r.oldestLine(ctx, containerID); {
	case err != nil:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Debug().Err(err).Msg("cannot read where the engine's log begins")
		return nil // the jump stays unexplained, as before the check
	case !ok || !oldest.After(from):
		// The engine still holds everything after from.
	case oldest.After(to):
		lostTo = to
	default:
		lostTo = oldest
	}
	if lostTo.Sub(from) > 0 {
		r.markWindow(s, from, lostTo, behind, log)
		from = lostTo.Add(-time.Nanosecond) // the oldest line is read below
	}
	fctx, cancel := context.WithTimeout(ctx, fillTimeout)
	defer cancel()
	last, n := from, 0
	err := r.engine.Logs(fctx, containerID, docker.LogsOptions{Since: from.Add(time.Nanosecond), Until: to.Add(-time.Nanosecond)},
		func(le docker.LogEntry) error {
			if !le.Time.After(last) || !le.Time.Before(to) {
				return nil
			}
			n++
			last = le.Time
			return r.accept(ctx, s, le, true)
		})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if n > 0 {
		log.Debug().Int("lines", n).Time("from", from).Time("to", to).Msg("the engine's follower skipped lines; read them from its log")
	}
	if err != nil && to.Sub(last) > skipThreshold {
		log.Debug().Err(err).Msg("reading what the engine's follower skipped")
		r.markWindow(s, last, to, behind, log)
	}
	return nil
}

// oldestLine is the time of the oldest line the engine holds of the
// container's output; false when it holds none.
func (r *Relay) oldestLine(ctx context.Context, containerID string) (time.Time, bool, error) {
	var oldest time.Time
	err := r.engine.Logs(ctx, containerID, docker.LogsOptions{}, func(le docker.LogEntry) error {
		oldest = le.Time
		return errFirstLine
	})
	if err != nil && !errors.Is(err, errFirstLine) {
		return time.Time{}, false, err
	}
	return oldest, !oldest.IsZero(), nil
}

var errFirstLine = errors.New("first line read")

// markWindow stores and publishes the marker of a window of output that
// may be lost, and warns in the agent's log.
func (r *Relay) markWindow(s *stream, from, to time.Time, behind time.Duration, log zerolog.Logger) {
	s.mu.Lock()
	r.announceDropsLocked(s) // lines dropped before the window come first
	r.markLineLocked(s, skipMarker(from, to, behind))
	s.mu.Unlock()
	log.Warn().Time("from", from).Time("to", to).Dur("behind", behind).
		Msg("log lines may be lost: the engine's log rotation deleted them before they were read")
}

// resumePoint is where the next read of s starts: one nanosecond after
// the newest container line read or stored; zero for a log with none.
func (r *Relay) resumePoint(ctx context.Context, s *stream) (time.Time, error) {
	s.mu.Lock()
	known, last := s.resumeKnown, s.lastTime
	s.mu.Unlock()
	if !known {
		stored, err := r.lastContainerLine(ctx, s.name)
		if err != nil {
			return time.Time{}, err
		}
		s.mu.Lock()
		if stored.After(s.lastTime) {
			s.lastTime = stored
		}
		s.resumeKnown = true
		last = s.lastTime
		s.mu.Unlock()
	}
	if last.IsZero() {
		return time.Time{}, nil
	}
	return last.Add(time.Nanosecond), nil
}

// resumePage is how many stored lines lastContainerLine reads at a time.
const resumePage = 512

// lastContainerLine is the time of the newest stored container line of a
// log (zero if none). Agent lines are skipped: they are stamped with the
// agent's clock when written, and resuming after one could skip container
// lines printed while the agent was down. Within the page that has
// container lines the greatest time wins, since stdout and stderr may be
// stored slightly out of time order.
func (r *Relay) lastContainerLine(ctx context.Context, name string) (time.Time, error) {
	for off := 0; ; off += resumePage {
		res, err := r.st.QueryLogs(ctx, name, store.LogQuery{Tail: resumePage, Offset: off})
		if err != nil {
			return time.Time{}, fmt.Errorf("resume point of log %s: %w", name, err)
		}
		var last time.Time
		for _, l := range res.Lines {
			if l.Stream != agentStream && l.Time.After(last) {
				last = l.Time
			}
		}
		if !last.IsZero() || len(res.Lines) < resumePage {
			return last, nil
		}
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// signal tells a flush loop that a queue got its first entry (flush within
// the interval) or is full (flush now).
func signal(f flushSignal, first, full bool) {
	switch {
	case full:
		f.markFull()
	case first:
		f.markDirty()
	}
}

// stallWatchdog ends a follow read that the engine stopped feeding while
// the relay was behind. Docker's json-file follower (20.10 and older) can
// lose its place when the file it reads is rotated: it then sends nothing
// more, or jumps to the newest output. A follower that is behind expects
// more lines at once, so silence for stallTimeout means a stall, not a
// quiet app. The timer runs only while the last line read was behind:
// following a live app costs no wake-ups.
type stallWatchdog struct {
	ctx     context.Context
	cancel  context.CancelFunc
	timer   *time.Timer
	stalled atomic.Bool
	armed   bool // only touched by the reading goroutine
}

func newStallWatchdog(parent context.Context) *stallWatchdog {
	w := &stallWatchdog{}
	w.ctx, w.cancel = context.WithCancel(parent)
	w.timer = time.AfterFunc(time.Hour, func() {
		w.stalled.Store(true)
		w.cancel()
	})
	w.timer.Stop()
	return w
}

// saw notes a line stamped t, read at now: behind, it (re)arms the timer;
// live, it disarms it.
func (w *stallWatchdog) saw(t, now time.Time) {
	behind := !t.IsZero() && now.Sub(t) >= lagThreshold
	switch {
	case behind:
		w.timer.Reset(stallTimeout)
		w.armed = true
	case w.armed:
		w.timer.Stop()
		w.armed = false
	}
}

// pause disarms the timer while the follower does something else.
func (w *stallWatchdog) pause() {
	w.timer.Stop()
	w.armed = false
}

// stop ends the watchdog and reports whether it ended the read.
func (w *stallWatchdog) stop() bool {
	w.timer.Stop()
	w.cancel()
	return w.stalled.Load()
}
