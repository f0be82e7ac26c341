package wamp

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gammazero/nexus/v3/client"
	nx "github.com/gammazero/nexus/v3/wamp"
	"github.com/rs/zerolog"
)

// ondestroyTopic is the literal URI the cloud publishes device deletions
// on (the reference never filled in the %d, so neither does the cloud).
const ondestroyTopic = "reswarm.device.%d.list/ondestroy"

// outcome is how one connection ended.
type outcome struct {
	duplicate       bool // the router refused wamp_connection_established
	identityChanged bool // the cloud changed swarm_key: redial with the new authid
	upFor           time.Duration
	reason          string
}

// serve runs one connection: the on-connect sequence in the reference
// order (wamp-contract §1.5, §1.8), then the heartbeat, until the
// connection drops, the heartbeat gives up, the identity changes or ctx
// ends. It closes the link before returning.
func (s *Session) serve(ctx context.Context, l *link, be Backend) (out outcome) {
	connCtx, cancel := context.WithCancel(ctx)
	l.ctx = connCtx
	cli := l.cli
	log := s.log.With().Uint64("wamp_session", l.sessionID).Logger()
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-cli.Done():
			// The router is gone: end the connection's context, and close
			// the client now rather than when the on-connect sequence
			// notices, because a send into the dead connection blocks
			// until that close.
			cancel()
			s.closeLink(l, log)
		case <-connCtx.Done():
		}
	})
	s.mu.Lock()
	s.link = l
	s.mu.Unlock()
	start := s.opts.Now()
	log.Info().Str("authid", s.AuthID()).Msg("joined realm")
	defer func() {
		s.setDisconnected(l)
		cancel()
		s.closeLink(l, log)
		wg.Wait()
		out.upFor = s.opts.Now().Sub(start)
	}()

	steps := []struct {
		name string
		run  func() bool // false: stop, out says why
	}{
		{"register wamp_connection_established", func() bool { return s.stepEstablished(l, log, &out) }},
		{"subscribe ondestroy", func() bool { s.stepOndestroy(l, log); return true }},
		{"add testament", func() bool { s.stepTestament(connCtx, be, l, log); return true }},
		{"read device metadata", func() bool { return s.stepMetadata(connCtx, be, log, &out) }},
		{"get app cred key", func() bool { s.stepAppCredKey(connCtx, be, log); return true }},
		{"status CONFIGURING", func() bool { s.stepStatus(connCtx, be, l, StatusConfiguring, log); return true }},
		{"register procedures", func() bool { s.stepRegister(l, log); return true }},
		{"subscribe topics", func() bool { s.stepSubscribe(l, log); return true }},
		{"update device architecture", func() bool { s.stepArchitecture(connCtx, be, log); return true }},
		{"on-connect hooks", func() bool { s.stepHooks(connCtx, log); return true }},
		{"status CONNECTED", func() bool { s.stepStatus(connCtx, be, l, StatusConnected, log); return true }},
	}
	for _, st := range steps {
		if connCtx.Err() != nil {
			out.reason = "connection lost before " + st.name
			return out
		}
		t0 := time.Now()
		if !st.run() {
			return out
		}
		log.Debug().Str("step", st.name).Dur("took", time.Since(t0)).Msg("on-connect step done")
	}
	if connCtx.Err() != nil {
		out.reason = "connection lost during the on-connect sequence"
		return out
	}
	s.setConnected(l)
	log.Info().Dur("took", s.opts.Now().Sub(start)).Msg("connected")
	out.reason = s.heartbeat(connCtx, be, l, log)
	return out
}

func (s *Session) setConnected(l *link) {
	s.mu.Lock()
	if s.link != l || s.connected {
		s.mu.Unlock()
		return
	}
	s.connected = true
	close(s.up)
	s.mu.Unlock()
	s.notify.push(true)
}

func (s *Session) setDisconnected(l *link) {
	s.mu.Lock()
	if s.link != l {
		s.mu.Unlock()
		return
	}
	s.link = nil
	was := s.connected
	if was {
		s.connected = false
		s.up = make(chan struct{})
	}
	s.mu.Unlock()
	if was {
		s.notify.push(false)
	}
}

// stepEstablished registers wamp_connection_established without
// force_reregister: a refusal means another live session has this serial.
func (s *Session) stepEstablished(l *link, log zerolog.Logger, out *outcome) bool {
	err := s.withLink(l, func(cli *client.Client) error {
		return cli.Register(ProcedureURI(s.serial, procEstablished), s.invocationHandler(l, procEstablished), nil)
	})
	if err == nil {
		return true
	}
	if strings.Contains(err.Error(), "procedure_already_exists") {
		log.Warn().Str("serial", s.serial).Msg("another session holds this serial")
		out.duplicate = true
		out.reason = "duplicate serial"
		return false
	}
	log.Warn().Err(err).Msg("register wamp_connection_established")
	return true
}

func (s *Session) stepOndestroy(l *link, log zerolog.Logger) {
	s.mu.Lock()
	deviceKey := s.flock.DeviceKey
	s.mu.Unlock()
	onDestroy := func(ev *nx.Event) {
		s.safeEvent(ondestroyTopic, func(args []any, kwargs map[string]any, _ map[string]any) {
			if namesDevice(args, kwargs, deviceKey, s.serial) {
				// Deleting apps or exiting is the operator's decision,
				// never an event's (DESIGN §4).
				s.log.Warn().Interface("args", args).Msg("the cloud deleted this device")
				return
			}
			s.log.Debug().Interface("args", args).Msg("ondestroy event for another device")
		}, ev)
	}
	err := s.withLink(l, func(cli *client.Client) error { return cli.Subscribe(ondestroyTopic, onDestroy, nil) })
	if err != nil {
		log.Warn().Err(err).Msg("subscribe ondestroy")
	}
}

// namesDevice reports whether an ondestroy event is about this device: its
// device_key or serial in args[0] (as a value or in a dict) or in kwargs.
func namesDevice(args []any, kwargs map[string]any, deviceKey int64, serial string) bool {
	match := func(v any) bool {
		if s, ok := v.(string); ok && s == serial {
			return true
		}
		n, ok := ToInt64(v, true)
		return ok && n == deviceKey
	}
	matchDict := func(d map[string]any) bool {
		for _, k := range []string{"device_key", "serial_number"} {
			if v, ok := d[k]; ok && match(v) {
				return true
			}
		}
		return false
	}
	if len(args) > 0 {
		if d, ok := asDict(args[0]); ok {
			if matchDict(d) {
				return true
			}
		} else if match(args[0]) {
			return true
		}
	}
	return matchDict(kwargs)
}

func (s *Session) stepTestament(ctx context.Context, be Backend, l *link, log zerolog.Logger) {
	tctx, cancel := context.WithTimeout(ctx, testamentTimeout)
	defer cancel()
	if err := be.AddTestament(tctx, l.sessionID); err != nil {
		log.Warn().Err(err).Msg("add testament")
	}
}

// stepMetadata saves the names the cloud keeps for the device into the
// .flock, and asks for a redial when the swarm (and so the authid) changed.
func (s *Session) stepMetadata(ctx context.Context, be Backend, log zerolog.Logger, out *outcome) bool {
	md, err := be.ReadDeviceMetadata(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("read device metadata")
		return true
	}
	swarmChanged, err := s.applyMetadata(md, be)
	if err != nil {
		log.Error().Err(err).Msg("save device metadata")
	}
	if swarmChanged {
		log.Info().Int64("swarm_key", md.SwarmKey).Msg("the cloud moved the device to another swarm; reconnecting")
		out.identityChanged = true
		out.reason = "swarm_key changed"
		return false
	}
	return true
}

// applyMetadata updates our copy of the .flock with what changed and saves
// it once. Empty values and a zero swarm key mean "not sent", never "clear".
func (s *Session) applyMetadata(md DeviceMetadata, be Backend) (swarmChanged bool, err error) {
	s.mu.Lock()
	next := *s.flock
	s.mu.Unlock()
	changed := false
	set := func(dst *string, v string) {
		if v != "" && *dst != v {
			*dst = v
			changed = true
		}
	}
	set(&next.Name, md.Name)
	set(&next.SwarmName, md.SwarmName)
	set(&next.SwarmOwnerName, md.OwnerName)
	if md.SwarmKey > 0 && md.SwarmKey != next.SwarmKey {
		next.SwarmKey = md.SwarmKey
		changed, swarmChanged = true, true
	}
	if !changed {
		return false, nil
	}
	if s.opts.FlockPath != "" {
		err = next.Save(s.opts.FlockPath)
	}
	s.mu.Lock()
	s.flock = &next
	s.mu.Unlock()
	if swarmChanged {
		be.SetSwarmKey(next.SwarmKey)
	}
	return swarmChanged, err
}

func (s *Session) stepAppCredKey(ctx context.Context, be Backend, log zerolog.Logger) {
	key, err := be.GetAppCredKey(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("get app cred key")
		return
	}
	s.mu.Lock()
	s.appCredKey = key
	s.mu.Unlock()
}

func (s *Session) stepStatus(ctx context.Context, be Backend, l *link, status string, log zerolog.Logger) {
	if err := s.reportStatus(ctx, be, l, status); err != nil {
		log.Warn().Err(err).Str("status", status).Msg("update device status")
	}
}

// reportStatus sends one update_device_status with fresh stats and keeps
// the base URL the cloud answers.
func (s *Session) reportStatus(ctx context.Context, be Backend, l *link, status string) error {
	st := DeviceStatus{Status: status, SessionID: l.sessionID}
	if s.opts.TunnelCapable != nil {
		st.TunnelCapable = s.opts.TunnelCapable()
	}
	if s.opts.Stats != nil {
		sctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
		stats, err := s.opts.Stats(sctx)
		cancel()
		if err != nil {
			s.log.Debug().Err(err).Msg("stats")
		} else {
			st.Stats = stats
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	base, err := be.UpdateDeviceStatus(cctx, st)
	if err != nil {
		return err
	}
	if base != "" {
		s.mu.Lock()
		s.baseURL = base
		s.mu.Unlock()
	}
	return nil
}

func (s *Session) stepRegister(l *link, log zerolog.Logger) {
	s.mu.Lock()
	l.regDone = true // from here on Register acts on l itself
	s.mu.Unlock()
	names := s.procedureNames()
	// All REGISTERs at once: the router answers each on its own, so the
	// step takes one round trip instead of one per procedure.
	var (
		wg     sync.WaitGroup
		failed atomic.Int32
	)
	for _, n := range names {
		wg.Go(func() {
			if l.ctx.Err() != nil {
				failed.Add(1)
				return
			}
			if err := s.withLink(l, func(*client.Client) error { return s.registerOn(l, n) }); err != nil {
				failed.Add(1)
				log.Warn().Err(err).Str("procedure", n).Msg("register")
			}
		})
	}
	wg.Wait()
	log.Debug().Int("procedures", len(names)-int(failed.Load())).Int32("failed", failed.Load()).Msg("procedures registered")
}

func (s *Session) stepSubscribe(l *link, log zerolog.Logger) {
	s.mu.Lock()
	l.subDone = true
	s.mu.Unlock()
	for _, t := range s.topics() {
		if l.ctx.Err() != nil {
			return
		}
		if err := s.withLink(l, func(cli *client.Client) error { return s.subscribeOn(cli, t) }); err != nil {
			log.Warn().Err(err).Str("topic", t).Msg("subscribe")
		}
	}
}

func (s *Session) stepArchitecture(ctx context.Context, be Backend, log zerolog.Logger) {
	if err := be.UpdateDeviceArchitecture(ctx); err != nil {
		log.Warn().Err(err).Msg("update device architecture")
	}
}

func (s *Session) stepHooks(ctx context.Context, log zerolog.Logger) {
	s.mu.Lock()
	hooks := append([]hook(nil), s.hooks...)
	s.mu.Unlock()
	for _, h := range hooks {
		if ctx.Err() != nil {
			return
		}
		t0 := time.Now()
		if err := s.safeStep(ctx, h); err != nil {
			log.Warn().Err(err).Str("step", h.name).Msg("on-connect step failed")
			continue
		}
		log.Debug().Str("step", h.name).Dur("took", time.Since(t0)).Msg("on-connect step done")
	}
}

func (s *Session) safeStep(ctx context.Context, h hook) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	return h.step(ctx)
}

// heartbeat reports CONNECTED with fresh stats every HeartbeatInterval
// until the connection ends; two failures in a row end it (a link that
// cannot reach the backend is not worth keeping).
func (s *Session) heartbeat(ctx context.Context, be Backend, l *link, log zerolog.Logger) string {
	t := time.NewTicker(s.opts.HeartbeatInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return "connection lost"
		case <-t.C:
		}
		if err := s.reportStatus(ctx, be, l, StatusConnected); err != nil {
			if ctx.Err() != nil {
				return "connection lost"
			}
			failures++
			log.Warn().Err(err).Int("failures", failures).Msg("heartbeat")
			if failures >= 2 {
				return "heartbeat failed twice"
			}
			continue
		}
		failures = 0
	}
}
