package devcloud

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/router"
	"github.com/rs/zerolog"

	"reagent/src/config"
)

// DefaultSystemSecret is the wampcra secret of the trusted "system" user
// unless Options.Users gives another one.
const DefaultSystemSecret = "devcloud-system-secret"

// Realm is the one realm devcloud serves, as the real cloud does.
const Realm = "realm1"

// RouterPath is the websocket path of the router, as in the device's
// device_endpoint_url.
const RouterPath = "/ws-re-dev"

// Options configure a Cloud. The zero value starts everything on free
// loopback ports with a temporary data directory.
type Options struct {
	RouterAddr   string   // "" → "127.0.0.1:0" (tests); the program passes ":8080"
	RegistryAddr string   // "" → "127.0.0.1:0"; the program passes ":5001"
	DataDir      string   // "" → temp dir removed by Close
	DeviceFiles  []string // .flock files of devices allowed to connect
	Users        []User   // Studio users; "system" is always there (DefaultSystemSecret unless given)
	PortRange    [2]int   // expose_port range; zero → 20000..20999
	Log          zerolog.Logger
}

// Cloud is a running devcloud: router, backend and registry.
type Cloud struct {
	log         zerolog.Logger
	dataDir     string
	ownsDataDir bool
	portRange   [2]int

	db  *store          // non-nil; owns its own locking
	ids *principals     // non-nil; who may join, with which secret and role
	ev  *events         // non-nil; in-memory records (calls, testaments, publishes, faults)
	chg *changes        // non-nil; wakes Await* waiters after every stored change
	rt  router.Router   // non-nil
	ws  *wsFront        // non-nil; the websocket listener that StopRouter/StartRouter toggle
	reg *registryServer // non-nil
	bk  *client.Client  // the backend's router-local session
	bg  sync.WaitGroup  // background work of the backend (testaments), waited for by Close

	newDev sync.Mutex // serialises NewDevice, which picks the next free device_key
	// reqMu serialises the writes of requested records and state reports: a
	// report updates the stored record (read, change, write), which must
	// neither undo a record set meanwhile nor bring back one deleted
	// meanwhile, and is stored only after the record followed it.
	reqMu sync.Mutex

	// mu guards the fields below.
	mu       sync.Mutex
	studio   map[string]*client.Client // cached Studio sessions of CallDevice, by authid
	sessions []*client.Client          // sessions handed out by Session, closed by Close
	closed   bool
}

// Start starts the router, the backend and the registry and returns once
// all of them accept connections.
func Start(ctx context.Context, opts Options) (*Cloud, error) {
	c := &Cloud{
		log:       opts.Log.With().Str("component", "devcloud").Logger(),
		portRange: opts.PortRange,
		ev:        newEvents(),
		chg:       newChanges(),
		studio:    map[string]*client.Client{},
	}
	if c.portRange == [2]int{} {
		c.portRange = [2]int{20000, 20999}
	}
	if c.portRange[0] <= 0 || c.portRange[1] < c.portRange[0] || c.portRange[1] > 65535 {
		return nil, fmt.Errorf("devcloud: invalid port range %d..%d", c.portRange[0], c.portRange[1])
	}
	if err := c.openData(opts.DataDir); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()

	c.ids = newPrincipals(opts.Users)
	devices, err := c.db.devices()
	if err != nil {
		return nil, err
	}
	for _, d := range devices {
		c.ids.setDevice(d)
	}
	for _, path := range opts.DeviceFiles {
		f, err := config.LoadFlock(path)
		if err != nil {
			return nil, fmt.Errorf("devcloud: load device: %w", err)
		}
		if err := c.AddDevice(f); err != nil {
			return nil, fmt.Errorf("devcloud: add device %s: %w", path, err)
		}
	}

	if c.reg, err = startRegistry(ctx, c.db, filepath.Join(c.dataDir, "registry"), orDefault(opts.RegistryAddr), c.log); err != nil {
		return nil, err
	}
	if c.rt, err = newRouter(c.ids, c.ev, c.log); err != nil {
		return nil, err
	}
	if c.bk, err = c.startBackend(); err != nil {
		return nil, err
	}
	if c.ws, err = listenWebsocket(c.rt, orDefault(opts.RouterAddr), c.log); err != nil {
		return nil, err
	}
	ok = true
	c.log.Info().Str("router", c.RouterURL()).Str("registry", c.RegistryHost()).Str("data", c.dataDir).Msg("devcloud started")
	return c, nil
}

// StartTest starts a Cloud for a test on free ports and closes it when the
// test ends.
func StartTest(t testing.TB, opts Options) *Cloud {
	t.Helper()
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start devcloud: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close devcloud: %v", err)
		}
	})
	return c
}

func orDefault(addr string) string {
	if addr == "" {
		return "127.0.0.1:0"
	}
	return addr
}

func (c *Cloud) openData(dir string) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "devcloud-")
		if err != nil {
			return fmt.Errorf("devcloud: data dir: %w", err)
		}
		dir, c.ownsDataDir = tmp, true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("devcloud: data dir: %w", err)
	}
	c.dataDir = dir
	db, err := openStore(filepath.Join(dir, "devcloud.db"))
	if err != nil {
		if c.ownsDataDir {
			os.RemoveAll(dir)
		}
		return err
	}
	c.db = db
	return nil
}

// Close stops everything in the reverse order of Start and removes the data
// directory if Start created it. Devices see their websocket dropped.
func (c *Cloud) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var sessions []*client.Client
	for _, s := range c.studio {
		sessions = append(sessions, s)
	}
	sessions = append(sessions, c.sessions...)
	c.studio, c.sessions = nil, nil
	c.mu.Unlock()

	var errs []error
	for _, s := range sessions {
		s.Close() // an already closed session is fine
	}
	if c.ws != nil {
		if err := c.ws.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.bk != nil {
		c.bk.Close()
	}
	c.bg.Wait()
	if c.rt != nil {
		c.rt.Close()
	}
	if c.reg != nil {
		if err := c.reg.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.db != nil {
		if err := c.db.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ownsDataDir {
		if err := os.RemoveAll(c.dataDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RouterURL is the websocket URL devices and Studio sessions dial,
// "ws://127.0.0.1:PORT/ws-re-dev" (or localhost when listening on all
// interfaces).
func (c *Cloud) RouterURL() string { return "ws://" + c.ws.hostPort() + RouterPath }

// RegistryHost is the registry's host:port as image references use it,
// "127.0.0.1:PORT" (or localhost:PORT when listening on all interfaces).
func (c *Cloud) RegistryHost() string { return c.reg.hostPort() }

// DataDir is where the SQLite file and the registry blobs live.
func (c *Cloud) DataDir() string { return c.dataDir }

// StopRouter drops every websocket session without a GOODBYE (so their
// testaments fire) and stops listening. State, the backend and the registry
// stay up.
func (c *Cloud) StopRouter() error { return c.ws.stop() }

// StartRouter listens again on the address the router had.
func (c *Cloud) StartRouter() error { return c.ws.start() }

// displayHost turns a listener address into the host:port clients should
// dial: an unspecified IP (":8080") becomes localhost.
func displayHost(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
