package wamp

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/router"
	"github.com/gammazero/nexus/v3/router/auth"
	nx "github.com/gammazero/nexus/v3/wamp"
	"github.com/gammazero/nexus/v3/wamp/crsign"
	"github.com/rs/zerolog"

	"reagent/src/config"
	"reagent/src/errdefs"
)

// These tests run the session against a real nexus router started in the
// test (devcloud's backend is replaced by scriptBackend, so each test can
// script the cloud's answers). The end-to-end tests with devcloud live in
// src/agent.

type testRouter struct {
	url string
	ks  *keyStore
}

// keyStore knows the device under every authid it is told about, and
// "system". A salt switches wampcra to PBKDF2 keys.
type keyStore struct {
	mu      sync.Mutex
	secrets map[string]string
	salt    string
	joins   []string // authids that asked for a challenge
}

func (k *keyStore) AuthKey(authid, _ string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.joins = append(k.joins, authid)
	s, ok := k.secrets[authid]
	if !ok {
		return nil, errors.New("unknown authid")
	}
	if k.salt != "" {
		dk, err := pbkdf2.Key(sha256.New, s, []byte(k.salt), crsign.DefaultIters, crsign.DefaultKeyLen)
		if err != nil {
			return nil, err
		}
		return []byte(base64.StdEncoding.EncodeToString(dk)), nil
	}
	return []byte(s), nil
}

func (k *keyStore) PasswordInfo(string) (string, int, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.salt == "" {
		return "", 0, 0
	}
	return k.salt, crsign.DefaultKeyLen, crsign.DefaultIters
}
func (k *keyStore) AuthRole(string) (string, error) { return "device", nil }
func (k *keyStore) Provider() string                { return "test" }

func (k *keyStore) joined() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.joins...)
}

// newTestRouter is a nexus router of realm1 with wampcra against ks, and
// a loopback listener on a free port for it.
func newTestRouter(t *testing.T, ks *keyStore) (router.Router, net.Listener) {
	t.Helper()
	r, err := router.NewRouter(&router.Config{RealmConfigs: []*router.RealmConfig{{
		URI: Realm, AllowDisclose: true,
		Authenticators: []auth.Authenticator{auth.NewCRAuthenticator(ks, 2*time.Second)},
	}}}, nexusLogger{zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	return r, ln
}

func startRouter(t *testing.T, ks *keyStore) *testRouter {
	t.Helper()
	r, ln := newTestRouter(t, ks)
	srv := &http.Server{Handler: router.NewWebsocketServer(r), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); r.Close() })
	return &testRouter{url: "ws://" + ln.Addr().String() + "/ws", ks: ks}
}

// scriptBackend records the order of the session's backend calls and
// answers as scripted.
type scriptBackend struct {
	fakeBackend
	mu         sync.Mutex
	log        []string
	metadata   DeviceMetadata
	failStatus int // fail this many status reports after CONNECTED was seen
	connected  bool
	swarmKey   int64
}

func (b *scriptBackend) record(s string) {
	b.mu.Lock()
	b.log = append(b.log, s)
	b.mu.Unlock()
}

func (b *scriptBackend) calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.log...)
}

func (b *scriptBackend) AddTestament(context.Context, uint64) error {
	b.record("testament")
	return nil
}

func (b *scriptBackend) ReadDeviceMetadata(context.Context) (DeviceMetadata, error) {
	b.record("metadata")
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.metadata, nil
}

func (b *scriptBackend) GetAppCredKey(context.Context) (string, error) {
	b.record("credkey")
	return "cred-key", nil
}

func (b *scriptBackend) UpdateDeviceStatus(_ context.Context, st DeviceStatus) (string, error) {
	b.record("status " + st.Status)
	b.mu.Lock()
	defer b.mu.Unlock()
	if st.Status == StatusConnected {
		if b.connected && b.failStatus > 0 {
			b.failStatus--
			return "", errdefs.Unavailable("backend down")
		}
		b.connected = true
	}
	return "https://cloud.example", nil
}

func (b *scriptBackend) UpdateDeviceArchitecture(context.Context) error {
	b.record("architecture")
	return nil
}

func (b *scriptBackend) SetSwarmKey(k int64) {
	b.mu.Lock()
	b.swarmKey = k
	b.mu.Unlock()
}

func testFlock(t *testing.T, url string) (*config.Flock, string) {
	t.Helper()
	raw := fmt.Sprintf(`{"secret":"device-secret","swarm_key":1,"device_key":2,"serial_number":"serial-1",`+
		`"device_endpoint_url":%q,"name":"dev","swarm_name":"sw","swarm_owner_name":"me"}`, url)
	fl, err := config.ParseFlock([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/device.flock"
	if err := fl.Save(path); err != nil {
		t.Fatal(err)
	}
	return fl, path
}

type running struct {
	sess   *Session
	cancel context.CancelFunc
	done   chan error // receives Run's result once; result() keeps it
	once   sync.Once
	err    error
	ended  bool
}

// result waits up to d for Run to return.
func (r *running) result(d time.Duration) (bool, error) {
	r.once.Do(func() {
		select {
		case r.err = <-r.done:
			r.ended = true
		case <-time.After(d):
		}
	})
	return r.ended, r.err
}

func runSession(t *testing.T, tr *testRouter, be Backend, mod func(*Options)) *running {
	t.Helper()
	fl, path := testFlock(t, tr.url)
	s := testSession(t, be, func(o *Options) {
		o.Flock, o.FlockPath = fl, path
		o.BackoffBase, o.BackoffCap = 10*time.Millisecond, 50*time.Millisecond
		o.ResponseTimeout = 2 * time.Second
		if mod != nil {
			mod(o)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{sess: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if ended, _ := r.result(10 * time.Second); !ended {
			t.Error("Run did not return")
		}
	})
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tk := time.NewTicker(5 * time.Millisecond)
	defer tk.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tk.C:
		}
	}
}

// studio joins as "system" to call the device.
func studio(t *testing.T, tr *testRouter) *client.Client {
	t.Helper()
	tr.ks.mu.Lock()
	tr.ks.secrets["system"] = "system-secret"
	tr.ks.mu.Unlock()
	cli, err := client.ConnectNet(context.Background(), tr.url, client.Config{
		Realm: Realm, HelloDetails: nx.Dict{"authid": "system"}, Logger: nexusLogger{zerolog.Nop()},
		AuthHandlers: map[string]client.AuthFunc{"wampcra": func(c *nx.Challenge) (string, nx.Dict) {
			return crsign.RespondChallenge("system-secret", c, nil), nx.Dict{}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func TestSessionOnConnectOrder(t *testing.T) {
	for _, salt := range []string{"", "pbkdf2-salt"} {
		t.Run("salt="+salt, func(t *testing.T) {
			tr := startRouter(t, &keyStore{secrets: map[string]string{"1-2": "device-secret"}, salt: salt})
			be := &scriptBackend{}
			var states []bool
			var smu sync.Mutex
			r := runSession(t, tr, be, nil)
			r.sess.OnStateChange(func(c bool) { smu.Lock(); states = append(states, c); smu.Unlock() })
			r.sess.OnConnect("hook one", func(context.Context) error { be.record("hook one"); return nil })
			r.sess.OnConnect("hook two", func(context.Context) error { be.record("hook two"); panic("boom") })
			r.sess.Register("ping", Public, func(_ context.Context, c *Call) (Result, error) {
				return Result{Args: []any{"pong", c.Caller}}, nil
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.sess.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
			want := []string{"testament", "metadata", "credkey", "status CONFIGURING", "architecture",
				"hook one", "hook two", "status CONNECTED"}
			if got := be.calls(); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("sequence = %v\nwant      %v", got, want)
			}
			if r.sess.AppCredKey() != "cred-key" || r.sess.BaseURL() != "https://cloud.example" {
				t.Fatalf("cred key %q, base URL %q", r.sess.AppCredKey(), r.sess.BaseURL())
			}
			cli := studio(t, tr)
			res, err := cli.Call(ctx, ProcedureURI("serial-1", "ping"), nx.Dict{"disclose_me": true}, nil, nil, nil)
			if err != nil || res.Arguments[0] != "pong" || res.Arguments[1] != "system" {
				t.Fatalf("ping = %v, %v", res, err)
			}
			// A procedure added while connected is callable at once.
			r.sess.Register("late", Public, func(context.Context, *Call) (Result, error) { return Result{Args: []any{1}}, nil })
			if _, err := cli.Call(ctx, ProcedureURI("serial-1", "late"), nil, nil, nil, nil); err != nil {
				t.Fatalf("late procedure: %v", err)
			}
			// So is a subscription, and a panicking event handler is survived.
			got := make(chan any, 1)
			r.sess.Subscribe("test.topic", func(args []any, _, _ map[string]any) {
				if args[0] == "boom" {
					panic("event")
				}
				got <- args[0]
			})
			_ = cli.Publish("test.topic", nil, nx.List{"boom"}, nil)
			_ = cli.Publish("test.topic", nil, nx.List{"hello"}, nil)
			select {
			case v := <-got:
				if v != "hello" {
					t.Fatalf("event = %v", v)
				}
			case <-ctx.Done():
				t.Fatal("no event")
			}
			smu.Lock()
			defer smu.Unlock()
			if len(states) != 1 || !states[0] {
				t.Fatalf("state changes = %v", states)
			}
		})
	}
}

// The cloud moved the device to swarm 5: the .flock is saved and the
// session redials as 5-2, once.
func TestSessionSwarmChangeRedials(t *testing.T) {
	tr := startRouter(t, &keyStore{secrets: map[string]string{"1-2": "device-secret", "5-2": "device-secret"}})
	be := &scriptBackend{metadata: DeviceMetadata{Name: "renamed", SwarmName: "sw5", OwnerName: "me", SwarmKey: 5}}
	r := runSession(t, tr, be, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.sess.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tr.ks.joined(), ","); got != "1-2,5-2" {
		t.Fatalf("joins = %s, want 1-2 then 5-2", got)
	}
	saved, err := config.LoadFlock(r.sess.opts.FlockPath)
	if err != nil {
		t.Fatal(err)
	}
	if saved.SwarmKey != 5 || saved.Name != "renamed" || saved.SwarmName != "sw5" {
		t.Fatalf("saved .flock = %+v", saved)
	}
	be.mu.Lock()
	sk := be.swarmKey
	be.mu.Unlock()
	if sk != 5 {
		t.Fatalf("backend swarm key = %d", sk)
	}
	if n := strings.Count(strings.Join(be.calls(), ","), "status CONNECTED"); n != 1 {
		t.Fatalf("%d CONNECTED reports, want 1 (only the new identity connects)", n)
	}
}

// Two failed heartbeats in a row end the connection; the session comes back.
func TestSessionHeartbeatFailuresReconnect(t *testing.T) {
	tr := startRouter(t, &keyStore{secrets: map[string]string{"1-2": "device-secret"}})
	be := &scriptBackend{failStatus: 2}
	var waits []time.Duration
	var wmu sync.Mutex
	r := runSession(t, tr, be, func(o *Options) {
		o.HeartbeatInterval = 20 * time.Millisecond
		o.OnBackoff = func(d, ceiling time.Duration) {
			wmu.Lock()
			waits = append(waits, d)
			wmu.Unlock()
			if d > ceiling || ceiling > o.BackoffCap {
				t.Errorf("wait %v above ceiling %v / cap %v", d, ceiling, o.BackoffCap)
			}
		}
	})
	waitFor(t, "a second connection", func() bool { return len(tr.ks.joined()) >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.sess.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	wmu.Lock()
	defer wmu.Unlock()
	if len(waits) == 0 {
		t.Fatal("no backoff before redialing")
	}
}

// Another session holds the serial: after DuplicateLimit refusals Run
// gives up with a Fatal naming the serial.
func TestSessionDuplicateSerialIsFatal(t *testing.T) {
	tr := startRouter(t, &keyStore{secrets: map[string]string{"1-2": "device-secret"}})
	other := studio(t, tr)
	if err := other.Register(ProcedureURI("serial-1", procEstablished), func(context.Context, *nx.Invocation) client.InvokeResult {
		return client.InvokeResult{}
	}, nil); err != nil {
		t.Fatal(err)
	}
	r := runSession(t, tr, &scriptBackend{}, func(o *Options) { o.DuplicateLimit = 3 })
	ended, err := r.result(10 * time.Second)
	var fatal *Fatal
	if !ended || !errors.As(err, &fatal) || !strings.Contains(err.Error(), "serial-1 already exists") {
		t.Fatalf("Run = %v (returned %v)", err, ended)
	}
	if n := len(tr.ks.joined()); n != 4 { // 3 for the agent, 1 for "other"
		t.Fatalf("%d joins", n)
	}
}

// A wrong secret is the one other reason to give up.
func TestSessionRejectedSignatureIsFatal(t *testing.T) {
	for _, salt := range []string{"", "salt"} {
		t.Run("salt="+salt, func(t *testing.T) {
			tr := startRouter(t, &keyStore{secrets: map[string]string{"1-2": "another-secret"}, salt: salt})
			r := runSession(t, tr, &scriptBackend{}, nil)
			ended, err := r.result(10 * time.Second)
			var fatal *Fatal
			if !ended || !errors.As(err, &fatal) || !strings.Contains(err.Error(), "authid 1-2") || !strings.Contains(err.Error(), tr.url) {
				t.Fatalf("Run = %v (returned %v)", err, ended)
			}
			if strings.Contains(err.Error(), "device-secret") {
				t.Fatal("the secret is in the error")
			}
		})
	}
}

// No router at all: Run keeps trying with waits under the cap and returns
// nil when its context ends.
func TestSessionRetriesUntilCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "ws://" + ln.Addr().String() + "/ws"
	ln.Close() // nothing listens there now
	var mu sync.Mutex
	var ceilings []time.Duration
	tr := &testRouter{url: url, ks: &keyStore{}}
	r := runSession(t, tr, &scriptBackend{}, func(o *Options) {
		o.OnBackoff = func(_, c time.Duration) { mu.Lock(); ceilings = append(ceilings, c); mu.Unlock() }
	})
	waitFor(t, "six attempts", func() bool { mu.Lock(); defer mu.Unlock(); return len(ceilings) >= 6 })
	r.cancel()
	if ended, err := r.result(5 * time.Second); !ended || err != nil {
		t.Fatalf("Run = %v (returned %v)", err, ended)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{10, 20, 40, 50, 50, 50}
	for i, w := range want {
		if ceilings[i] != w*time.Millisecond {
			t.Fatalf("ceilings = %v, want growth to the 50ms cap", ceilings)
		}
	}
	if _, err := r.sess.Call(context.Background(), "x", nil, nil); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Call without a connection: %v", err)
	}
}
