package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/devcloud"
	"reagent/src/store"
)

// Without an engine client there is no reconciler, yet the log history of
// the apps the store knows stays readable; names of no app are refused.
func TestLogNamesWithoutDockerEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "no-such-scheme") // the client cannot be built
	cloud := startCloud(t)
	a := startAgent(t, cloud, agentOptions{})
	serial := a.flock.SerialNumber
	ctx := deadline(t, 30*time.Second)
	if err := cloud.AwaitDeviceStatus(ctx, serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	if log := readFile(t, a.logFile); !strings.Contains(log, `"message":"no docker client: apps are not managed"`) {
		t.Fatal("the agent has an engine client; the test proves nothing")
	}

	// An app the agent managed before the engine went away: its request
	// and its log history are in the store.
	st, err := store.Open(context.Background(), filepath.Join(a.dir, "agent", "reagent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	k := store.Key{AppKey: 4711, Stage: "PROD"}
	if _, err := st.PutRequested(ctx, store.Requested{Key: k, AppName: "Demo", TargetState: "RUNNING", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendLogs(ctx, "prod_4711_demo", k, []store.LogLine{{Stream: "stdout", Text: "kept from before"}}); err != nil {
		t.Fatal(err)
	}

	res := callOK(t, ctx, cloud, devcloud.SystemAuthID, serial, "get_app_log_history",
		nx.List{nx.Dict{"containerName": "prod_4711_demo"}}, nil)
	if got := fmt.Sprint(res.Arguments); !strings.Contains(got, "kept from before") {
		t.Fatalf("get_app_log_history = %v", res.Arguments)
	}
	callOK(t, ctx, cloud, devcloud.SystemAuthID, serial, "query_app_logs", nx.List{nx.Dict{"containerName": "prod_4711_demo"}}, nil)

	for _, name := range []string{"prod_4711_other", "prod_4712_demo", "portainer"} {
		for _, proc := range []string{"get_app_log_history", "query_app_logs"} {
			_, err := cloud.CallDevice(ctx, devcloud.SystemAuthID, serial, proc, nx.List{nx.Dict{"containerName": name}}, nil)
			if uri, text := rpcErr(t, err); uri != "wamp.error.invalid_argument" || !strings.HasPrefix(text, "invalid value for containerName") {
				t.Fatalf("%s %s: %s %q", proc, name, uri, text)
			}
		}
	}
}
