package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"reagent/src/devcloud"
)

// defaultDevice is the device `make run` starts the agent with.
const defaultDevice = "test-config.flock"

// serveEnv is what serve talks to; tests set onReady to get the Cloud.
type serveEnv struct {
	stdout, stderr io.Writer
	onReady        func(*devcloud.Cloud)
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func serve(ctx context.Context, args []string, env serveEnv) int {
	fs := flag.NewFlagSet("devcloud serve", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var (
		routerAddr   = fs.String("router-addr", ":8080", "router listen address (websocket at "+devcloud.RouterPath+")")
		registryAddr = fs.String("registry-addr", ":5001", "registry listen address (plain HTTP)")
		dataDir      = fs.String("data", "", "directory for the SQLite file and registry blobs (empty: a temp dir removed at exit)")
		usersFile    = fs.String("users", "", `JSON users file: [{"authid":"100","secret":"…","privileges":["READ",…]}]`)
		systemSecret = fs.String("system-secret", devcloud.DefaultSystemSecret, "wampcra secret of the trusted user \"system\"")
		portRange    = fs.String("port-range", "20000-20999", "remote ports re.tunnel.expose_port hands out")
		logLevel     = fs.String("log-level", "info", "trace, debug, info, warn or error")
		jsonLogs     = fs.Bool("json-logs", false, "log JSON lines instead of pretty console output")
		devices      listFlag
		users        listFlag
	)
	fs.Var(&devices, "device", "a device .flock file allowed to connect (repeatable; default "+defaultDevice+")")
	fs.Var(&users, "user", "a Studio user authid:secret:PRIV,PRIV (repeatable; privileges "+strings.Join(devcloud.Privileges, ", ")+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "devcloud serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	lvl, err := zerolog.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(env.stderr, "devcloud serve: -log-level: %v\n", err)
		return 2
	}
	var out io.Writer = zerolog.ConsoleWriter{Out: env.stderr, TimeFormat: "15:04:05"}
	if *jsonLogs {
		out = env.stderr
	}
	log := zerolog.New(out).Level(lvl).With().Timestamp().Logger()

	opts := devcloud.Options{RouterAddr: *routerAddr, RegistryAddr: *registryAddr, DataDir: *dataDir, Log: log}
	if opts.PortRange, err = parsePortRange(*portRange); err != nil {
		fmt.Fprintf(env.stderr, "devcloud serve: -port-range: %v\n", err)
		return 2
	}
	if *usersFile != "" {
		us, err := devcloud.LoadUsers(*usersFile)
		if err != nil {
			fmt.Fprintf(env.stderr, "devcloud serve: %v\n", err)
			return 2
		}
		opts.Users = append(opts.Users, us...)
	}
	for _, u := range users {
		parsed, err := devcloud.ParseUser(u)
		if err != nil {
			fmt.Fprintf(env.stderr, "devcloud serve: -user: %v\n", err)
			return 2
		}
		opts.Users = append(opts.Users, parsed)
	}
	opts.Users = append(opts.Users, devcloud.User{AuthID: devcloud.SystemAuthID, Secret: *systemSecret})
	opts.DeviceFiles = devices
	if len(devices) == 0 {
		if _, err := os.Stat(defaultDevice); err == nil {
			opts.DeviceFiles = []string{defaultDevice}
		} else if errors.Is(err, iofs.ErrNotExist) {
			log.Warn().Msg("no -device given and no " + defaultDevice + " here: no device can connect")
		}
	}

	c, err := devcloud.Start(ctx, opts)
	if err != nil {
		fmt.Fprintf(env.stderr, "devcloud: %v\n", err)
		return 1
	}
	fmt.Fprintf(env.stdout, "devcloud is up\n  router    %s (realm %s)\n  registry  %s\n  data      %s\n",
		c.RouterURL(), devcloud.Realm, c.RegistryHost(), c.DataDir())
	for _, d := range opts.DeviceFiles {
		fmt.Fprintf(env.stdout, "  device    %s\n", d)
	}
	if env.onReady != nil {
		env.onReady(c)
	}
	<-ctx.Done()
	log.Info().Msg("stopping")
	if err := c.Close(); err != nil {
		fmt.Fprintf(env.stderr, "devcloud: close: %v\n", err)
		return 1
	}
	return 0
}

func parsePortRange(s string) ([2]int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || a <= 0 || b < a || b > 65535 {
		return [2]int{}, fmt.Errorf("want LOW-HIGH within 1-65535, got %q", s)
	}
	return [2]int{a, b}, nil
}
