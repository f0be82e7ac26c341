package wamp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport"
	nx "github.com/gammazero/nexus/v3/wamp"
	"github.com/gammazero/nexus/v3/wamp/crsign"
	"github.com/rs/zerolog"

	"reagent/src/config"
)

// legacyEndpoint matches the old device endpoints that want the .flock's
// client certificate (wamp-contract §1.4).
var legacyEndpoint = regexp.MustCompile(`devices.*\.(com|io):8080`)

// Run keeps the device connected until ctx ends, then says GOODBYE and
// returns nil. It returns a *Fatal when the router rejects the device's
// signature or another session holds the serial; nothing else ends it.
// Every goroutine it starts has ended when it returns.
func (s *Session) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("wamp: Run called twice")
	}
	s.running = true
	be := s.backend
	s.mu.Unlock()
	if be == nil {
		return errors.New("wamp: no Backend; call SetBackend before Run")
	}

	var wg sync.WaitGroup
	notifyCtx, stopNotify := context.WithCancel(context.Background())
	wg.Add(1)
	go func() { defer wg.Done(); s.notify.run(notifyCtx) }()
	defer func() { stopNotify(); wg.Wait() }()

	bo := &Backoff{Base: s.opts.BackoffBase, Cap: s.opts.BackoffCap, Rand: s.opts.Rand}
	duplicates := 0
	redialNow := false // the last connection ended for a new identity
	for ctx.Err() == nil {
		l, err := s.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var fatal *Fatal
			if errors.As(err, &fatal) {
				s.log.Error().Err(err).Msg("giving up")
				return err
			}
			s.log.Warn().Err(err).Str("endpoint", s.opts.Flock.DeviceEndpointURL).Msg("connect failed")
			s.wait(ctx, bo)
			continue
		}
		out := s.serve(ctx, l, be)
		if ctx.Err() != nil {
			return nil
		}
		if out.duplicate {
			duplicates++
			if duplicates >= s.opts.DuplicateLimit {
				return &Fatal{Msg: fmt.Sprintf("a WAMP connection for %s already exists (%d attempts)", s.serial, duplicates)}
			}
		} else {
			duplicates = 0
		}
		if out.upFor >= s.opts.StableAfter {
			bo.Reset()
		}
		// A new identity is tried at once, but only once in a row: a cloud
		// that keeps changing it must not make us spin.
		if out.identityChanged && !redialNow {
			redialNow = true
			continue
		}
		redialNow = false
		s.log.Info().Str("reason", out.reason).Dur("up", out.upFor).Msg("disconnected")
		s.wait(ctx, bo)
	}
	return nil
}

// wait sleeps the next backoff, cut short by ctx.
func (s *Session) wait(ctx context.Context, bo *Backoff) {
	ceiling := bo.Ceiling()
	d := bo.Next()
	if s.opts.OnBackoff != nil {
		s.opts.OnBackoff(d, ceiling)
	}
	s.log.Debug().Dur("wait", d).Dur("ceiling", ceiling).Msg("reconnect backoff")
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// dial connects and joins the realm with the current identity, and
// returns the new link without its context. A rejected signature is a
// *Fatal.
func (s *Session) dial(ctx context.Context) (*link, error) {
	s.mu.Lock()
	fl := *s.flock
	s.mu.Unlock()
	authid := fl.AuthID()
	endpoint := fl.DeviceEndpointURL

	dctx := ctx
	if s.opts.ConnTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, s.opts.ConnTimeout)
		defer cancel()
	}
	conn := &connRef{}
	var challenged atomic.Bool
	secret := fl.Secret
	cfg := client.Config{
		Realm:        Realm,
		HelloDetails: nx.Dict{"authid": authid},
		AuthHandlers: map[string]client.AuthFunc{
			// crsign signs with the raw secret, or with its PBKDF2 key when
			// the CHALLENGE carries a salt.
			"wampcra": func(c *nx.Challenge) (string, nx.Dict) {
				challenged.Store(true)
				return crsign.RespondChallenge(secret.Reveal(), c, nil), nx.Dict{}
			},
		},
		ResponseTimeout: s.opts.ResponseTimeout,
		Logger:          nexusLogger{s.log},
		Debug:           s.opts.Debug,
		WsCfg: transport.WebsocketConfig{KeepAlive: s.opts.KeepAlive, Dial: func(network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(dctx, network, addr)
			if err == nil {
				conn.set(c)
			}
			return c, err
		}},
	}
	if legacyEndpoint.MatchString(endpoint) {
		tc, err := legacyTLS(&fl)
		if err != nil {
			return nil, err
		}
		cfg.TlsCfg = tc
	}
	s.log.Debug().Str("endpoint", endpoint).Str("authid", authid).Msg("connecting")
	cli, peer, err := connect(dctx, endpoint, cfg)
	if err != nil {
		if challenged.Load() && signatureRejected(err) {
			return nil, &Fatal{
				Msg: fmt.Sprintf("the IronFlock device connect authentication failed: %s rejected the wampcra signature of authid %s (is the .flock secret right?)", endpoint, authid),
				Err: err,
			}
		}
		return nil, fmt.Errorf("connect %s as %s: %w", endpoint, authid, err)
	}
	return &link{cli: cli, peer: peer, conn: conn, sessionID: uint64(cli.ID())}, nil
}

// connect is client.ConnectNet with a safePeer between the client and the
// transport's peer.
func connect(ctx context.Context, endpoint string, cfg client.Config) (*client.Client, *safePeer, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, nil, err
	}
	var inner nx.Peer
	switch u.Scheme {
	case "http", "https", "ws", "wss":
		u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
		inner, err = transport.ConnectWebsocketPeer(ctx, u.String(), cfg.Serialization, cfg.TlsCfg, cfg.Logger, &cfg.WsCfg)
	case "tcps", "tcp4s", "tcp6s":
		if cfg.TlsCfg == nil {
			cfg.TlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		inner, err = transport.ConnectRawSocketPeer(ctx, strings.TrimSuffix(u.Scheme, "s"), u.Host, cfg.Serialization, cfg.TlsCfg, cfg.Logger, cfg.RecvLimit)
	case "tcp", "tcp4", "tcp6":
		inner, err = transport.ConnectRawSocketPeer(ctx, u.Scheme, u.Host, cfg.Serialization, cfg.TlsCfg, cfg.Logger, cfg.RecvLimit)
	case "unix":
		inner, err = transport.ConnectRawSocketPeer(ctx, u.Scheme, path.Clean(u.Host+u.Path), cfg.Serialization, nil, cfg.Logger, cfg.RecvLimit)
	default:
		return nil, nil, fmt.Errorf("invalid url: %s", endpoint)
	}
	if err != nil {
		return nil, nil, err
	}
	p := newSafePeer(inner)
	cli, err := client.NewClient(p, cfg)
	if err != nil {
		p.shutdown()
		return nil, nil, err
	}
	return cli, p, nil
}

// signatureRejected tells an ABORT after our AUTHENTICATE from transport
// trouble. nexus's client hands over only the ABORT's message text, so the
// text is all there is: nexus routers say "invalid signature", Crossbar
// "WAMP-CRA client signature is invalid", and an ABORT without a message
// becomes "authentication failed".
func signatureRejected(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "signature") || msg == "authentication failed"
}

// legacyTLS presents the .flock's client certificate. The server's
// certificate is verified (the reference skipped that).
func legacyTLS(fl *config.Flock) (*tls.Config, error) {
	if fl.Authentication == nil || fl.Authentication.Certificate == "" {
		return nil, fmt.Errorf("legacy endpoint %s needs authentication.certificate and .key in the .flock", fl.DeviceEndpointURL)
	}
	cert, err := tls.X509KeyPair([]byte(fl.Authentication.Certificate), []byte(fl.Authentication.Key.Reveal()))
	if err != nil {
		return nil, fmt.Errorf("legacy endpoint client certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// nexusLogger routes nexus's own log lines into ours at debug level.
type nexusLogger struct{ l zerolog.Logger }

func (n nexusLogger) Print(v ...any)                 { n.l.Debug().Msg(strings.TrimSpace(fmt.Sprint(v...))) }
func (n nexusLogger) Println(v ...any)               { n.l.Debug().Msg(strings.TrimSpace(fmt.Sprintln(v...))) }
func (n nexusLogger) Printf(format string, v ...any) { n.l.Debug().Msgf(format, v...) }
