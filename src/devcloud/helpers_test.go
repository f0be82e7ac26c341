package devcloud

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/gammazero/nexus/v3/wamp/crsign"

	"reagent/src/config"
)

// testCtx is a context that ends with the test or after a generous bound.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial joins url as authid with wampcra over JSON, like the agent does.
func dial(ctx context.Context, url, authid, secret string) (*client.Client, error) {
	return client.ConnectNet(ctx, url, client.Config{
		Realm:         Realm,
		HelloDetails:  wamp.Dict{"authid": authid},
		Serialization: serialize.JSON,
		AuthHandlers: map[string]client.AuthFunc{
			"wampcra": func(ch *wamp.Challenge) (string, wamp.Dict) {
				return crsign.RespondChallenge(secret, ch, nil), wamp.Dict{}
			},
		},
		ResponseTimeout: 10 * time.Second,
		Logger:          stdLogger{},
	})
}

// joinDevice connects as the device of f through url and closes the
// session when the test ends.
func joinDevice(t *testing.T, url string, f *config.Flock) *client.Client {
	t.Helper()
	cl, err := dial(testCtx(t), url, f.AuthID(), f.Secret.Reveal())
	if err != nil {
		t.Fatalf("device %s joins: %v", f.AuthID(), err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// newDevice makes a fresh device of c in a temp dir.
func newDevice(t *testing.T, c *Cloud) *config.Flock {
	t.Helper()
	f, _, err := c.NewDevice(t.TempDir())
	if err != nil {
		t.Fatalf("new device: %v", err)
	}
	return f
}

// callBackend calls a backend procedure and fails the test on error.
func callBackend(t *testing.T, cl *client.Client, proc string, args ...any) wamp.List {
	t.Helper()
	res, err := cl.Call(testCtx(t), proc, nil, wamp.List(args), nil, nil)
	if err != nil {
		t.Fatalf("call %s: %v", proc, err)
	}
	return res.Arguments
}

// rpcError returns the WAMP error of a failed call.
func rpcError(t *testing.T, err error) client.RPCError {
	t.Helper()
	var re client.RPCError
	if !errors.As(err, &re) {
		t.Fatalf("want a WAMP error, got %v", err)
	}
	return re
}

// cutProxy forwards TCP to target and can cut every connection at once,
// which is how a device's link dies without a GOODBYE.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
