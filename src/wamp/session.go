// Package wamp is the device's link to the IronFlock cloud: one WAMP
// session over nexus that dials the router with wampcra, reconnects forever
// with jittered backoff, runs the on-connect sequence of the reference
// agent on every WELCOME, keeps the heartbeat going, and serves the device
// procedures with a privilege check, argument decoding, panic recovery and
// the reference's error shape.
//
// State it owns: the connection (the nexus client, whether the on-connect
// sequence finished), the procedure and subscription tables, the cloud's
// base URL and app credential key, and the device's in-memory identity
// after metadata changes. Nobody reads its fields: ask its methods or
// subscribe with OnStateChange.
package wamp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/rs/zerolog"

	"reagent/src/config"
	"reagent/src/errdefs"
)

// Realm is the realm every device joins.
const Realm = "realm1"

// Defaults of the knobs in Options.
const (
	DefaultCallTimeout       = 10 * time.Second
	DefaultResponseTimeout   = 5 * time.Second
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultBackoffBase       = 500 * time.Millisecond
	DefaultBackoffCap        = 30 * time.Second
	DefaultStableAfter       = 10 * time.Second
	DefaultDuplicateLimit    = 8 // the reference's maxDuplicateSerialAttempts
	DefaultPrivilegeCacheTTL = 10 * time.Second
	DefaultCloseTimeout      = 2 * time.Second
	testamentTimeout         = 10 * time.Second // the reference's bound
)

// Options configure a Session. Flock is required; zero durations take the
// defaults above.
type Options struct {
	Flock     *config.Flock
	FlockPath string // where to save metadata changes; "" → never saved

	// ConnTimeout bounds the websocket dial of one attempt (-connTimeout;
	// 0 = no bound beyond the context). ResponseTimeout bounds the
	// router's answers to HELLO, REGISTER, SUBSCRIBE, acknowledged
	// PUBLISH (-respTimeout). KeepAlive is the websocket ping interval
	// (-ppTimeout; 0 = off).
	ConnTimeout, ResponseTimeout, KeepAlive time.Duration
	CallTimeout                             time.Duration // default deadline of calls (≈10 s)
	Debug                                   bool          // -debugMessaging: nexus's own debug log
	Stats                                   StatsFunc     // heartbeat stats; nil → "stats": null
	TunnelCapable                           func() bool   // nil → false (the field is always sent)
	Backend                                 Backend       // may also be given later with SetBackend, before Run
	Log                                     zerolog.Logger

	// Knobs for tests; zero takes the default.
	HeartbeatInterval time.Duration
	BackoffBase       time.Duration
	BackoffCap        time.Duration
	StableAfter       time.Duration  // a connection up this long resets the backoff
	DuplicateLimit    int            // consecutive procedure_already_exists before giving up
	PrivilegeCacheTTL time.Duration  // < 0 disables the check_privilege cache
	CloseTimeout      time.Duration  // bound of the GOODBYE at shutdown
	Rand              func() float64 // [0,1) for the backoff jitter
	Now               func() time.Time
	OnBackoff         func(wait, ceiling time.Duration) // observes every wait (tests, metrics)
}

// Session is the device's link to the cloud. Build it with New, add
// procedures, subscriptions and on-connect steps, then Run it.
type Session struct {
	// Fixed at New.
	opts   Options
	serial string
	log    zerolog.Logger
	notify *notifier

	mu sync.Mutex // guards every field below; never held during I/O or callbacks
	// backend is nil until SetBackend (or Options.Backend).
	backend Backend
	// flock is our copy of the .flock, replaced when the cloud changes the
	// device's metadata. Others keep the pointer they were given.
	flock *config.Flock
	procs map[string]*procedure
	subs  map[string]EventFunc
	hooks []hook
	// link is the current connection; nil while there is none.
	link *link
	// connected: the on-connect sequence finished on link. up is closed
	// while connected and replaced when the connection ends.
	connected  bool
	up         chan struct{}
	baseURL    string
	appCredKey string
	privCache  map[privKey]privEntry
	running    bool
}

// EventFunc handles one event of a subscription. It runs on nexus's
// receive goroutine: it must return quickly and hand longer work over.
type EventFunc func(args []any, kwargs map[string]any, details map[string]any)

type hook struct {
	name string
	step func(ctx context.Context) error
}

// New checks the options and builds a session. It starts nothing.
func New(opts Options) (*Session, error) {
	if opts.Flock == nil {
		return nil, errdefs.InvalidArgument("wamp: Options.Flock is required")
	}
	if opts.Flock.SerialNumber == "" {
		return nil, errdefs.InvalidArgument("wamp: the .flock has no serial_number")
	}
	setDefaults(&opts)
	fl := *opts.Flock // our own copy: metadata changes replace it
	s := &Session{
		opts:      opts,
		serial:    opts.Flock.SerialNumber,
		log:       opts.Log.With().Str("component", "wamp").Logger(),
		notify:    newNotifier(),
		backend:   opts.Backend,
		flock:     &fl,
		procs:     map[string]*procedure{},
		subs:      map[string]EventFunc{},
		up:        make(chan struct{}),
		privCache: map[privKey]privEntry{},
	}
	s.procs[procEstablished] = &procedure{name: procEstablished, priv: Public, handler: helloHandler}
	return s, nil
}

func setDefaults(o *Options) {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ResponseTimeout, DefaultResponseTimeout)
	def(&o.CallTimeout, DefaultCallTimeout)
	def(&o.HeartbeatInterval, DefaultHeartbeatInterval)
	def(&o.BackoffBase, DefaultBackoffBase)
	def(&o.BackoffCap, DefaultBackoffCap)
	def(&o.StableAfter, DefaultStableAfter)
	def(&o.CloseTimeout, DefaultCloseTimeout)
	if o.PrivilegeCacheTTL == 0 {
		o.PrivilegeCacheTTL = DefaultPrivilegeCacheTTL
	}
	if o.DuplicateLimit <= 0 {
		o.DuplicateLimit = DefaultDuplicateLimit
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// SetBackend gives the session the cloud procedures it needs. Call it
// before Run (the backend is usually built on top of the session).
func (s *Session) SetBackend(b Backend) {
	s.mu.Lock()
	s.backend = b
	s.mu.Unlock()
}

// Serial is the device's serial number, the <serial> of its URIs.
func (s *Session) Serial() string { return s.serial }

// BaseURL is the cloud's base URL from the last heartbeat answer that
// carried one ("" until then).
func (s *Session) BaseURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// AppCredKey is the key from get_app_cred_key ("" until fetched).
func (s *Session) AppCredKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appCredKey
}

// Flock is the device's .flock as the session knows it now, with the
// metadata the cloud changed since start (name, swarm, owner). It is a
// copy; its pointer fields are shared and must not be changed.
func (s *Session) Flock() config.Flock {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.flock
}

// AuthID is the authid the next connection uses.
func (s *Session) AuthID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flock.AuthID()
}

// Connected reports whether the on-connect sequence has finished on the
// current connection.
func (s *Session) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected
}

// WaitConnected blocks until Connected or ctx ends. Do not call it from an
// OnConnect step: those run before the session counts as connected.
func (s *Session) WaitConnected(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.connected {
			s.mu.Unlock()
			return nil
		}
		up := s.up
		s.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// OnStateChange adds fn to the functions told about every change of
// Connected. They are called from one goroutine, in order; a slow fn
// delays the later notifications, not the session.
func (s *Session) OnStateChange(fn func(connected bool)) { s.notify.add(fn) }

// OnConnect adds a named step to the on-connect sequence. Steps run in
// the order added, after update_device_architecture and before CONNECTED
// is reported; their context ends when the connection does. An error is
// logged and does not abort the connection.
func (s *Session) OnConnect(name string, step func(ctx context.Context) error) {
	s.mu.Lock()
	s.hooks = append(s.hooks, hook{name: name, step: step})
	s.mu.Unlock()
}

// errNotConnected is what Call and Publish answer while there is no link.
func errNotConnected() error { return errdefs.Unavailable("not connected to the cloud") }

// Call calls a procedure of the cloud (or of another peer). A ctx without
// a deadline gets CallTimeout. Without a connection it fails at once with
// ErrUnavailable; an ERROR answer is a *RemoteError. When ctx ends or the
// connection is torn down, the call is cancelled at the router.
func (s *Session) Call(ctx context.Context, procedure string, args []any, kwargs map[string]any) (Result, error) {
	l := s.acquire()
	if l == nil {
		return Result{}, fmt.Errorf("call %s: %w", procedure, errNotConnected())
	}
	defer s.release(l)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.CallTimeout)
		defer cancel()
	}
	// nexus answers a cancelled context with CANCEL and then waits up to
	// ResponseTimeout for the router's ERROR, connection or not. So its
	// context ends only while the router is there to answer; without a
	// connection nexus returns by itself.
	nctx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	abortIfConnected := func() {
		if l.cli.Connected() {
			abort()
		}
	}
	defer context.AfterFunc(ctx, abortIfConnected)()
	defer context.AfterFunc(l.ctx, abortIfConnected)()
	res, err := l.cli.Call(nctx, procedure, nil, args, kwargs, nil)
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			err = ctx.Err() // the caller's reason: cancelled or out of time
		}
		return Result{}, callError(procedure, err)
	}
	return Result{Args: []any(res.Arguments), Kwargs: map[string]any(res.ArgumentsKw)}, nil
}

// Publish publishes an event. Without a connection it fails at once with
// ErrUnavailable; with acknowledge it waits at most ResponseTimeout for
// the router.
func (s *Session) Publish(topic string, args []any, kwargs map[string]any, acknowledge bool) error {
	l := s.acquire()
	if l == nil {
		return fmt.Errorf("publish %s: %w", topic, errNotConnected())
	}
	defer s.release(l)
	opts := map[string]any{}
	if acknowledge {
		opts["acknowledge"] = true
	}
	if err := l.cli.Publish(topic, opts, args, kwargs); err != nil {
		if errors.Is(err, client.ErrNotConn) {
			return fmt.Errorf("publish %s: %w", topic, errNotConnected())
		}
		return fmt.Errorf("publish %s: %w: %w", topic, errdefs.ErrUnavailable, err)
	}
	return nil
}
