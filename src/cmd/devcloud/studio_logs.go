package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/devcloud"
)

func logsCmd() *studioCmd {
	var history bool
	return &studioCmd{
		name: "logs", args: "SERIAL CONTAINER", help: "follow an app's log topic (CONTAINER e.g. prod_1_demo) until Ctrl-C",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&history, "history", true, "print the device's recent lines first (get_app_log_history)")
		},
		run: func(ctx context.Context, st *studioRun, pos []string) error {
			if err := wantArgs(pos, 2, 2); err != nil {
				return err
			}
			serial, container := pos[0], pos[1]
			cl, err := st.dial(ctx)
			if err != nil {
				return err
			}
			events := make(chan wamp.List, 1024)
			topic := devcloud.LogTopic(serial, container)
			// Subscribe first, then read the history: a line may show twice,
			// none goes missing. The agent publishes container output only
			// while someone is subscribed.
			if err := cl.Subscribe(topic, func(ev *wamp.Event) {
				select {
				case events <- ev.Arguments:
				case <-ctx.Done():
				}
			}, nil); err != nil {
				return fmt.Errorf("subscribe %s: %w", topic, err)
			}
			fmt.Fprintf(st.stderr, "following %s (Ctrl-C to stop)\n", topic)
			if history {
				res, err := st.call(ctx, devcloud.DeviceProcedure(serial, "get_app_log_history"), wamp.Dict{wamp.OptDiscloseMe: true},
					wamp.List{wamp.Dict{"containerName": container}}, nil)
				if err != nil {
					fmt.Fprintf(st.stderr, "no history: %v\n", err)
				} else if len(res.Arguments) > 0 {
					if lines, ok := res.Arguments[0].([]any); ok {
						for _, l := range lines {
							printLogPayload(st.stdout, l)
						}
					}
				}
			}
			for {
				select {
				case args := <-events:
					for _, a := range args {
						printLogPayload(st.stdout, a)
					}
				case <-cl.Done():
					return errors.New("the router closed the session")
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		},
	}
}

// printLogPayload prints one publication argument of a log topic: raw
// lines, an agent message {type, chunk}, or transfer progress.
func printLogPayload(w io.Writer, v any) {
	switch x := v.(type) {
	case string:
		fmt.Fprintln(w, strings.TrimRight(x, "\n"))
	case map[string]any:
		if chunk, ok := x["chunk"].(string); ok {
			if chunk == "LOGGER_CLEAR" {
				fmt.Fprintln(w, "--- log cleared ---")
				return
			}
			fmt.Fprintln(w, strings.TrimRight(chunk, "\n"))
			return
		}
		if status, ok := x["status"].(string); ok {
			fmt.Fprintf(w, "%s %v %v\n", status, x["id"], x["progress"])
			return
		}
		b, _ := json.Marshal(x)
		fmt.Fprintln(w, string(b))
	default:
		b, _ := json.Marshal(x)
		fmt.Fprintln(w, string(b))
	}
}
