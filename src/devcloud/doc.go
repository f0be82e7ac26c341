// Package devcloud is a local stand-in for the IronFlock cloud: a nexus WAMP
// router (realm1, wampcra for devices and Studio users, caller disclosure,
// testaments), the backend procedures the agent calls (reswarm.*,
// re.tunnel.*), and an OCI registry. It is the peer of every integration
// test (Start/StartTest on free ports) and the cloud half of `make run`
// (src/cmd/devcloud). It never ships inside the agent.
//
// State it owns: devices, their status history, requested and reported app
// states, port reports, tunnel port allocations and registry manifests live
// in one SQLite file under Options.DataDir; registry blobs are files under
// it. Backend calls, testaments, publish counts and injected faults are kept
// in memory for the life of the Cloud.
//
// devcloud is strict like the real cloud: unknown authids and wrong secrets
// are rejected with the router's wampcra messages, devices may register
// only under their own re.mgmt.<serial>. prefix, and every backend call is
// recorded so tests can assert what the agent sent.
package devcloud
