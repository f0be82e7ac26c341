package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/devcloud"
)

// studioFlags are accepted before and after the command name.
type studioFlags struct {
	url, user, secret, registry string
	timeout                     time.Duration
}

func (s *studioFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.url, "url", envOr("DEVCLOUD_URL", "ws://localhost:8080"+devcloud.RouterPath), "router URL ($DEVCLOUD_URL)")
	fs.StringVar(&s.user, "user", envOr("DEVCLOUD_USER", devcloud.SystemAuthID), "Studio user: system or a numeric account key ($DEVCLOUD_USER)")
	fs.StringVar(&s.secret, "secret", os.Getenv("DEVCLOUD_SECRET"), "the user's wampcra secret ($DEVCLOUD_SECRET; system: "+devcloud.DefaultSystemSecret+")")
	fs.StringVar(&s.registry, "registry", envOr("DEVCLOUD_REGISTRY", "localhost:5001"), "registry host:port push-image pushes to ($DEVCLOUD_REGISTRY)")
	fs.DurationVar(&s.timeout, "timeout", 30*time.Second, "bound on each call")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// errUsage: the message is printed already; exit 2.
var errUsage = errors.New("usage")

// studioCmd is one `devcloud studio` command.
type studioCmd struct {
	name, args, help string
	flags            func(fs *flag.FlagSet) // the command's own flags
	run              func(ctx context.Context, st *studioRun, pos []string) error
}

// studioRun is what a command works with.
type studioRun struct {
	flags          studioFlags
	stdout, stderr io.Writer
	session        *client.Client // dialled on first use
}

func studioCommands() []*studioCmd {
	return []*studioCmd{devicesCmd(), appsCmd(), pushImageCmd(), requestCmd(), logsCmd(), callCmd()}
}

func studio(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	st := &studioRun{stdout: stdout, stderr: stderr}
	top := flag.NewFlagSet("devcloud studio", flag.ContinueOnError)
	top.SetOutput(stderr)
	st.flags.register(top)
	cmds := studioCommands()
	top.Usage = func() {
		fmt.Fprintln(stderr, "usage: devcloud studio [flags] COMMAND [args]\n\ncommands:")
		for _, c := range cmds {
			fmt.Fprintf(stderr, "  %-11s %s\n", c.name, c.help)
		}
		fmt.Fprintln(stderr, "\nflags (also accepted after the command):")
		top.PrintDefaults()
	}
	if err := top.Parse(args); err != nil {
		return exitCode(err, stderr)
	}
	if top.NArg() == 0 {
		top.Usage()
		return 2
	}
	var cmd *studioCmd
	for _, c := range cmds {
		if c.name == top.Arg(0) {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "devcloud studio: unknown command %q\n", top.Arg(0))
		top.Usage()
		return 2
	}
	// The values given before the command are the defaults after it;
	// registering them again resets the variables, so keep them first.
	given := map[string]string{}
	top.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })
	fs := flag.NewFlagSet("devcloud studio "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	st.flags.register(fs)
	for name, v := range given {
		fs.Set(name, v)
	}
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: devcloud studio %s %s\n  %s\n\nflags:\n", cmd.name, cmd.args, cmd.help)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, top.Args()[1:])
	if err != nil {
		return exitCode(err, stderr)
	}
	defer func() {
		if st.session != nil {
			st.session.Close()
		}
	}()
	if err := cmd.run(ctx, st, pos); err != nil {
		if errors.Is(err, errUsage) {
			fs.Usage()
			return 2
		}
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return 0 // Ctrl-C ends logs; that is how it is meant to stop
		}
		fmt.Fprintf(stderr, "devcloud studio %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

func exitCode(err error, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// parseInterleaved parses flags anywhere among the positional arguments,
// so `request SERIAL --key 1` works as well as `request --key 1 SERIAL`.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// wantArgs checks the number of positional arguments.
func wantArgs(pos []string, lo, hi int) error {
	if len(pos) < lo || len(pos) > hi {
		return errUsage
	}
	return nil
}

// dial joins the realm as the chosen Studio user, once per command.
func (st *studioRun) dial(ctx context.Context) (*client.Client, error) {
	if st.session != nil {
		return st.session, nil
	}
	secret := st.flags.secret
	if secret == "" && st.flags.user == devcloud.SystemAuthID {
		secret = devcloud.DefaultSystemSecret
	}
	if secret == "" {
		return nil, fmt.Errorf("user %s needs --secret (or $DEVCLOUD_SECRET)", st.flags.user)
	}
	dctx, cancel := context.WithTimeout(ctx, st.flags.timeout)
	defer cancel()
	cl, err := devcloud.Dial(dctx, devcloud.DialOptions{URL: st.flags.url, AuthID: st.flags.user, Secret: secret})
	if err != nil {
		return nil, err
	}
	st.session = cl
	return cl, nil
}

// call calls a procedure with the command timeout.
func (st *studioRun) call(ctx context.Context, proc string, opts wamp.Dict, args wamp.List, kwargs wamp.Dict) (*wamp.Result, error) {
	cl, err := st.dial(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, st.flags.timeout)
	defer cancel()
	return cl.Call(cctx, proc, opts, args, kwargs, nil)
}

// decodeArg0 decodes args[0] of a result into v through JSON.
func decodeArg0(res *wamp.Result, v any) error {
	if len(res.Arguments) == 0 {
		return errors.New("empty result")
	}
	b, err := json.Marshal(res.Arguments[0])
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// argDict is args[0] of a result as a dict, with its wire types.
func argDict(res *wamp.Result) (wamp.Dict, bool) {
	if len(res.Arguments) == 0 {
		return nil, false
	}
	switch d := res.Arguments[0].(type) {
	case map[string]any:
		return d, true
	case wamp.Dict:
		return d, true
	}
	return nil, false
}

// printJSON writes v indented; wire values (maps, lists, numbers) all
// encode.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// ago says how long ago t was, "-" for never.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

// orDash prints "-" for an empty cell so columns stay aligned.
func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
