package apps

import (
	"context"
	"errors"
	"sync"
	"time"
)

// errSuperseded is the cause of a step's cancellation when a newer request
// no longer needs it: newer work is waiting, nothing failed.
var errSuperseded = errors.New("superseded by a newer request")

// maxPassesInARow bounds the passes a worker makes without waiting, so a
// step that never converges cannot spin against the engine.
const maxPassesInARow = 64

// step is one unit of work towards an app's desired state, e.g. "pull
// 1.2.0" or "stop the container". serves tells whether the step still
// leads to a (newer) target; a step that does not is cancelled.
type step struct {
	name   string
	serves func(t target) bool
	run    func(ctx context.Context) error
}

func servesAlways(target) bool { return true }

// worker owns all engine work for one app (kubelet pod-worker style):
// callers overwrite the pending target and poke the one-signal wake
// channel, so a burst of requests collapses into the newest; the loop
// takes the pending target, runs reconcile passes until the app converges
// or has to wait, and re-arms its timer (backoff, restart delay).
type worker struct {
	key  Key
	m    *Manager
	wake chan struct{} // cap 1: "look again"

	mu sync.Mutex // guards the fields below; no I/O under it
	// pending is the newest target nobody has picked up yet.
	pending *target
	// step is the step running now (nil between steps), cancel ends it.
	step   *step
	cancel context.CancelCauseFunc
	// forget: tear the app down, then delete it (SyncWithCloud).
	forget  bool
	done    bool // forgotten: the loop ends
	started bool // guarded by Manager.mu, not mu

	// Used only by the goroutine running reconcile passes (the loop, or a
	// test calling Reconcile while no loop runs).
	restart     *restartTracker
	crashSeen   time.Time // FinishedAt of the crash the tracker has counted
	restartAt   time.Time // when the counted crash is restarted
	retry       backoff
	terminalGen uint64 // generation whose target failed for good
	postStarted string // container ID the PostStart hooks ran for
	levelNoted  bool   // the privilege fallback was written to the app log

	// actMu serialises read-modify-write of the app's actual row and
	// guards pendingSent and releaseBuild.
	actMu sync.Mutex
	// pendingSent: a report carrying pending_remote_confirmation was
	// enqueued; the outbox delivers in order, so later ones say completed.
	pendingSent bool
	// releaseBuild: a publish's build is running; its state reports say
	// release_build true (memory only, as the reference's).
	releaseBuild bool
}

func newWorker(m *Manager, k Key) *worker {
	return &worker{
		key:     k,
		m:       m,
		wake:    make(chan struct{}, 1),
		restart: newRestartTracker(m.opts.RestartMin, m.opts.RestartMax, m.opts.HealthyAfter, m.opts.Rand),
		retry:   backoff{min: m.opts.RetryMin, max: m.opts.RetryMax, rand: m.opts.Rand},
	}
}

// set makes t the pending target. It never blocks and never drops a
// request: it replaces pending, and cancels the running step when that no
// longer serves t or t asks for it (cancel_transition).
func (w *worker) set(t target) {
	w.mu.Lock()
	w.pending = &t
	if w.step != nil && w.cancel != nil && (t.Cancel || !w.step.serves(t)) {
		w.m.log.Debug().Uint64("app_key", w.key.AppKey).Str("stage", w.key.Stage).Str("step", w.step.name).Msg("cancel superseded step")
		w.cancel(errSuperseded)
	}
	w.mu.Unlock()
	w.poke()
}

// poke makes the worker look at its app again (engine event, resync).
func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) setReleaseBuild(v bool) {
	w.actMu.Lock()
	w.releaseBuild = v
	w.actMu.Unlock()
}

func (w *worker) setForget(v bool) {
	w.mu.Lock()
	w.forget = v
	w.mu.Unlock()
}

func (w *worker) isForgetting() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.forget
}

func (w *worker) isDone() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

// begin records st as the running step, unless a newer pending target
// already makes it pointless.
func (w *worker) begin(st *step) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending != nil && (w.pending.Cancel || !st.serves(*w.pending)) {
		return false
	}
	w.step = st
	return true
}

// run is the worker's loop: wait for a poke or the timer, drive, re-arm.
func (w *worker) run(ctx context.Context) {
	var (
		timer <-chan time.Time
		stop  func() bool
	)
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-timer:
		}
		if stop != nil {
			stop()
			timer, stop = nil, nil
		}
		next := w.drive(ctx)
		if w.isDone() || ctx.Err() != nil {
			return
		}
		if next > 0 {
			timer, stop = w.m.clock.After(next)
		}
	}
}

// drive runs reconcile passes until the app has converged or must wait; it
// returns how long until the next look (0: until poked).
func (w *worker) drive(ctx context.Context) time.Duration {
	for i := 0; ; i++ {
		if ctx.Err() != nil {
			return 0
		}
		stepCtx, cancel := context.WithCancelCause(ctx)
		w.mu.Lock()
		w.pending = nil // the pass reads the stored desired state, which is at least as new
		w.cancel = cancel
		w.mu.Unlock()

		res, err := w.m.reconcile(stepCtx, w)
		superseded := errors.Is(context.Cause(stepCtx), errSuperseded)
		cancel(nil)
		w.mu.Lock()
		w.cancel, w.step = nil, nil
		more := w.pending != nil
		done := w.done
		w.mu.Unlock()

		switch {
		case ctx.Err() != nil || done:
			return 0
		case superseded:
			// Newer work is waiting; not a failure.
		case err != nil:
			d := w.retry.next()
			w.m.log.Debug().Err(err).Uint64("app_key", w.key.AppKey).Str("stage", w.key.Stage).Dur("retry_in", d).Msg("pass failed")
			return d
		default:
			w.retry.reset()
			if !res.Requeue && !more {
				return res.RequeueAfter
			}
		}
		if i >= maxPassesInARow {
			w.m.log.Warn().Uint64("app_key", w.key.AppKey).Str("stage", w.key.Stage).Msg("no convergence after many passes; pausing")
			return time.Second
		}
	}
}
