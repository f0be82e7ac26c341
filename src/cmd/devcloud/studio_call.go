package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/wamp"

	"reagent/src/devcloud"
)

func callCmd() *studioCmd {
	return &studioCmd{
		name: "call", args: "SERIAL PROCEDURE ['<json args>'] ['<json kwargs>']",
		help: "call re.mgmt.<serial>.<procedure> and print the result or the error",
		run: func(ctx context.Context, st *studioRun, pos []string) error {
			if err := wantArgs(pos, 2, 4); err != nil {
				return err
			}
			var args wamp.List
			var kwargs wamp.Dict
			if len(pos) > 2 {
				v, err := devcloud.ParseWireJSON([]byte(pos[2]))
				l, ok := v.([]any)
				if err != nil || !ok {
					return fmt.Errorf("args must be a JSON array, got %s", pos[2])
				}
				args = l
			}
			if len(pos) > 3 {
				v, err := devcloud.ParseWireJSON([]byte(pos[3]))
				d, ok := v.(map[string]any)
				if err != nil || !ok {
					return fmt.Errorf("kwargs must be a JSON object, got %s", pos[3])
				}
				kwargs = d
			}
			res, err := st.call(ctx, devcloud.DeviceProcedure(pos[0], pos[1]), wamp.Dict{wamp.OptDiscloseMe: true}, args, kwargs)
			var re client.RPCError
			if errors.As(err, &re) {
				out := map[string]any{"error": re.Err.Error, "args": orEmptyList(re.Err.Arguments)}
				if len(re.Err.ArgumentsKw) > 0 {
					out["kwargs"] = re.Err.ArgumentsKw
				}
				if perr := printJSON(st.stdout, out); perr != nil {
					return perr
				}
				return fmt.Errorf("%s failed with %s", pos[1], re.Err.Error)
			}
			if err != nil {
				return err
			}
			if len(res.ArgumentsKw) == 0 {
				return printJSON(st.stdout, orEmptyList(res.Arguments))
			}
			return printJSON(st.stdout, map[string]any{"args": orEmptyList(res.Arguments), "kwargs": res.ArgumentsKw})
		},
	}
}

func orEmptyList(l wamp.List) wamp.List {
	if l == nil {
		return wamp.List{}
	}
	return l
}
