// Package logs owns every log of the device: the agent's own log file
// (agentlog.go, queried by QueryDeviceLogs) and the app logs. For app logs
// the Relay follows each running managed container through the engine,
// stores every line in the store (bounded per log by lines and bytes,
// numbered by the store) and publishes the lines on
// reswarm.logs.<serial>.<container> in the reference's shapes while, and
// only while, somebody subscribes.
//
// State it owns: the Relay's followers, the lines read but not yet stored,
// the publications not yet sent (bounded per log; what does not fit is
// dropped, counted and announced in the stream) and its view of the
// router's subscriptions to this device's log topics. The store keeps the
// durable history; the reconciler (src/apps) decides when a follower starts
// and stops, through the PostStart/Stop/Forget hooks.
//
// Storing never waits for the link: a slow or absent router only costs
// publications. A store that cannot keep up makes a follower read more
// slowly; the engine's json-file log sits between the container and its
// readers, so the container itself never waits.
package logs
