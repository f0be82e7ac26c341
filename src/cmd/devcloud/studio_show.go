package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/devcloud"
)

func devicesCmd() *studioCmd {
	return &studioCmd{
		name: "devices", help: "devices with status, last heartbeat and stats",
		run: func(ctx context.Context, st *studioRun, pos []string) error {
			if err := wantArgs(pos, 0, 0); err != nil {
				return err
			}
			res, err := st.call(ctx, devcloud.ProcStudioDevices, nil, nil, nil)
			if err != nil {
				return err
			}
			var devs []devcloud.DeviceSummary
			if err := decodeArg0(res, &devs); err != nil {
				return fmt.Errorf("decode devices: %w", err)
			}
			now := time.Now()
			tw := tabwriter.NewWriter(st.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tAUTHID\tNAME\tSTATUS\tSINCE\tLAST HEARTBEAT\tCPU\tMEMORY\tDISK\tARCH")
			for _, d := range devs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Serial, d.AuthID, orDash(d.Name), orDash(d.Status),
					ago(now, d.StatusAt), ago(now, d.LastHeartbeat), cpu(d.Stats), used(d.Stats, "memory_used", "memory_total"),
					used(d.Stats, "storage_used", "storage_total"), orDash(str(d.Architecture["architecture"])))
			}
			return tw.Flush()
		},
	}
}

func appsCmd() *studioCmd {
	return &studioCmd{
		name: "apps", args: "SERIAL", help: "requested vs reported state of each app of a device",
		run: func(ctx context.Context, st *studioRun, pos []string) error {
			if err := wantArgs(pos, 1, 1); err != nil {
				return err
			}
			res, err := st.call(ctx, devcloud.ProcStudioApps, nil, wamp.List{pos[0]}, nil)
			if err != nil {
				return err
			}
			var apps []devcloud.AppSummary
			if err := decodeArg0(res, &apps); err != nil {
				return fmt.Errorf("decode apps: %w", err)
			}
			now := time.Now()
			tw := tabwriter.NewWriter(st.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "APP\tNAME\tSTAGE\tREQUESTED\tVERSION\tREPORTED\tUPDATE\tREPORTED AT\tREPORTS")
			for _, a := range apps {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", a.AppKey, orDash(a.AppName), a.Stage, orDash(a.TargetState),
					orDash(a.Version), orDash(a.ReportedState), orDash(a.UpdateStatus), ago(now, a.ReportedAt), a.Reports)
			}
			return tw.Flush()
		},
	}
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func num(stats map[string]any, key string) (float64, bool) {
	f, ok := stats[key].(float64) // JSON-decoded
	return f, ok
}

func cpu(stats map[string]any) string {
	if f, ok := num(stats, "cpu_usage"); ok {
		return fmt.Sprintf("%.1f%%", f)
	}
	return "-"
}

// used prints "used/total" in GiB.
func used(stats map[string]any, usedKey, totalKey string) string {
	u, ok1 := num(stats, usedKey)
	t, ok2 := num(stats, totalKey)
	if !ok1 || !ok2 || t == 0 {
		return "-"
	}
	const gib = 1 << 30
	return fmt.Sprintf("%.1f/%.1fGiB", u/gib, t/gib)
}
