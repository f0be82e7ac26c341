package docker

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/client"
	"github.com/rs/zerolog"
)

// Options configure a Client.
type Options struct {
	// Host is the engine address ("unix:///var/run/docker.sock",
	// "tcp://127.0.0.1:2375"); empty means $DOCKER_HOST or the default socket.
	Host string
	Log  zerolog.Logger
}

// Client talks to one Docker engine. Safe for concurrent use.
type Client struct {
	api *client.Client
	log zerolog.Logger

	// Reconnect pacing of WaitReady and WatchEvents; tests shorten them.
	retryMin, retryMax time.Duration
	// A stream that lived this long counts as healthy and resets the backoff.
	healthyAfter time.Duration
}

// EngineInfo describes the engine the client is connected to.
type EngineInfo struct {
	APIVersion    string // the engine's API version, e.g. "1.41"
	ServerVersion string // e.g. "20.10.24+dfsg1"
	OS            string // e.g. "linux"
	Arch          string // Go architecture name, e.g. "amd64"
	DataRoot      string // e.g. "/var/lib/docker"
}

// New builds a client; it does no I/O, so it succeeds with the engine down.
func New(opts Options) (*Client, error) {
	sdkOpts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if opts.Host != "" {
		sdkOpts = append(sdkOpts, client.WithHost(opts.Host))
	}
	api, err := client.NewClientWithOpts(sdkOpts...)
	if err != nil {
		return nil, fmt.Errorf("docker client for %q: %w", opts.Host, classify(err))
	}
	return &Client{
		api:          api,
		log:          opts.Log.With().Str("component", "docker").Logger(),
		retryMin:     250 * time.Millisecond,
		retryMax:     30 * time.Second,
		healthyAfter: 10 * time.Second,
	}, nil
}

// Close releases the client's idle connections.
func (c *Client) Close() error { return c.api.Close() }

// Ping checks the engine is reachable and describes it.
func (c *Client) Ping(ctx context.Context) (EngineInfo, error) {
	v, err := c.api.ServerVersion(ctx)
	if err != nil {
		return EngineInfo{}, wrapf(err, "docker version")
	}
	info, err := c.api.Info(ctx)
	if err != nil {
		return EngineInfo{}, wrapf(err, "docker info")
	}
	return EngineInfo{
		APIVersion:    v.APIVersion,
		ServerVersion: v.Version,
		OS:            v.Os,
		Arch:          v.Arch,
		DataRoot:      info.DockerRootDir,
	}, nil
}

// WaitReady pings the engine with capped backoff until it answers or ctx
// ends; on timeout the last engine error is included.
func (c *Client) WaitReady(ctx context.Context) error {
	bo := newBackoff(c.retryMin, c.retryMax)
	for {
		_, err := c.api.Ping(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("wait for docker engine: %w (last error: %v)", ctx.Err(), err)
		}
		d := bo.next()
		c.log.Debug().Err(err).Dur("retry_in", d).Msg("engine not ready")
		if serr := sleepCtx(ctx, d); serr != nil {
			return fmt.Errorf("wait for docker engine: %w (last error: %v)", serr, err)
		}
	}
}
