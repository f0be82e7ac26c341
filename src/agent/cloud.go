package agent

import (
	"context"

	"github.com/rs/zerolog"

	"reagent/src/api"
	"reagent/src/backend"
	"reagent/src/system"
	"reagent/src/wamp"
)

// cloudLink is the part that keeps the device connected: the WAMP session
// with the backend calls it needs and the device procedures.
type cloudLink struct {
	sess *wamp.Session
	be   *backend.Client
}

func (c *cloudLink) Name() string { return "cloud link" }

func (c *cloudLink) Run(ctx context.Context) error { return c.sess.Run(ctx) }

// linkDeps are the parts the device procedures act on.
type linkDeps struct {
	docker       api.DockerAPI // nil when no engine client could be built
	sampler      *system.Sampler
	runner       system.Runner
	restartAgent func()
}

// newCloudLink builds the session, its backend and the procedure table.
func newCloudLink(opts Options, d linkDeps, log zerolog.Logger) (*cloudLink, error) {
	f := opts.Flags
	sampler := d.sampler
	sess, err := wamp.New(wamp.Options{
		Flock:           opts.Flock,
		FlockPath:       f.Config,
		ConnTimeout:     f.ConnTimeout,
		ResponseTimeout: f.ResponseTimeout,
		KeepAlive:       f.PingPongTimeout,
		CallTimeout:     wamp.DefaultCallTimeout,
		Debug:           f.DebugMessaging,
		Stats: func(ctx context.Context) (any, error) {
			return sampler.Stats(ctx)
		},
		// Tunnels are not wired yet; the reference always sends the field.
		TunnelCapable: func() bool { return false },
		Log:           log,
	})
	if err != nil {
		return nil, err
	}
	be := backend.New(sess, opts.Flock, wamp.DefaultCallTimeout)
	sess.SetBackend(sessionBackend{be: be, osName: system.DetailedOS})

	api.Register(sess, api.Deps{
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
	})
	for _, st := range onConnectSteps() {
		sess.OnConnect(st.name, st.run)
	}
	if opts.withSession != nil {
		opts.withSession(sess)
	}
	return &cloudLink{sess: sess, be: be}, nil
}

// step is one named step of the on-connect sequence that runs after the
// session's own steps (metadata, status, registration, architecture) and
// before CONNECTED is reported.
type step struct {
	name string
	run  func(ctx context.Context) error
}

// onConnectSteps are the agent's on-connect steps in order. Next: "sync
// requested app states" (apps reconciler), "revive log streams" (log
// relay), "sync tunnels" (tunnel).
func onConnectSteps() []step { return nil }

// sessionBackend adapts backend.Client to what the session needs.
type sessionBackend struct {
	be     *backend.Client
	osName func() string
}

var _ wamp.Backend = sessionBackend{}

func (b sessionBackend) AddTestament(ctx context.Context, sessionID uint64) error {
	return b.be.AddTestament(ctx, sessionID)
}

func (b sessionBackend) ReadDeviceMetadata(ctx context.Context) (wamp.DeviceMetadata, error) {
	md, err := b.be.ReadDeviceMetadata(ctx)
	if err != nil {
		return wamp.DeviceMetadata{}, err
	}
	return wamp.DeviceMetadata{Name: md.DeviceName, SwarmName: md.SwarmName, OwnerName: md.OwnerName, SwarmKey: md.SwarmKey}, nil
}

func (b sessionBackend) GetAppCredKey(ctx context.Context) (string, error) {
	return b.be.GetAppCredKey(ctx)
}

func (b sessionBackend) UpdateDeviceStatus(ctx context.Context, st wamp.DeviceStatus) (string, error) {
	ans, err := b.be.UpdateDeviceStatus(ctx, st.Status, st.SessionID, st.Stats, st.TunnelCapable)
	return ans.ReswarmBaseURL, err
}

func (b sessionBackend) UpdateDeviceArchitecture(ctx context.Context) error {
	return b.be.UpdateDeviceArchitecture(ctx, b.osName())
}

func (b sessionBackend) CheckPrivilege(ctx context.Context, account uint64, p wamp.Privilege) (bool, error) {
	return b.be.CheckPrivilege(ctx, account, string(p))
}

func (b sessionBackend) SetSwarmKey(k int64) { b.be.SetSwarmKey(k) }
