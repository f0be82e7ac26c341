package devcloud

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gammazero/nexus/v3/router"
	"github.com/rs/zerolog"
)

// wsFront is the router's websocket listener. It can be stopped (every
// session dropped without GOODBYE, as in a router crash) and started again
// on the same address while the router, its local backend session and all
// stored state live on.
type wsFront struct {
	handler http.Handler
	log     zerolog.Logger

	// mu guards the fields below.
	mu    sync.Mutex
	addr  string // the resolved address, fixed after the first listen
	shown string // host:port for URLs
	srv   *http.Server
	conns map[*trackedConn]struct{} // open connections, hijacked websockets included
}

// keepAlive makes the router ping every websocket so sessions of devices
// that vanished without closing their socket end and fire their testament.
const keepAlive = 10 * time.Second

func listenWebsocket(r router.Router, addr string, log zerolog.Logger) (*wsFront, error) {
	ws := router.NewWebsocketServer(r)
	ws.KeepAlive = keepAlive
	ws.OutQueueSize = 4096 // log followers get bursts; the default 64 drops them
	mux := http.NewServeMux()
	mux.Handle(RouterPath, ws)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "devcloud: the WAMP router is at "+RouterPath, http.StatusNotFound)
	})
	f := &wsFront{handler: mux, log: log, addr: addr, conns: map[*trackedConn]struct{}{}}
	if err := f.start(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *wsFront) hostPort() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shown
}

func (f *wsFront) start() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv != nil {
		return nil
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("devcloud: router listen on %s: %w", f.addr, err)
	}
	// Later starts must come back on the same port, not a new free one.
	f.addr = ln.Addr().String()
	f.shown = displayHost(ln.Addr())
	srv := &http.Server{Handler: f.handler, ReadHeaderTimeout: 10 * time.Second}
	f.srv = srv
	go func() {
		if err := srv.Serve(&trackingListener{Listener: ln, f: f}); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.log.Error().Err(err).Msg("router listener stopped")
		}
	}()
	f.log.Debug().Str("addr", f.addr).Msg("router listening")
	return nil
}

// stop closes the listener and every connection, hijacked websockets
// included (http.Server.Close leaves those alone).
func (f *wsFront) stop() error {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	conns := make([]*trackedConn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	for _, c := range conns {
		c.Close()
	}
	f.log.Debug().Int("sessions", len(conns)).Msg("router stopped")
	return err
}

func (f *wsFront) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, f: f}
	f.mu.Lock()
	f.conns[tc] = struct{}{}
	f.mu.Unlock()
	return tc
}

func (f *wsFront) untrack(c *trackedConn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

type trackingListener struct {
	net.Listener
	f *wsFront
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.f.track(c), nil
}

// trackedConn forgets itself when closed, so the set holds only live
// connections.
type trackedConn struct {
	net.Conn
	f    *wsFront
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.f.untrack(c) })
	return c.Conn.Close()
}
