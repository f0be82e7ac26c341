package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/client"
	"github.com/rs/zerolog"

	cfgpkg "reagent/src/config"
	"reagent/src/devcloud"
)

// bench is one run: the cloud, the device, the engine and the agent process.
type bench struct {
	cfg   config
	plan  plan
	rep   *Report
	out   io.Writer // progress lines
	begin time.Time

	runID     string // unique per run: labels and image markers
	tmp       string // everything on disk; removed at the end
	keyBase   uint64 // app keys of this run are keyBase+1 …
	pprofPort int    // 0 = no profiling

	dc        *client.Client
	cloud     *devcloud.Cloud
	devLog    *os.File
	flock     *cfgpkg.Flock
	flockPath string
	serial    string
	agent     *agentProc // nil until started; replaced on every start
}

// runBench measures everything it can. A step that fails marks its figures
// not measured and the next step goes on if it can; the report is returned
// whenever there is one, with the first fatal error if any.
func runBench(ctx context.Context, cfg config, progress io.Writer) (*Report, error) {
	return newBench(cfg, progress).run(ctx)
}

func newBench(cfg config, progress io.Writer) *bench {
	p := planFor(cfg.short)
	b := &bench{cfg: cfg, plan: p, out: progress, begin: time.Now()}
	b.rep = &Report{Date: b.begin.UTC().Truncate(time.Second), Agent: cfg.agent, Short: cfg.short, Figures: newFigures(p),
		LoadBefore: loadAvg()}
	return b
}

func (b *bench) run(ctx context.Context) (*Report, error) {
	cfg := b.cfg
	defer func() {
		b.rep.Duration = time.Since(b.begin).Round(time.Second).String()
		b.rep.LoadAfter = loadAvg()
		b.rep.judgeAll()
	}()

	b.measureBinary()
	if v, err := exec.CommandContext(ctx, cfg.agent, "-version").Output(); err == nil {
		b.rep.AgentVersion = strings.TrimSpace(string(v))
	}

	err := b.setup(ctx)
	defer func() {
		if cerr := b.cleanup(); cerr != nil {
			b.logf("cleanup: %v", cerr)
		}
	}()
	if err != nil {
		b.rep.fail(err, figConnect, figRSSIdle, figRSSApps, figCPUApps, figReqAgent, figReqSDK, figReqRatio,
			figLogRate, figLogDrops, figLogRSS)
		return b.rep, err
	}

	steps := []struct {
		name string
		ids  []string
		run  func(context.Context) error
	}{
		{"start → CONNECTED and idle RSS", []string{figConnect, figRSSIdle}, b.measureConnectAndIdle},
		{"idle apps", []string{figRSSApps, figCPUApps}, b.measureIdleApps},
		{"request → RUNNING", []string{figReqAgent, figReqSDK, figReqRatio}, b.measureRequestToRunning},
		{"log relay", []string{figLogRate, figLogDrops, figLogRSS}, b.measureLogRelay},
	}
	for _, s := range steps {
		if ctx.Err() != nil {
			b.rep.fail(fmt.Errorf("interrupted"), s.ids...)
			continue
		}
		b.logf("— %s", s.name)
		if err := s.run(ctx); err != nil {
			b.logf("%s: %v", s.name, err)
			b.rep.fail(err, s.ids...)
		}
	}
	if ctx.Err() != nil {
		return b.rep, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return b.rep, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.out, "bench %6.1fs  %s\n", time.Since(b.begin).Seconds(), fmt.Sprintf(format, args...))
}

// measureBinary: the size of the stripped linux/amd64 binary make build
// produced.
func (b *bench) measureBinary() {
	info, err := inspectBinary(b.cfg.agent)
	if err != nil {
		b.rep.fail(err, figBinary)
		return
	}
	if info.Arch != "amd64" || !info.Stripped {
		b.rep.fail(fmt.Errorf("%s is %s, stripped=%v: the budget is for a stripped linux/amd64 build (make build on amd64)",
			b.cfg.agent, info.Arch, info.Stripped), figBinary)
		return
	}
	f := b.rep.set(figBinary, float64(info.Size), formatMB(info.Size))
	f.Details = map[string]any{"arch": info.Arch, "stripped": info.Stripped, "static": info.Static}
}

// setup makes the temp dir, the engine client, devcloud, the device and
// picks this run's app keys.
func (b *bench) setup(ctx context.Context) error {
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("random run id: %w", err)
	}
	b.runID = hex.EncodeToString(rnd[:6])
	// App keys are global on the engine (container names); other test
	// runs may share it, so they are random and far from the small keys
	// people use by hand.
	b.keyBase = 1_000_000 + uint64(binary.BigEndian.Uint32(rnd[6:10])%8_000_000)*100

	if _, err := os.Stat(b.cfg.agent); err != nil {
		return fmt.Errorf("agent binary: %w (make build)", err)
	}
	abs, err := filepath.Abs(b.cfg.agent)
	if err != nil {
		return err
	}
	b.cfg.agent = abs

	if b.tmp, err = os.MkdirTemp("", "reagent-bench-"); err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	b.dc, err = client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := b.dc.Ping(pctx); err != nil {
		return fmt.Errorf("docker engine: %w", err)
	}
	b.rep.Machine = describeMachine(ctx, b.dc)

	if b.devLog, err = os.Create(filepath.Join(b.tmp, "devcloud.log")); err != nil {
		return err
	}
	b.cloud, err = devcloud.Start(ctx, devcloud.Options{
		DataDir: filepath.Join(b.tmp, "devcloud"),
		Log:     zerolog.New(b.devLog).Level(zerolog.InfoLevel).With().Timestamp().Logger(),
	})
	if err != nil {
		return fmt.Errorf("start devcloud: %w", err)
	}
	if b.flock, b.flockPath, err = b.cloud.NewDevice(filepath.Join(b.tmp, "device")); err != nil {
		return fmt.Errorf("new device: %w", err)
	}
	b.serial = b.flock.SerialNumber
	if b.cfg.pprofDir != "" {
		if b.pprofPort, err = freePort(); err != nil {
			return err
		}
		if err := os.MkdirAll(b.cfg.pprofDir, 0o755); err != nil {
			return err
		}
	}
	b.logf("devcloud %s, registry %s, device %s, app keys from %d, temp %s",
		b.cloud.RouterURL(), b.cloud.RegistryHost(), b.serial, b.keyBase+1, b.tmp)
	return nil
}

// freePort is a loopback TCP port nobody listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// restartAgent stops the running agent (if any) and starts a new one.
func (b *bench) restartAgent() (*agentProc, error) {
	if b.agent != nil {
		if err := b.agent.stop(15 * time.Second); err != nil {
			return nil, err
		}
		b.agent = nil
	}
	p, err := b.startAgent()
	if err != nil {
		return nil, err
	}
	b.agent = p
	return p, nil
}

// ensureAgent makes sure a connected agent runs: a step after one that
// failed (and perhaps lost the agent) still gets one.
func (b *bench) ensureAgent(ctx context.Context) error {
	if b.agent != nil && !b.agent.exited() {
		return nil
	}
	if b.agent != nil {
		b.logf("the agent is gone (%v); starting it again", b.agent.exitErr())
	}
	p, err := b.restartAgent()
	if err != nil {
		return err
	}
	_, err = b.awaitConnected(ctx, p, map[uint64]bool{})
	return err
}

// agentFailure explains an agent that ended or a wait that timed out, with
// the end of its output and log.
func (b *bench) agentFailure(err error) error {
	out := tail(filepath.Join(b.tmp, "agent.out"), 1500)
	log := tail(filepath.Join(b.tmp, "reagent.log"), 1500)
	var sb strings.Builder
	sb.WriteString(err.Error())
	if out != "" {
		sb.WriteString("\n  agent output: " + strings.ReplaceAll(out, "\n", "\n    "))
	}
	if log != "" {
		sb.WriteString("\n  agent log: " + strings.ReplaceAll(log, "\n", "\n    "))
	}
	return errors.New(sb.String())
}

// sleep waits d unless ctx ends first. The bench measures over windows of
// time; this is the window, not a synchronisation.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
