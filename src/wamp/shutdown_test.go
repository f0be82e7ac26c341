package wamp

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/router"
)

// stoppableRouter is a nexus router behind a listener on a fixed loopback
// address that a test can take down (every connection drops, as when the
// router's host goes away) and bring up again on the same address. The
// router itself keeps running, as devcloud's does.
type stoppableRouter struct {
	t    *testing.T
	r    router.Router
	addr string
	url  string

	mu    sync.Mutex
	srv   *http.Server
	conns map[net.Conn]struct{}
}

func startStoppableRouter(t *testing.T, ks *keyStore) *stoppableRouter {
	t.Helper()
	r, ln := newTestRouter(t, ks)
	sr := &stoppableRouter{t: t, r: r, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	sr.url = "ws://" + sr.addr + "/ws"
	sr.serve(ln)
	t.Cleanup(func() { sr.down(); r.Close() })
	return sr
}

func (sr *stoppableRouter) serve(ln net.Listener) {
	srv := &http.Server{Handler: router.NewWebsocketServer(sr.r), ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(c net.Conn, st http.ConnState) {
			sr.mu.Lock()
			defer sr.mu.Unlock()
			switch st {
			case http.StateNew:
				sr.conns[c] = struct{}{}
			case http.StateClosed:
				delete(sr.conns, c)
			}
		}}
	sr.mu.Lock()
	sr.srv = srv
	sr.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// down closes the listener and every connection, hijacked websockets too.
func (sr *stoppableRouter) down() {
	sr.mu.Lock()
	srv := sr.srv
	sr.srv = nil
	conns := make([]net.Conn, 0, len(sr.conns))
	for c := range sr.conns {
		conns = append(conns, c)
	}
	sr.conns = map[net.Conn]struct{}{}
	sr.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

// up listens again on the same address.
func (sr *stoppableRouter) up() {
	sr.t.Helper()
	ln, err := net.Listen("tcp", sr.addr)
	if err != nil {
		sr.t.Fatal(err)
	}
	sr.serve(ln)
}

// hammer runs fn in n goroutines until the returned stop is called; stop
// waits for them.
func hammer(n int, fn func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				fn(ctx)
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

// Publishing, calling and subscribing while the connection drops and while
// the session shuts down: nexus panics ("send on closed channel") when one
// of its methods sends while or after its client is closed, and a send
// into a connection whose writer is gone blocks until that close. The
// session must turn all of it into "not connected" errors, and Run must
// return with nobody stuck inside the client.
func TestSessionUseDuringDropAndShutdown(t *testing.T) {
	ks := &keyStore{secrets: map[string]string{"1-2": "device-secret"}}
	sr := startStoppableRouter(t, ks)
	tr := &testRouter{url: sr.url, ks: ks}
	r := runSession(t, tr, &scriptBackend{}, func(o *Options) {
		o.ResponseTimeout = 500 * time.Millisecond
		o.CallTimeout = 500 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stop := hammer(8, func(ctx context.Context) {
		_ = r.sess.Publish("test.topic", []any{"x"}, nil, false)
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, _ = r.sess.Call(cctx, "test.nobody.registered", nil, nil)
		ccancel()
		r.sess.Subscribe("test.sub", func([]any, map[string]any, map[string]any) {})
		r.sess.Unsubscribe("test.sub")
	})
	for range 5 {
		if err := r.sess.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		sr.down()
		waitFor(t, "the drop", func() bool { return !r.sess.Connected() })
		sr.up()
	}
	if err := r.sess.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	r.cancel()
	if ended, err := r.result(5 * time.Second); !ended || err != nil {
		t.Fatalf("Run = %v (returned %v)", err, ended)
	}
	// Nobody is stuck inside the client: every use ends.
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("a use of the session never returned")
	}
}

// blackhole forwards TCP connections to addr until hold is called; from
// then on it drops every byte in both directions but keeps the
// connections open: a router that stopped answering.
type blackhole struct {
	ln   net.Listener
	held atomic.Bool
}

func startBlackhole(t *testing.T, addr string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && !b.held.Load() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			track(c)
			track(up)
			wg.Go(func() { pipe(up, c) })
			wg.Go(func() { pipe(c, up) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return b
}

func (b *blackhole) url() string { return "ws://" + b.ln.Addr().String() + "/ws" }

// sessionGoroutines are the stacks of the goroutines carrying the label
// value v (pprof debug=1 groups).
func sessionGoroutines(v string) []string {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	var out []string
	for _, g := range strings.Split(buf.String(), "\n\n") {
		if strings.Contains(g, fmt.Sprintf("%q:%q", "session", v)) {
			out = append(out, g)
		}
	}
	return out
}

// A router that stops answering: the shutdown does not wait for its
// GOODBYE longer than CloseTimeout, drops the connection, and Run returns
// with nothing of the session left running.
func TestSessionGoodbyeBounded(t *testing.T) {
	sr := startStoppableRouter(t, &keyStore{secrets: map[string]string{"1-2": "device-secret"}})
	bh := startBlackhole(t, sr.addr)
	be := &scriptBackend{}
	fl, path := testFlock(t, bh.url())
	s := testSession(t, be, func(o *Options) {
		o.Flock, o.FlockPath = fl, path
		o.ResponseTimeout = 3 * time.Second // nexus alone would wait twice this for GOODBYE
		o.CloseTimeout = time.Second
		o.KeepAlive = 0
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	label := t.Name()
	go pprof.Do(ctx, pprof.Labels("session", label), func(ctx context.Context) { done <- s.Run(ctx) })
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := s.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	bh.held.Store(true)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(2 * time.Second): // CloseTimeout and a margin, well under nexus's 6 s
		t.Fatal("Run waited for the GOODBYE of a router that does not answer")
	}
	// A goroutine past its wg.Done may still be on its way out: a moment,
	// far less than what nexus would wait for the GOODBYE.
	end := time.Now().Add(time.Second)
	left := sessionGoroutines(label)
	for len(left) > 0 && time.Now().Before(end) {
		time.Sleep(10 * time.Millisecond)
		left = sessionGoroutines(label)
	}
	if len(left) > 0 {
		t.Fatalf("goroutines of the session still run after Run returned:\n%s", strings.Join(left, "\n\n"))
	}
}
