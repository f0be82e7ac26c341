// Package apps runs the device's apps on the Docker engine: the app model
// (keys, states, names), the reconciler that drives every app from its
// desired state to what Docker shows, the transitions (install, run, stop,
// remove, uninstall, update; build and publish of DEV apps from the source
// uploaded through write_data), the environment and host ports an app gets,
// restart backoff for crashing apps and the state reports to the cloud.
//
// State it owns: the live state of every app, held by one worker per
// (app_key, stage) (worker.go) under the Manager. The store keeps the
// durable copy — the desired state (store.Requested, written before any
// work starts), the last achieved state (store.Actual), host-port
// reservations, a few agent facts in meta, and the outbox of reports.
// Others ask the Manager; nobody else touches an app's containers.
package apps

import (
	"strconv"

	"reagent/src/store"
)

// Key names one app: the backend's app key and the stage.
type Key = store.Key

// Stages.
const (
	StageDev  = "DEV"
	StageProd = "PROD"
)

// App states, spelled as the reference (wamp-contract §6.1).
const (
	StateRemoved     = "REMOVED"
	StateUninstalled = "UNINSTALLED"
	StatePresent     = "PRESENT"
	StateBuilding    = "BUILDING"
	StateBuilt       = "BUILT"
	StatePublishing  = "PUBLISHING"
	StatePublished   = "PUBLISHED"
	StateDownloading = "DOWNLOADING"
	StateTransfering = "TRANSFERING"
	StateTransfered  = "TRANSFERED"
	StateStarting    = "STARTING"
	StateRunning     = "RUNNING"
	StateStopping    = "STOPPING"
	StateStopped     = "STOPPED"
	StateUpdating    = "UPDATING"
	StateDeleting    = "DELETING"
	StateFailed      = "FAILED"
)

// Update statuses of the state report's updateStatus.
const (
	UpdatePending   = "pending_remote_confirmation"
	UpdateCompleted = "completed"
	UpdateCanceled  = "canceled"
)

// knownStates are the states a payload may name.
var knownStates = map[string]bool{
	StateRemoved: true, StateUninstalled: true, StatePresent: true, StateBuilding: true, StateBuilt: true,
	StatePublishing: true, StatePublished: true, StateDownloading: true, StateTransfering: true,
	StateTransfered: true, StateStarting: true, StateRunning: true, StateStopping: true, StateStopped: true,
	StateUpdating: true, StateDeleting: true, StateFailed: true,
}

// IsState reports whether s is an app state name.
func IsState(s string) bool { return knownStates[s] }

// requestable are the states a desired state can be, after normalisation.
var requestable = map[string]bool{
	StatePresent: true, StateRunning: true, StateBuilt: true, StatePublished: true,
	StateRemoved: true, StateUninstalled: true,
}

// NormalizeTarget maps a transient state named as a target to the state it
// leads to, as the reference does before storing a request
// (TransientToActualState): BUILDING, DOWNLOADING, UPDATING, STOPPING … →
// PRESENT, DELETING → REMOVED, STARTING → RUNNING.
func NormalizeTarget(s string) string {
	switch s {
	case StateBuilding, StateTransfered, StateDownloading, StateTransfering, StatePublishing, StateUpdating,
		StateStopping, StateStopped:
		return StatePresent
	case StateDeleting:
		return StateRemoved
	case StateStarting:
		return StateRunning
	}
	return s
}

// keyString formats a key for logs and messages.
func keyString(k Key) string { return strconv.FormatUint(k.AppKey, 10) + "/" + k.Stage }
