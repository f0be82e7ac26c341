// Package system is the device side of the system procedures: resource
// stats for the heartbeat and get_storage_data, the OS description and
// release, network addresses, reboot/shutdown/restart through an injected
// Runner, and execute_cmd. It owns no long-lived state except the previous
// CPU sample of a Sampler. It knows nothing of WAMP: callers encode results
// and publish output.
package system
