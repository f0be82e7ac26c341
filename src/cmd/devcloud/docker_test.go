package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"reagent/src/devcloud"
	"reagent/src/release"
)

// docker runs the Docker CLI against this machine's engine.
func docker(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	return string(out), err
}

func needDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Docker engine (-short)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker CLI")
	}
	if out, err := docker(testCtx(t), "version", "--format", "{{.Server.APIVersion}}"); err != nil {
		t.Skipf("no Docker engine: %v %s", err, out)
	}
}

// TestPushImagePullAndRun: push-image --busybox (and --dir), then the
// engine pulls it as localhost:<port>/apps/prod_<arch>_1_demo:1.0.0 and
// runs it.
func TestPushImagePullAndRun(t *testing.T) {
	needDocker(t)
	c := devcloud.StartTest(t, devcloud.Options{})
	label := "io.ironflock.test=devcloud-" + strings.ToLower(t.Name()) + "-" + time.Now().Format("150405.000000")
	_, port, _ := strings.Cut(c.RegistryHost(), ":")

	pullRun := func(t *testing.T, ref string) {
		t.Helper()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if out, err := docker(ctx, "ps", "-aq", "--filter", "label="+label); err == nil {
				for _, id := range strings.Fields(out) {
					docker(ctx, "rm", "-f", id)
				}
			}
			docker(ctx, "rmi", "-f", ref)
		})
		if out, err := docker(testCtx(t), "pull", ref); err != nil {
			t.Fatalf("docker pull %s: %v\n%s", ref, err, out)
		}
	}

	t.Run("busybox", func(t *testing.T) {
		out := mustCLI(t, c, "push-image", "--key", "1", "--name", "demo", "--version", "1.0.0", "--busybox")
		if !strings.Contains(out, c.RegistryHost()+"/apps/prod_"+release.Arch()+"_1_demo:1.0.0") {
			t.Fatalf("output %q", out)
		}
		ref := "localhost:" + port + "/apps/prod_" + release.Arch() + "_1_demo:1.0.0"
		pullRun(t, ref)
		if out, err := docker(testCtx(t), "run", "--rm", "--label", label, ref, "echo", "ran on the engine"); err != nil || !strings.Contains(out, "ran on the engine") {
			t.Fatalf("docker run --rm: %v\n%s", err, out)
		}
		// The default command prints a line a second.
		id, err := docker(testCtx(t), "run", "-d", "--label", label, ref)
		if err != nil {
			t.Fatalf("docker run -d: %v\n%s", err, id)
		}
		id = strings.TrimSpace(id)
		ctx := testCtx(t)
		for {
			logs, _ := docker(ctx, "logs", id)
			if strings.Contains(logs, "hello from demo (line 2") {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("default command logs %q", logs)
			case <-time.After(200 * time.Millisecond): // polling docker logs; the deadline is ctx
			}
		}
		if out, err := docker(testCtx(t), "stop", "-t", "10", id); err != nil {
			t.Fatalf("docker stop: %v %s", err, out)
		}
		if code, _ := docker(testCtx(t), "inspect", "-f", "{{.State.ExitCode}}", id); strings.TrimSpace(code) != "0" {
			t.Fatalf("SIGTERM exit code %q, want 0", code)
		}
	})

	t.Run("dir", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "conf"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\necho \"$(cat /app/conf/msg.txt) from $PWD\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "conf", "msg.txt"), []byte("hello from a dir"), 0o644); err != nil {
			t.Fatal(err)
		}
		mustCLI(t, c, "push-image", "--key", "2", "--name", "DirApp", "--version", "0.1.0", "--dir", dir)
		ref := "localhost:" + port + "/apps/prod_" + release.Arch() + "_2_dirapp:0.1.0"
		pullRun(t, ref)
		if out, err := docker(testCtx(t), "run", "--rm", "--label", label, ref); err != nil || !strings.Contains(out, "hello from a dir from /app") {
			t.Fatalf("docker run --rm: %v\n%s", err, out)
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"push-image", "--key", "1", "--name", "demo", "--version", "1"},
			{"push-image", "--key", "1", "--name", "demo", "--version", "1", "--busybox", "--dir", "."},
			{"push-image", "--name", "demo", "--version", "1", "--busybox"},
		} {
			if _, _, code := cli(t, c, args...); code != 2 {
				t.Errorf("%q: exit %d, want 2", args, code)
			}
		}
	})
}
