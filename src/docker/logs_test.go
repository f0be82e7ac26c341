package docker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"reagent/src/testimage"
)

// Both kinds of container: TTY (raw log stream) and non-TTY (multiplexed).
var ttyCases = []struct {
	name string
	tty  bool
}{{"non-tty", false}, {"tty", true}}

func TestLogs(t *testing.T) {
	e := newEnv(t)
	img := e.image("logs", testimage.Options{})
	// stdout and stderr are separate pipes, so only the order within each
	// stream is defined; the sleeps make the cross-stream order stable
	// enough to read, the assertions do not rely on it.
	script := `echo out1; echo err1 >&2; echo "  spaced  out2"; printf 'no newline at the end'`
	for _, c := range ttyCases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			id := e.run(ContainerSpec{Name: e.name("logs-" + c.name), Image: img, Tty: c.tty, Cmd: []string{"sh", "-c", script}})
			e.waitExited(id)
			all := e.logs(id, LogsOptions{})
			byStream := map[string][]string{}
			for i, le := range all {
				byStream[le.Stream] = append(byStream[le.Stream], le.Text)
				if le.Time.IsZero() || i > 0 && le.Time.Before(all[i-1].Time) && le.Stream == all[i-1].Stream {
					t.Fatalf("entry %d time %v", i, le.Time)
				}
			}
			wantOut := []string{"out1", "  spaced  out2", "no newline at the end"}
			wantErr := []string{"err1"}
			if c.tty { // a terminal merges stderr into stdout
				wantOut = []string{"out1", "err1", "  spaced  out2", "no newline at the end"}
				wantErr = nil
			}
			if !slices.Equal(byStream["stdout"], wantOut) || !slices.Equal(byStream["stderr"], wantErr) {
				t.Fatalf("stdout %q stderr %q", byStream["stdout"], byStream["stderr"])
			}

			tail := e.logs(id, LogsOptions{Tail: 1, Timestamps: true})
			if len(tail) != 1 {
				t.Fatalf("tail 1: %d entries", len(tail))
			}
			last := all[len(all)-1]
			wantText := last.Time.UTC().Format("2006-01-02T15:04:05.000000000Z") + " " + last.Text
			if tail[0].Text != wantText || !tail[0].Time.Equal(last.Time) {
				t.Fatalf("with timestamps %q, want %q", tail[0].Text, wantText)
			}

			until := e.logs(id, LogsOptions{Until: all[0].Time.Add(time.Nanosecond)})
			if len(until) == 0 || until[len(until)-1].Time.After(all[0].Time) {
				t.Fatalf("until: %+v", until)
			}
		})
	}
}

// Lines longer than the engine's 16 KiB log buffer come back whole; lines
// longer than MaxLogLine are cut there.
func TestLogsLongLines(t *testing.T) {
	e := newEnv(t)
	img := e.image("long", testimage.Options{})
	const long = 40000
	huge := MaxLogLine + 200000
	script := fmt.Sprintf(`awk 'function rep(c, n,  s) { s = c; while (length(s) < n) s = s s; return substr(s, 1, n) }
BEGIN { print rep("x", %d); print rep("y", %d); print "after" }'`, long, huge)
	for _, c := range ttyCases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			id := e.run(ContainerSpec{Name: e.name("long-" + c.name), Image: img, Tty: c.tty, Cmd: []string{"sh", "-c", script}})
			e.waitExited(id)
			got := e.logs(id, LogsOptions{})
			if len(got) != 3 {
				lens := make([]int, len(got))
				for i, le := range got {
					lens[i] = len(le.Text)
				}
				t.Fatalf("%d entries of lengths %v", len(got), lens)
			}
			if got[0].Text != strings.Repeat("x", long) {
				t.Fatalf("long line: %d bytes, starts %.40q", len(got[0].Text), got[0].Text)
			}
			if got[1].Text != strings.Repeat("y", MaxLogLine) {
				t.Fatalf("huge line: %d bytes, want %d", len(got[1].Text), MaxLogLine)
			}
			if got[2].Text != "after" {
				t.Fatalf("after: %.40q", got[2].Text)
			}
		})
	}
}

// A follower that stops (relay reconnect, agent restart) and resumes with
// Since = last entry + 1ns sees every line exactly once.
func TestLogsFollowResume(t *testing.T) {
	e := newEnv(t)
	img := e.image("follow", testimage.Options{})
	const n = 60
	script := fmt.Sprintf(`echo ready; sleep 0.3; for i in $(seq 1 %d); do echo line $i; [ $((i %% 3)) = 0 ] && echo err $i >&2; sleep 0.02; done`, n)
	for _, c := range ttyCases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			id := e.run(ContainerSpec{Name: e.name("follow-" + c.name), Image: img, Tty: c.tty, Cmd: []string{"sh", "-c", script}})

			var got []LogEntry
			enough := errors.New("enough")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := e.c.Logs(ctx, id, LogsOptions{Follow: true}, func(le LogEntry) error {
				got = append(got, le)
				if strings.HasPrefix(le.Text, "line ") && len(got) > n/3 {
					return enough // the follower goes away mid-stream
				}
				return nil
			})
			if !errors.Is(err, enough) {
				t.Fatalf("first follow: %v after %d lines", err, len(got))
			}
			last := got[len(got)-1].Time
			err = e.c.Logs(e.ctx(30*time.Second), id, LogsOptions{Follow: true, Since: last.Add(time.Nanosecond)}, func(le LogEntry) error {
				got = append(got, le)
				return nil
			})
			if err != nil {
				t.Fatalf("resumed follow: %v", err)
			}
			// Follow returned on its own: the container has stopped.
			if ct, err := e.c.InspectContainer(e.ctx(10*time.Second), id); err != nil || ct.State.Running {
				t.Fatalf("follow ended while running: %+v %v", ct.State, err)
			}

			want := []string{"ready"}
			for i := 1; i <= n; i++ {
				want = append(want, fmt.Sprintf("line %d", i))
				if i%3 == 0 {
					want = append(want, fmt.Sprintf("err %d", i))
				}
			}
			var texts []string
			for _, le := range got {
				texts = append(texts, le.Text)
			}
			// Compare as multisets per stream: stdout and stderr lines are
			// copied by separate goroutines of the engine.
			if !sameLines(texts, want) {
				t.Fatalf("lines differ (dup or gap):\n got %q\nwant %q", texts, want)
			}
			var outs []string
			for _, le := range got {
				if strings.HasPrefix(le.Text, "line ") {
					outs = append(outs, le.Text)
				}
			}
			for i, l := range outs {
				if l != fmt.Sprintf("line %d", i+1) {
					t.Fatalf("stdout out of order at %d: %q", i, outs)
				}
			}
		})
	}
}

func sameLines(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestLogsCancel(t *testing.T) {
	e := newEnv(t)
	img := e.image("logcancel", testimage.Options{})
	id := e.run(ContainerSpec{Name: e.name("quiet"), Image: img, Cmd: []string{"sh", "-c", "echo ready; sleep 60"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.c.Logs(ctx, id, LogsOptions{Follow: true}, func(le LogEntry) error {
			if le.Text == "ready" {
				close(first)
			}
			return nil
		})
	}()
	select {
	case <-first:
	case <-time.After(30 * time.Second):
		t.Fatal("ready not delivered while following")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Logs after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Logs did not return after cancel")
	}
}
