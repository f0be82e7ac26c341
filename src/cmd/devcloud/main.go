// Command devcloud is the IronFlock cloud on one machine: a WAMP router with
// the backend procedures the agent calls, and an OCI registry (serve, the
// default), plus a Studio command line to deploy apps, request states,
// follow logs and call device procedures (studio …). See docs/devcloud.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `devcloud — the IronFlock cloud on one machine

usage:
  devcloud [serve] [flags]            run router (:8080), backend and registry (:5001)
  devcloud studio [flags] COMMAND …   act as Studio against a running devcloud

studio commands:
  devices                              devices, status, last heartbeat, stats
  apps SERIAL                          requested vs reported state per app
  push-image --key K --name N --version V [--dir DIR [--cmd CMD] | --busybox]
  request SERIAL --key K --name N --stage PROD|DEV --target STATE [--version V] [--env K=V]… [--port P]…
  logs SERIAL CONTAINER                follow reswarm.logs.<serial>.<container>
  call SERIAL PROCEDURE ['<json args>'] ['<json kwargs>']

"devcloud serve -h" and "devcloud studio -h" list the flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches to serve or studio; it returns the exit code (2 for usage
// errors).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		switch args[0] {
		case "serve", "studio":
			cmd, args = args[0], args[1:]
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return 0
		}
	}
	if cmd == "studio" {
		return studio(ctx, args, stdout, stderr)
	}
	return serve(ctx, args, serveEnv{stdout: stdout, stderr: stderr})
}
