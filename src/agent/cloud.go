package agent

import (
	"context"

	"github.com/rs/zerolog"

	"reagent/src/api"
	"reagent/src/apps"
	"reagent/src/backend"
	"reagent/src/logs"
	"reagent/src/store"
	"reagent/src/system"
	"reagent/src/transfer"
	"reagent/src/wamp"
)

// cloudLink is the part that keeps the device connected: the WAMP session
// with the backend calls it needs and the device procedures.
type cloudLink struct {
	sess *wamp.Session
	be   *backend.Client
	// stats measures the device for the heartbeat; set by serve, before Run.
	stats func(ctx context.Context) (any, error)
}

func (c *cloudLink) Name() string { return "cloud link" }

func (c *cloudLink) Run(ctx context.Context) error { return c.sess.Run(ctx) }

// linkDeps are the parts the device procedures act on.
type linkDeps struct {
	docker       api.DockerAPI // nil when no engine client could be built
	sampler      *system.Sampler
	runner       system.Runner
	restartAgent func()
	apps         *apps.Manager     // nil without an engine client
	relay        *logs.Relay       // non-nil
	transfers    *transfer.Manager // non-nil
	store        *store.Store      // non-nil
}

// newCloudLink builds the session and its backend. The procedures and
// on-connect steps come with serve, once the parts they act on exist.
func newCloudLink(opts Options, log zerolog.Logger) (*cloudLink, error) {
	f := opts.Flags
	c := &cloudLink{}
	sess, err := wamp.New(wamp.Options{
		Flock:           opts.Flock,
		FlockPath:       f.Config,
		ConnTimeout:     f.ConnTimeout,
		ResponseTimeout: f.ResponseTimeout,
		KeepAlive:       f.PingPongTimeout,
		CallTimeout:     wamp.DefaultCallTimeout,
		Debug:           f.DebugMessaging,
		Stats: func(ctx context.Context) (any, error) {
			if c.stats == nil {
				return nil, nil
			}
			return c.stats(ctx)
		},
		// Tunnels are not wired yet; the reference always sends the field.
		TunnelCapable: func() bool { return false },
		Log:           log,
	})
	if err != nil {
		return nil, err
	}
	be := backend.New(sess, opts.Flock, wamp.DefaultCallTimeout)
	sess.SetBackend(be.ForSession(system.DetailedOS))
	c.sess, c.be = sess, be
	return c, nil
}

// serve registers the device procedures and the agent's on-connect steps.
// Call it before Run.
func (c *cloudLink) serve(opts Options, d linkDeps, log zerolog.Logger) {
	f := opts.Flags
	sampler := d.sampler
	c.stats = func(ctx context.Context) (any, error) { return sampler.Stats(ctx) }
	sess := c.sess
	deps := api.Deps{
		Flock:  opts.Flock,
		Flags:  f,
		Docker: d.docker,
		Runner: d.runner,
		Publish: func(topic string, args []any) error {
			return sess.Publish(topic, args, nil, false)
		},
		Log:           log,
		Stats:         sampler.Stats,
		RestartAgent:  d.restartAgent,
		TunnelCapable: func() bool { return false },
		Logs:          api.LogDeps{Relay: d.relay, AgentLogFile: f.LogFile},
		Transfers:     d.transfers,
	}
	if d.apps != nil {
		deps.Apps = d.apps
		deps.Logs.Managed = d.apps.Managed
	} else {
		// No engine client, so no reconciler: the log history of the apps
		// the store knows stays readable, and other names stay refused.
		deps.Logs.Managed = logs.ManagedFromStore(d.store)
	}
	api.Register(sess, deps)
	for _, st := range onConnectSteps(d) {
		sess.OnConnect(st.name, st.run)
	}
	if opts.withSession != nil {
		opts.withSession(sess)
	}
}

// step is one named step of the on-connect sequence that runs after the
// session's own steps (metadata, status, registration, architecture) and
// before CONNECTED is reported.
type step struct {
	name string
	run  func(ctx context.Context) error
}

// onConnectSteps are the agent's on-connect steps in order, after the log
// relay's own ("log subscriptions", added by the relay): "apps" syncs the
// requested app states with the cloud and reports every app. Next: "sync
// tunnels" (tunnel).
func onConnectSteps(d linkDeps) []step {
	var steps []step
	if d.apps != nil {
		steps = append(steps, step{name: "apps", run: d.apps.SyncWithCloud})
	}
	return steps
}

var (
	_ apps.Cloud = (*backend.Client)(nil)
	_ apps.Link  = (*wamp.Session)(nil)
)
