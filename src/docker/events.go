package docker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// ActionResync is the Event.Action sent after every (re)connect of the
// event stream: events may have been missed, so the consumer re-lists.
const ActionResync = "resync"

// Event is a container event of the engine.
type Event struct {
	// Action: create start die stop kill destroy oom health_status … (the
	// part before ":" of the engine's action), or ActionResync.
	Action string
	// Detail is the rest of the engine's action after ":", e.g. "healthy"
	// for health_status or the command for exec_start; usually empty.
	Detail      string
	ContainerID string
	Name        string
	Labels      map[string]string // the container's labels
	ExitCode    int               // die events
	Time        time.Time
}

// eventAttributes are attributes the engine adds next to the container
// labels in an event; they are not labels.
var eventAttributes = map[string]bool{"image": true, "name": true, "exitCode": true, "signal": true, "execID": true, "oldName": true}

// WatchEvents calls fn for every container event whose container carries all
// of labels (nil = every container) until ctx ends; it returns ctx's error.
// When the stream or the engine drops it reconnects with capped, jittered
// backoff; after every (re)connect it first calls fn with an ActionResync
// event, so consumers stay level-triggered. fn runs on the caller's
// goroutine, one event at a time, and must not block long.
func (c *Client) WatchEvents(ctx context.Context, labels map[string]string, fn func(Event)) error {
	bo := newBackoff(c.retryMin, c.retryMax)
	for {
		start := time.Now()
		err := c.watchOnce(ctx, labels, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) >= c.healthyAfter {
			bo.reset()
		}
		d := bo.next()
		c.log.Warn().Err(err).Dur("retry_in", d).Msg("event stream lost")
		if err := sleepCtx(ctx, d); err != nil {
			return err
		}
	}
}

// watchOnce runs one subscription until it fails.
func (c *Client) watchOnce(ctx context.Context, labels map[string]string, fn func(Event)) error {
	// Ping first so a resync is only announced when the engine answers.
	if _, err := c.api.Ping(ctx); err != nil {
		return wrapf(err, "ping engine")
	}
	f := filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)))
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	// The engine flushes the response before it registers the subscriber;
	// asking for events since just before the request closes that gap (the
	// engine replays them from its buffer). Duplicates are harmless to a
	// level-triggered consumer, losses are not.
	since := time.Now()
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, errs := c.api.Events(subCtx, events.ListOptions{Filters: f, Since: unixNano(since)})
	select {
	case err := <-errs:
		return wrapf(err, "subscribe to engine events")
	default:
	}
	c.log.Debug().Msg("event stream connected")
	fn(Event{Action: ActionResync, Time: since})
	for {
		select {
		case m := <-msgs:
			if m.Type != events.ContainerEventType {
				continue
			}
			fn(toEvent(m))
		case err := <-errs:
			if err == nil {
				err = fmt.Errorf("event stream closed")
			}
			return wrapf(err, "engine event stream")
		}
	}
}

func toEvent(m events.Message) Event {
	action, detail, _ := strings.Cut(string(m.Action), ":")
	ev := Event{
		Action:      strings.TrimSpace(action),
		Detail:      strings.TrimSpace(detail),
		ContainerID: m.Actor.ID,
		Name:        m.Actor.Attributes["name"],
		Time:        time.Unix(0, m.TimeNano),
	}
	if m.TimeNano == 0 {
		ev.Time = time.Unix(m.Time, 0)
	}
	if code, ok := m.Actor.Attributes["exitCode"]; ok {
		ev.ExitCode, _ = strconv.Atoi(code)
	}
	for k, v := range m.Actor.Attributes {
		if eventAttributes[k] {
			continue
		}
		if ev.Labels == nil {
			ev.Labels = map[string]string{}
		}
		ev.Labels[k] = v
	}
	return ev
}

// unixNano formats t the way the engine's since/until parameters accept
// with sub-second precision: "<seconds>.<nanoseconds>".
func unixNano(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}
