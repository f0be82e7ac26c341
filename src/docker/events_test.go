package docker

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/rs/zerolog"

	"reagent/src/errdefs"
	"reagent/src/testimage"
)

// eventLog runs WatchEvents in the background and hands its events out.
type eventLog struct {
	ch   chan Event
	done chan error
}

func watch(t *testing.T, c *Client, labels map[string]string) *eventLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &eventLog{ch: make(chan Event, 256), done: make(chan error, 1)}
	go func() {
		l.done <- c.WatchEvents(ctx, labels, func(ev Event) {
			select {
			case l.ch <- ev:
			default:
				t.Errorf("event buffer full, dropped %+v", ev)
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-l.done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("WatchEvents returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("WatchEvents did not return after cancel")
		}
	})
	return l
}

// next waits for the next event that matches, skipping others.
func (l *eventLog) next(t *testing.T, what string, match func(Event) bool) Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-l.ch:
			if match(ev) {
				return ev
			}
		case err := <-l.done:
			t.Fatalf("WatchEvents ended while waiting for %s: %v", what, err)
		case <-deadline:
			t.Fatalf("no %s event", what)
		}
	}
}

func TestWatchEvents(t *testing.T) {
	e := newEnv(t)
	img := e.image("events", testimage.Options{})
	events := watch(t, e.c, e.labels())

	select {
	case ev := <-events.ch:
		if ev.Action != ActionResync {
			t.Fatalf("first event %+v, want resync", ev)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no resync after connecting")
	}

	// A container without the filter label must not show up.
	other := map[string]string{testLabel: e.label + "-other"}
	e.run(ContainerSpec{Name: e.name("other"), Image: img, Cmd: []string{"true"}, Labels: other})

	name := e.name("seven")
	id := e.run(ContainerSpec{Name: name, Image: img, Cmd: []string{"sh", "-c", "exit 7"}, Labels: e.labels("role", "x")})
	var seq []string
	die := events.next(t, "die", func(ev Event) bool {
		if ev.ContainerID != id {
			if ev.Action != ActionResync {
				t.Fatalf("event of a container outside the filter: %+v", ev)
			}
			return false
		}
		seq = append(seq, ev.Action)
		return ev.Action == "die"
	})
	if len(seq) < 3 || seq[0] != "create" || seq[1] != "start" {
		t.Fatalf("event sequence %v, want create start … die", seq)
	}
	if die.ExitCode != 7 || die.Name != name || die.Labels["role"] != "x" || die.Labels[testLabel] != e.label || die.Time.IsZero() {
		t.Fatalf("die event %+v", die)
	}
	if _, ok := die.Labels["exitCode"]; ok {
		t.Fatalf("engine attributes leaked into labels: %v", die.Labels)
	}
	if err := e.c.RemoveContainer(e.ctx(10*time.Second), id, true); err != nil {
		t.Fatal(err)
	}
	events.next(t, "destroy", func(ev Event) bool { return ev.ContainerID == id && ev.Action == "destroy" })
}

// When the connection to the engine breaks, WatchEvents reconnects,
// announces a resync and keeps delivering events.
func TestWatchEventsReconnect(t *testing.T) {
	e := newEnv(t)
	img := e.image("reconnect", testimage.Options{})
	proxy := newSockProxy(t)
	c := e.client(proxy.host())

	// Engine unreachable: Ping says so, WaitReady waits for it.
	if _, err := c.Ping(e.ctx(10 * time.Second)); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("ping without engine: %v", err)
	}
	ready := make(chan error, 1)
	go func() { ready <- c.WaitReady(e.ctx(30 * time.Second)) }()
	events := watch(t, c, e.labels())
	select {
	case err := <-ready:
		t.Fatalf("WaitReady returned %v before the engine was reachable", err)
	case ev := <-events.ch:
		t.Fatalf("event %+v before the engine was reachable", ev)
	default:
	}
	proxy.start(t)
	if err := <-ready; err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	events.next(t, "first resync", func(ev Event) bool { return ev.Action == ActionResync })

	for round := 1; round <= 2; round++ {
		proxy.dropAll()
		events.next(t, "resync after the drop", func(ev Event) bool { return ev.Action == ActionResync })
		id := e.run(ContainerSpec{Name: e.name("r" + string(rune('0'+round))), Image: img, Cmd: []string{"true"}})
		events.next(t, "start after reconnect", func(ev Event) bool { return ev.ContainerID == id && ev.Action == "start" })
	}
}

// Needs no engine: the socket never appears.
func TestWaitReadyGivesUp(t *testing.T) {
	proxy := newSockProxy(t) // never started
	c, err := New(Options{Host: proxy.host(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.retryMin, c.retryMax = 20*time.Millisecond, 100*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = c.WaitReady(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "Cannot connect") {
		t.Fatalf("WaitReady: %v", err)
	}
}

func TestToEvent(t *testing.T) {
	cases := []struct {
		name string
		msg  events.Message
		want Event
	}{
		{"die", events.Message{Type: events.ContainerEventType, Action: "die", TimeNano: 1700000000123456789,
			Actor: events.Actor{ID: "abc", Attributes: map[string]string{"name": "app", "image": "img", "exitCode": "7", "io.x": "1"}}},
			Event{Action: "die", ContainerID: "abc", Name: "app", ExitCode: 7, Labels: map[string]string{"io.x": "1"}, Time: time.Unix(0, 1700000000123456789)}},
		{"health", events.Message{Type: events.ContainerEventType, Action: "health_status: unhealthy", Time: 1700000000,
			Actor: events.Actor{ID: "abc", Attributes: map[string]string{"name": "app"}}},
			Event{Action: "health_status", Detail: "unhealthy", ContainerID: "abc", Name: "app", Time: time.Unix(1700000000, 0)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := toEvent(c.msg)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}
