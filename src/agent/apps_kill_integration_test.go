package agent

import (
	"testing"
	"time"
)

// kill -9 of the agent and `docker kill` of its app while RUNNING is
// requested: the agent binary, started again with the same agent dir,
// brings the app back to RUNNING with exactly one container.
func TestAppsKill9(t *testing.T) {
	e := newAppsEnv(t, 3*time.Minute)
	path, agentDir := e.newDevice(t)
	a := app{key: appKey(t), name: "survivor", version: "1"}
	e.push(t, a, "1", cmdService)

	p := startBinary(t, path, agentDir)
	if err := e.cloud.AwaitDeviceStatus(e.ctx, e.serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	e.request(t, a.requested("RUNNING"), nil)
	e.await(t, a.key, "RUNNING")
	before := e.containers(t, a.key)
	if len(before) != 1 {
		t.Fatalf("%d containers", len(before))
	}

	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
	if err := e.dc.KillContainer(e.ctx, before[0].ID, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	n := len(e.states(a.key))

	startBinary(t, path, agentDir)
	e.awaitCond(t, "RUNNING again with one container", func() bool {
		s := e.states(a.key)
		if len(s) <= n || s[len(s)-1] != "RUNNING" {
			return false
		}
		cts := e.containers(t, a.key)
		return len(cts) == 1 && cts[0].State.Running && cts[0].State.StartedAt.After(killedAt)
	})
	t.Logf("reports after the restart: %v", e.states(a.key)[n:])
}
