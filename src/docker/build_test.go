package docker

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"reagent/src/errdefs"
	"reagent/src/testimage"
)

// buildContext makes a tar (or tar.gz) of files.
func buildContext(t *testing.T, gz bool, files map[string]string) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	var tw *tar.Writer
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	} else {
		tw = tar.NewWriter(&buf)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return &buf
}

// builderID picks the builder's container out of a progress line
// (" ---> Running in 0123456789ab").
func builderID(line []byte) (string, bool) {
	var m struct{ Stream string }
	_ = json.Unmarshal(line, &m)
	return strings.CutPrefix(strings.TrimSpace(m.Stream), "---> Running in ")
}

// waitGone waits until the container no longer exists.
func (e *env) waitGone(id string) {
	e.t.Helper()
	e.waitFor("container "+id+" to go away", 30*time.Second, func() (bool, error) {
		_, err := e.c.InspectContainer(e.ctx(10*time.Second), id)
		return errors.Is(err, errdefs.ErrNotFound), err
	})
}

func TestBuildImage(t *testing.T) {
	e := newEnv(t)
	base := e.image("buildbase", testimage.Options{})
	e.removeImageLater(base)

	cases := []struct {
		name       string
		gz         bool
		dockerfile string // file name in the context; "" = Dockerfile
		content    string
		want       string
	}{
		{"tar with Dockerfile", false, "",
			"FROM " + base + "\nARG GREETING\nCOPY msg.txt /msg.txt\nRUN echo \"built $GREETING $(cat /msg.txt)\" > /built.txt\n",
			"built hi from the context"},
		{"tgz with an arch Dockerfile", true, "Dockerfile.amd64",
			"FROM " + base + "\nCOPY msg.txt /built.txt\n",
			"from the context"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			file := c.dockerfile
			if file == "" {
				file = "Dockerfile"
			}
			ctxTar := buildContext(t, c.gz, map[string]string{
				file:                c.content,
				"msg.txt":           "from the context",
				"Dockerfile.unused": "FROM scratch\n",
			})
			tag := e.ref("built", string(rune('a'+i)))
			var lines []string
			err := e.c.BuildImage(e.ctx(120*time.Second), ctxTar, BuildOptions{
				Tags:       []string{tag},
				Dockerfile: c.dockerfile,
				Labels:     e.labels("built-by", "test"),
				BuildArgs:  map[string]string{"GREETING": "hi"},
				NoCache:    true,
			}, func(l []byte) { lines = append(lines, string(l)) })
			if err != nil {
				t.Fatal(err)
			}
			e.removeImageLater(tag)
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, `"stream"`) && strings.Contains(l, "Step 1/") }) {
				t.Fatalf("no step output in progress: %q", lines)
			}
			insp, err := e.c.api.ImageInspect(e.ctx(10*time.Second), tag)
			if err != nil {
				t.Fatal(err)
			}
			if insp.Config.Labels["built-by"] != "test" || insp.Config.Labels[testLabel] != e.label {
				t.Fatalf("labels %v", insp.Config.Labels)
			}
			id := e.run(ContainerSpec{Name: e.name("built" + string(rune('a'+i))), Image: tag, Cmd: []string{"cat", "/built.txt"}})
			e.waitExited(id)
			if got := e.logs(id, LogsOptions{}); len(got) != 1 || got[0].Text != c.want {
				t.Fatalf("built image prints %+v", got)
			}
		})
	}

	t.Run("failing RUN", func(t *testing.T) {
		e := e.sub(t)
		ctxTar := buildContext(t, false, map[string]string{
			// $((1+2)): the step line echoes the command, the output differs.
			"Dockerfile": "FROM " + base + "\nRUN echo failing-$((1+2))-output; exit 3\n",
		})
		var builder string
		err := e.c.BuildImage(e.ctx(120*time.Second), ctxTar, BuildOptions{Tags: []string{e.ref("broken", "1")}}, func(l []byte) {
			if id, ok := builderID(l); ok {
				builder = id
			}
		})
		if err == nil {
			e.removeImageLater(e.ref("broken", "1"))
			t.Fatal("build succeeded")
		}
		if msg := err.Error(); !strings.Contains(msg, "non-zero code: 3") || !strings.Contains(msg, "failing-3-output") {
			t.Fatalf("error lacks the failure or the output: %v", err)
		}
		if ok, _ := e.c.ImageExists(e.ctx(10*time.Second), e.ref("broken", "1")); ok {
			t.Fatal("failed build left a tag")
		}
		if builder == "" {
			t.Fatal("builder container not named in the output")
		}
		e.waitGone(builder) // ForceRemove: no container left behind

	})

	t.Run("missing Dockerfile", func(t *testing.T) {
		e := e.sub(t)
		ctxTar := buildContext(t, false, map[string]string{"other": "x"})
		if err := e.c.BuildImage(e.ctx(60*time.Second), ctxTar, BuildOptions{Tags: []string{e.ref("nofile", "1")}}, nil); err == nil {
			t.Fatal("build without Dockerfile succeeded")
		}
	})

	t.Run("cancel aborts the build", func(t *testing.T) {
		e := e.sub(t)
		marker := "started-2-" + e.label // output of the RUN, not its step line
		ctxTar := buildContext(t, false, map[string]string{
			"Dockerfile": "FROM " + base + "\nRUN echo started-$((1+1))-" + e.label + "; sleep 60\n",
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		running := make(chan string, 1) // the builder's container
		var builder string
		go func() {
			done <- e.c.BuildImage(ctx, ctxTar, BuildOptions{Tags: []string{e.ref("cancelled", "1")}}, func(l []byte) {
				if id, ok := builderID(l); ok {
					builder = id
				}
				if strings.Contains(string(l), marker) {
					running <- builder
				}
			})
		}()
		select {
		case builder = <-running:
		case err := <-done:
			t.Fatalf("build ended early: %v", err)
		case <-time.After(60 * time.Second):
			t.Fatal("RUN step never started")
		}
		if len(builder) < 12 {
			t.Fatalf("builder container not named in the output: %q", builder)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("build after cancel: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("BuildImage did not return after cancel")
		}
		e.waitGone(builder) // the engine stopped the RUN (sleep 60) and removed it
	})
}
