package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// The whole bench in -short mode against the real agent binary, devcloud
// and this machine's engine: every figure is measured and plausible, and
// nothing the run created is left behind.
func TestBenchShortAgainstTheAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent against the Docker engine")
	}
	bin := filepath.Join(t.TempDir(), "reagent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "reagent/src")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	b := newBench(config{agent: bin, short: true}, &progress)
	rep, err := b.run(ctx)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := rep.writeTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("table:\n%s", table.String())

	for _, f := range rep.Figures {
		if f.Error != "" || f.Verdict == verdictNA || f.Verdict == "" {
			t.Errorf("%s not measured: %s", f.ID, f.Error)
		}
	}
	// Plausible, not judged: a smoke run on a busy machine says nothing
	// about budgets.
	for id, min := range map[string]float64{
		figBinary: 1e6, figConnect: 0.1, figRSSIdle: 1 << 20, figRSSApps: 1 << 20, figReqAgent: 1,
		figReqSDK: 1, figReqRatio: 0.01, figLogRate: 1, figLogRSS: 1 << 20,
	} {
		if v := rep.figure(id).Value; v < min {
			t.Errorf("%s = %v, want at least %v", id, v, min)
		}
	}
	if f := rep.figure(figCPUApps); f.Value < 0 || f.Value > 100*float64(rep.Machine.Cores) {
		t.Errorf("CPU %v %%", f.Value)
	}
	if rep.Machine.Docker == "" || rep.Machine.Kernel == "" || rep.Machine.Cores == 0 || rep.Machine.MemoryBytes == 0 {
		t.Errorf("machine incomplete: %+v", rep.Machine)
	}

	// Everything created is gone.
	if _, err := os.Stat(b.tmp); !os.IsNotExist(err) {
		t.Errorf("temp dir %s still there: %v", b.tmp, err)
	}
	dc, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	for _, label := range []string{labelDevice + "=" + b.serial, labelBench + "=" + b.runID} {
		cts, err := dc.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
		if err != nil {
			t.Fatal(err)
		}
		if len(cts) != 0 {
			t.Errorf("%d containers with %s left", len(cts), label)
		}
	}
	imgs, err := dc.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		for _, tag := range img.RepoTags {
			if strings.HasPrefix(tag, b.cloud.RegistryHost()+"/") {
				t.Errorf("image %s left", tag)
			}
		}
	}
	if b.agent != nil && !b.agent.exited() {
		t.Errorf("agent pid %d still running", b.agent.pid())
	}
}
