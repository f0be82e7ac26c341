package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/devcloud"
)

func requestCmd() *studioCmd {
	var (
		r                  devcloud.Requested
		current            string
		cancel             bool
		requestor, owner   uint64
		envs, ports, extra listFlag
	)
	return &studioCmd{
		name: "request", args: "SERIAL --key K --name N --stage PROD|DEV --target STATE [--version V] [--env K=V]… [--port P]…",
		help: "store a requested app state and send request_app_state to the device",
		flags: func(fs *flag.FlagSet) {
			fs.Uint64Var(&r.AppKey, "key", 0, "app key")
			fs.StringVar(&r.AppName, "name", "", "app name")
			fs.StringVar(&r.Stage, "stage", "PROD", "PROD or DEV")
			fs.StringVar(&r.TargetState, "target", "", "target state: RUNNING, PRESENT, REMOVED, UNINSTALLED, BUILT, PUBLISHED, …")
			fs.StringVar(&r.NewestVersion, "version", "", "newest_version (the image tag for PROD)")
			fs.StringVar(&r.PresentVersion, "present-version", "", "present_version")
			fs.StringVar(&current, "current", "", "current_state (default: the app's last reported state, REMOVED if none)")
			fs.BoolVar(&r.RequestUpdate, "update", false, "request_update")
			fs.Uint64Var(&r.ReleaseKey, "release-key", 0, "release_key")
			fs.Uint64Var(&r.NewReleaseKey, "new-release-key", 0, "new_release_key")
			fs.Uint64Var(&r.AppCredEpoch, "cred-epoch", 0, "app_cred_epoch")
			fs.Uint64Var(&requestor, "requestor", 0, "requestor_account_key (default: --user when numeric)")
			fs.Uint64Var(&owner, "owner", 0, "device_owner_account_key")
			fs.BoolVar(&cancel, "cancel", false, "cancel_transition: cancel the running transition")
			fs.Var(&envs, "env", "an environment variable K=V (repeatable)")
			fs.Var(&ports, "port", "a port rule PORT[/PROTO][:REMOTE] or a JSON object (repeatable)")
			fs.Var(&extra, "kw", "an extra kwarg K=JSON, e.g. --kw 'docker_compose={\"services\":{…}}' (repeatable)")
		},
		run: func(ctx context.Context, st *studioRun, pos []string) error {
			if err := wantArgs(pos, 1, 1); err != nil {
				return err
			}
			if r.AppKey == 0 || r.AppName == "" || r.TargetState == "" {
				fmt.Fprintln(st.stderr, "request needs --key, --name and --target")
				return errUsage
			}
			serial := pos[0]
			r.Stage, r.TargetState, r.CurrentState = strings.ToUpper(r.Stage), strings.ToUpper(r.TargetState), strings.ToUpper(current)
			r.RequestorAccountKey, r.DeviceOwnerAccountKey = requestor, owner
			if r.RequestorAccountKey == 0 {
				r.RequestorAccountKey, _ = strconv.ParseUint(st.flags.user, 10, 64)
			}
			var err error
			if r.Environment, err = parseEnv(envs); err != nil {
				return err
			}
			if r.Ports, err = parsePorts(ports); err != nil {
				return err
			}
			kwExtra, err := parseKwargs(extra)
			if err != nil {
				return err
			}
			if cancel {
				kwExtra["cancel_transition"] = true
			}
			rec, err := json.Marshal(r)
			if err != nil {
				return err
			}
			var recDict map[string]any
			if err := json.Unmarshal(rec, &recDict); err != nil {
				return err
			}
			// devcloud stores the state and answers with the kwargs the
			// real cloud would send for it.
			res, err := st.call(ctx, devcloud.ProcStudioSetRequested, nil, wamp.List{serial, recDict}, nil)
			if err != nil {
				return fmt.Errorf("store requested state: %w", err)
			}
			// Keep the answer's wire types: re-encoding through JSON would
			// turn app_key into a float the agent rejects.
			kw, ok := argDict(res)
			if !ok {
				return fmt.Errorf("unexpected answer %v", res.Arguments)
			}
			maps.Copy(kw, kwExtra)
			if _, err := st.call(ctx, devcloud.DeviceProcedure(serial, "request_app_state"), wamp.Dict{wamp.OptDiscloseMe: true}, nil, kw); err != nil {
				return fmt.Errorf("request_app_state (the state is stored; the device gets it at its next sync): %w", err)
			}
			fmt.Fprintf(st.stdout, "requested app %d %s (%s) %s on %s\n", r.AppKey, r.AppName, r.Stage, r.TargetState, serial)
			return nil
		},
	}
}

// parseEnv turns K=V pairs into the reference's {K: {"value": V}}.
func parseEnv(envs []string) (map[string]any, error) {
	if len(envs) == 0 {
		return nil, nil
	}
	out := map[string]any{}
	for _, e := range envs {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q: want K=V", e)
		}
		out[k] = map[string]any{"value": v}
	}
	return out, nil
}

// parsePorts turns PORT[/PROTO][:REMOTE] (or a JSON object) into port rules
// with the reference's keys; the first is the main port.
func parsePorts(specs []string) ([]map[string]any, error) {
	var out []map[string]any
	for i, s := range specs {
		if strings.HasPrefix(strings.TrimSpace(s), "{") {
			v, err := devcloud.ParseWireJSON([]byte(s))
			rule, ok := v.(map[string]any)
			if err != nil || !ok {
				return nil, fmt.Errorf("--port %q: want a JSON object (%v)", s, err)
			}
			out = append(out, rule)
			continue
		}
		spec, remote, hasRemote := strings.Cut(s, ":")
		portS, proto, _ := strings.Cut(spec, "/")
		port, err := strconv.ParseUint(portS, 10, 16)
		if err != nil || port == 0 {
			return nil, fmt.Errorf("--port %q: want PORT[/PROTO][:REMOTE]", s)
		}
		if proto == "" {
			proto = "http"
		}
		switch proto = strings.ToLower(proto); proto {
		case "http", "https", "tcp", "udp":
		default:
			return nil, fmt.Errorf("--port %q: protocol must be http, https, tcp or udp", s)
		}
		var rp uint64
		if hasRemote {
			if rp, err = strconv.ParseUint(remote, 10, 16); err != nil {
				return nil, fmt.Errorf("--port %q: remote port: %w", s, err)
			}
		}
		out = append(out, map[string]any{
			"name": fmt.Sprintf("port-%d", port), "port": port, "protocol": proto, "main": i == 0, "active": true,
			"public": false, "local_ip": "", "remote_port_environment": "", "remote_port": rp,
		})
	}
	return out, nil
}

// parseKwargs reads K=JSON pairs.
func parseKwargs(pairs []string) (wamp.Dict, error) {
	out := wamp.Dict{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--kw %q: want K=JSON", p)
		}
		val, err := devcloud.ParseWireJSON([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("--kw %s: %w", k, err)
		}
		out[k] = val
	}
	return out, nil
}
