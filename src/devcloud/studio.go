package devcloud

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/gammazero/nexus/v3/wamp/crsign"
	"github.com/rs/zerolog"

	"reagent/src/errdefs"
)

// defaultCallTimeout bounds CallDevice when ctx has no deadline: a device
// that never answers must not hang a test forever.
const defaultCallTimeout = time.Minute

// DialOptions say how a Studio session joins the realm.
type DialOptions struct {
	URL    string // the router, e.g. "ws://localhost:8080/ws-re-dev"
	AuthID string // "system" or a numeric account key
	Secret string
	Log    zerolog.Logger
}

// Dial joins the realm as a Studio user with wampcra over JSON, as the
// Studio web app does.
func Dial(ctx context.Context, o DialOptions) (*client.Client, error) {
	secret := o.Secret
	cfg := client.Config{
		Realm:         Realm,
		HelloDetails:  wamp.Dict{"authid": o.AuthID},
		Serialization: serialize.JSON,
		AuthHandlers: map[string]client.AuthFunc{
			"wampcra": func(ch *wamp.Challenge) (string, wamp.Dict) {
				return crsign.RespondChallenge(secret, ch, nil), wamp.Dict{}
			},
		},
		ResponseTimeout: 10 * time.Second,
		Logger:          stdLogger{o.Log.With().Str("part", "studio-client").Logger()},
	}
	cl, err := client.ConnectNet(ctx, o.URL, cfg)
	if err != nil {
		return nil, fmt.Errorf("join %s as %s: %w", o.URL, o.AuthID, err)
	}
	return cl, nil
}

// Session opens a new Studio session (wampcra) as authid, for subscribing
// to log topics and the like. The caller may close it; Close closes it
// otherwise.
func (c *Cloud) Session(ctx context.Context, authid string) (*client.Client, error) {
	cl, err := c.dialAs(ctx, authid)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cl.Close()
		return nil, errdefs.Unavailable("devcloud is closed")
	}
	c.sessions = append(c.sessions, cl)
	return cl, nil
}

func (c *Cloud) dialAs(ctx context.Context, authid string) (*client.Client, error) {
	pr, ok := c.ids.get(authid)
	if !ok || pr.role == RoleDevice {
		return nil, errdefs.NotFound("no Studio user %q", authid)
	}
	return Dial(ctx, DialOptions{URL: c.RouterURL(), AuthID: authid, Secret: pr.secret, Log: c.log})
}

// studioSession returns the cached session of authid, dialling a new one if
// there is none or the old one was dropped (StopRouter).
func (c *Cloud) studioSession(ctx context.Context, authid string) (*client.Client, error) {
	c.mu.Lock()
	cl := c.studio[authid]
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, errdefs.Unavailable("devcloud is closed")
	}
	if cl != nil && cl.Connected() {
		return cl, nil
	}
	cl, err := c.dialAs(ctx, authid)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cl.Close()
		return nil, errdefs.Unavailable("devcloud is closed")
	}
	if old := c.studio[authid]; old != nil && old != cl {
		old.Close()
	}
	c.studio[authid] = cl
	return cl, nil
}

// CallDevice calls re.mgmt.<serial>.<procedure> as the given Studio user
// (cached session per authid), with disclose_me:true. A WAMP error comes
// back as client.RPCError.
func (c *Cloud) CallDevice(ctx context.Context, authid, serial, procedure string, args wamp.List, kwargs wamp.Dict) (*wamp.Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCallTimeout)
		defer cancel()
	}
	cl, err := c.studioSession(ctx, authid)
	if err != nil {
		return nil, err
	}
	res, err := CallDevice(ctx, cl, serial, procedure, args, kwargs)
	if errors.Is(err, client.ErrNotConn) {
		// The cached session was dropped (StopRouter) and has only now
		// noticed; a fresh one can still make the call.
		if cl, err = c.studioSession(ctx, authid); err != nil {
			return nil, err
		}
		res, err = CallDevice(ctx, cl, serial, procedure, args, kwargs)
	}
	return res, err
}

// CallDevice calls re.mgmt.<serial>.<procedure> on an open Studio session
// with disclose_me:true, which the agent needs to see who calls.
func CallDevice(ctx context.Context, cl *client.Client, serial, procedure string, args wamp.List, kwargs wamp.Dict) (*wamp.Result, error) {
	return cl.Call(ctx, DeviceProcedure(serial, procedure), wamp.Dict{wamp.OptDiscloseMe: true}, args, kwargs, nil)
}

// DeviceProcedure is the URI of a device procedure, re.mgmt.<serial>.<name>.
func DeviceProcedure(serial, name string) string { return "re.mgmt." + serial + "." + name }

// LogTopic is the topic an app's log lines go to,
// reswarm.logs.<serial>.<container>.
func LogTopic(serial, container string) string { return "reswarm.logs." + serial + "." + container }

// LogTap is a Studio subscriber of a log topic that counts the lines that
// arrive (each event is a newline-joined batch) and keeps only the agent's
// drop markers, so that following a flood costs it no memory.
type LogTap struct {
	cl      *client.Client
	mu      sync.Mutex
	lines   int
	markers []string
}

// TapLog subscribes to topic as system. Close ends the session.
func (c *Cloud) TapLog(ctx context.Context, topic string) (*LogTap, error) {
	cl, err := c.Session(ctx, SystemAuthID)
	if err != nil {
		return nil, err
	}
	tap := &LogTap{cl: cl}
	if err := cl.Subscribe(topic, tap.onEvent, nil); err != nil {
		_ = cl.Close()
		return nil, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	return tap, nil
}

func (t *LogTap) onEvent(ev *wamp.Event) {
	for _, v := range ev.Arguments {
		s, _ := v.(string)
		n := strings.Count(s, "\n") + 1
		var ms []string
		for l := range strings.SplitSeq(s, "\n") {
			if strings.HasPrefix(l, "… ") && strings.HasSuffix(l, " log line(s) dropped (rate limit)") {
				ms = append(ms, l)
			}
		}
		t.mu.Lock()
		t.lines += n
		t.markers = append(t.markers, ms...)
		t.mu.Unlock()
	}
}

// Lines is how many lines arrived so far.
func (t *LogTap) Lines() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lines
}

// FirstMarker is the first drop marker that arrived; "" when none did.
func (t *LogTap) FirstMarker() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.markers) == 0 {
		return ""
	}
	return t.markers[0]
}

// Close ends the subscriber's session.
func (t *LogTap) Close() { _ = t.cl.Close() }
