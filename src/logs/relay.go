package logs

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/store"
	"reagent/src/wamp"
)

// Engine is what the relay needs from the container engine
// (*docker.Client).
type Engine interface {
	Logs(ctx context.Context, id string, opts docker.LogsOptions, fn func(docker.LogEntry) error) error
	InspectContainer(ctx context.Context, nameOrID string) (docker.Container, error)
}

// Link is what the relay needs from the cloud link (*wamp.Session).
type Link interface {
	Publish(topic string, args []any, kwargs map[string]any, acknowledge bool) error
	Subscribe(topic string, fn wamp.EventFunc)
	Call(ctx context.Context, procedure string, args []any, kwargs map[string]any) (wamp.Result, error)
	Connected() bool
	OnStateChange(fn func(connected bool))
	OnConnect(name string, step func(ctx context.Context) error)
}

// RelayOptions configure a Relay.
type RelayOptions struct {
	Serial string       // the device's serial, part of every topic; required with a Link
	Store  *store.Store // required: the history
	Engine Engine       // nil → PostStart answers unavailable
	Link   Link         // nil when -offline: nothing is published, storing goes on
	Log    zerolog.Logger

	FlushInterval time.Duration // 0 → 200 ms
	FlushBytes    int           // 0 → 64 KiB
	MaxPending    int           // bytes queued per log for publishing; 0 → 1 MiB; beyond → dropped and counted

	// Knobs for tests; zero takes the default.
	Now func() time.Time
}

// Defaults of RelayOptions.
const (
	DefaultFlushInterval = 200 * time.Millisecond
	DefaultFlushBytes    = 64 << 10
	DefaultMaxPending    = 1 << 20
)

const (
	// lineOverhead is what a buffered line costs besides its text (the
	// LogLine and its share of the slice), so a flood of empty lines is
	// bounded too.
	lineOverhead = 64
	// storeBufferFactor × FlushBytes is the most a log buffers for the
	// store. A follower with a full buffer waits for the store while its
	// line is less than waitLag old, then drops lines (counted and
	// announced) until it has caught up: a backlog left in the engine's
	// log file is deleted by the file's rotation without a trace.
	storeBufferFactor = 4
	// waitLag bounds how far behind the app a follower may fall by
	// waiting for the store. The engine loses lines to rotation only once
	// a reader is a whole log file (10 MB) behind: over a second even for
	// an app printing 100 000 lines a second.
	waitLag = 500 * time.Millisecond
	// agentBufferFactor × the store buffer is the most a log buffers with
	// agent messages, which never wait; beyond it they are not stored (and
	// counted).
	agentBufferFactor = 2
	// finalFlushTimeout bounds storing what is buffered when Run ends;
	// well within the agent's shutdown timeout, after which the store is
	// closed.
	finalFlushTimeout = 2 * time.Second
	// matchTimeout bounds one wamp.subscription.match call.
	matchTimeout = 10 * time.Second
	// lagThreshold: a container line read this much later than the
	// engine stamped it means the follower is reading a backlog, which
	// the engine's log rotation may cut short. It is above waitLag: only
	// an engine slower than the app gets a follower this far behind.
	lagThreshold = time.Second
	// skipThreshold: a followed line more than this after the line before
	// it, when that one was read lagThreshold or more late, may be a jump
	// of Docker's follower over lines it did not send (see jumpFrom).
	skipThreshold = 250 * time.Millisecond
	// fillTimeout bounds the reading of what a jump skipped.
	fillTimeout = 5 * time.Second
	// stallTimeout: a follower that is behind and gets no line for this
	// long reads the log again (see stallWatchdog).
	stallTimeout = 2 * time.Second
	// dropWarnEvery paces the agent-log warnings about dropped lines of
	// one log.
	dropWarnEvery = time.Minute
	// retryMin and retryMax pace a follower's reconnects to the engine and
	// a log's store retries.
	retryMin = 200 * time.Millisecond
	retryMax = 5 * time.Second
)

// Relay owns every app log stream: followers, batching, publishing,
// history. Build it with NewRelay, hand it to the reconciler as a hook,
// run it with Run.
type Relay struct {
	// Fixed at NewRelay.
	st            *store.Store
	engine        Engine
	link          Link
	log           zerolog.Logger
	now           func() time.Time
	serial        string
	topicPrefix   string // reswarm.logs.<serial>.
	flushInterval time.Duration
	flushBytes    int
	maxPending    int
	storeCap      int           // bytes (with lineOverhead) buffered per log; more container lines are dropped
	storeSig      flushSignal   // lines wait to be stored
	pubSig        flushSignal   // publications wait to be sent, or the link came up
	matchWake     chan struct{} // cap 1: matchq changed

	// followers are the follower goroutines; Add only under mu while
	// runCtx is set, so Run's Wait never races an Add.
	followers sync.WaitGroup

	// mu guards every field below and stream.follow and stream.gen; it is
	// taken before a stream's own lock, never after.
	mu      sync.Mutex
	streams map[string]*stream
	subs    subscriptions
	// matchq are topics to ask wamp.subscription.match about once
	// connected.
	matchq map[string]struct{}
	// runCtx is Run's context while it runs; nil before and after.
	runCtx  context.Context
	started bool
}

// stream is one app log: a container, or the publish stream of an app.
type stream struct {
	name  string
	key   store.Key
	topic string

	// storeMu serialises writing this log to the store (the storer, a
	// query's sync, Forget). Taken before mu.
	storeMu sync.Mutex

	// Guarded by Relay.mu.
	follow *follower // nil: nobody follows the container
	gen    uint64    // counts PostStart/Stop calls: a follower about to end looks whether one came in
	// lastDone is closed when the most recently started follower has
	// ended; the next one waits for it, so two never read at once.
	lastDone chan struct{}

	mu sync.Mutex // guards the fields below
	// pend are the lines read but not yet stored, pendCost their bytes
	// with lineOverhead each. spare is the backing array of the batch
	// stored last, reused for the next one.
	pend     []store.LogLine
	pendCost int
	spare    []store.LogLine
	// room is closed when pend was taken for storing; a follower waiting
	// for room waits on it.
	room chan struct{}
	// dropped counts the container lines dropped since the last marker
	// because pend was full: neither stored nor published. Every line in
	// pend is older than them, so their marker goes after pend.
	dropped int
	// dropWarned is when the agent's log last warned about this log's
	// drops; dropUnwarned counts the lines dropped since.
	dropWarned   time.Time
	dropUnwarned int
	// lastTime is the time of the newest container line read: a follower
	// resumes after it. Until resumeKnown it comes from the store.
	lastTime    time.Time
	resumeKnown bool
	// live: somebody subscribes to the topic (or did when the link went
	// down and nobody has said otherwise since).
	live bool
	pub  batcher
	// forgotten: Forget removed this log; nothing is stored for it any
	// more.
	forgotten bool
	// Store trouble: retry after retryAt; failures since the last
	// success; agent lines not stored because the buffer was full.
	retryAt      time.Time
	failures     int
	agentDropped int
}

// follower is the goroutine reading one container's output.
type follower struct {
	containerID string
	cancel      context.CancelFunc // nil until started (PostStart before Run)
	done        chan struct{}      // closed when the goroutine ended
}

// NewRelay checks the options and builds a relay. It starts nothing, but
// registers its subscriptions and on-connect step with the link.
func NewRelay(opts RelayOptions) (*Relay, error) {
	if opts.Store == nil {
		return nil, errdefs.InvalidArgument("logs: RelayOptions.Store is required")
	}
	if opts.Link != nil && opts.Serial == "" {
		return nil, errdefs.InvalidArgument("logs: RelayOptions.Serial is required with a Link")
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.FlushBytes <= 0 {
		opts.FlushBytes = DefaultFlushBytes
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Relay{
		st:            opts.Store,
		engine:        opts.Engine,
		link:          opts.Link,
		log:           opts.Log.With().Str("component", "logs").Logger(),
		now:           opts.Now,
		serial:        opts.Serial,
		topicPrefix:   TopicPrefix + opts.Serial + ".",
		flushInterval: opts.FlushInterval,
		flushBytes:    opts.FlushBytes,
		maxPending:    opts.MaxPending,
		storeCap:      storeBufferFactor * opts.FlushBytes,
		storeSig:      newFlushSignal(),
		pubSig:        newFlushSignal(),
		matchWake:     make(chan struct{}, 1),
		streams:       map[string]*stream{},
		subs:          newSubscriptions(),
		matchq:        map[string]struct{}{},
	}
	if r.link != nil {
		r.link.Subscribe(metaOnCreate, r.onCreate)
		r.link.Subscribe(metaOnDelete, r.onDelete)
		r.link.OnConnect("log subscriptions", r.onConnect)
		r.link.OnStateChange(r.onStateChange)
	}
	return r, nil
}

// Name names the relay as a reconciler hook and an agent part.
func (r *Relay) Name() string { return "logs" }

// Run runs the storer, the publisher and the followers until ctx ends,
// then stores what is still buffered and returns after every goroutine it
// started has ended.
func (r *Relay) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errdefs.Conflict("logs: the relay runs already")
	}
	r.started = true
	r.runCtx = ctx
	for _, s := range r.streams {
		if s.follow != nil && s.follow.cancel == nil {
			r.startFollowerLocked(s, s.follow)
		}
	}
	r.mu.Unlock()

	var loops sync.WaitGroup
	loops.Go(func() { r.storeLoop(ctx) })
	if r.link != nil {
		loops.Go(func() { r.publishLoop(ctx) })
		loops.Go(func() { r.matchLoop(ctx) })
	}
	<-ctx.Done()
	loops.Wait()
	r.mu.Lock()
	r.runCtx = nil
	r.mu.Unlock()
	r.followers.Wait()

	// What the followers read last goes to the store now; without this it
	// would be read again after a restart, but agent messages would be lost.
	fctx, cancel := context.WithTimeout(context.Background(), finalFlushTimeout)
	defer cancel()
	for _, s := range r.snapshot() {
		if err := r.storeStream(fctx, s, true); err != nil {
			r.log.Warn().Err(err).Str("log", s.name).Msg("lines not stored at shutdown")
		}
	}
	return nil
}

// snapshot lists the current logs.
func (r *Relay) snapshot() []*stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*stream, 0, len(r.streams))
	for _, s := range r.streams {
		out = append(out, s)
	}
	return out
}

// streamLocked returns the log called name, creating it (and asking the
// router whether somebody already subscribes). name must be valid.
func (r *Relay) streamLocked(name string, k store.Key) *stream {
	if s := r.streams[name]; s != nil {
		return s
	}
	s := &stream{
		name:  name,
		key:   k,
		topic: r.topicPrefix + name,
		room:  make(chan struct{}),
		pub:   batcher{max: r.maxPending},
	}
	s.live = r.link != nil && r.subs.covers(s.topic)
	r.streams[name] = s
	r.queueMatchLocked(s.topic)
	return s
}

// streamFor returns the log called name for an agent message; nil (and a
// debug line) for a name that is not an app log.
func (r *Relay) streamFor(name string) *stream {
	k, err := KeyOf(name)
	if err != nil {
		r.log.Debug().Err(err).Str("log", name).Msg("message for an invalid log name ignored")
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.streamLocked(name, k)
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// flushSignal wakes a flush loop. Idle, the loop sleeps: no ticker runs
// while nothing waits.
type flushSignal struct {
	dirty chan struct{} // cap 1: something waits; flush within the interval
	full  chan struct{} // cap 1: a batch is complete (or urgent); flush now
}

func newFlushSignal() flushSignal {
	return flushSignal{dirty: make(chan struct{}, 1), full: make(chan struct{}, 1)}
}

func (f flushSignal) markDirty() { poke(f.dirty) }
func (f flushSignal) markFull()  { poke(f.full) }

// wait blocks until something waits and then until the interval has
// passed or a batch is complete; false when ctx ended.
func (f flushSignal) wait(ctx context.Context, interval time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-f.full:
		return true
	case <-f.dirty:
	}
	t := time.NewTimer(interval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-f.full:
	}
	return true
}

// sleepCtx waits d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff is the wait before retry n (1, 2, …): doubling from retryMin,
// capped at retryMax.
func backoff(n int) time.Duration {
	d := retryMin
	for i := 1; i < n && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
}

// isCanceled reports whether err is only the end of ctx.
func isCanceled(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}
