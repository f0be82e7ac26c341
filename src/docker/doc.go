// Package docker is the only part of reagent that talks to the Docker
// engine. It wraps the Docker SDK (API version negotiated, so old device
// engines such as 20.10 / API 1.41 work) behind concrete types of its own:
// images (pull, push, build, tag, remove, list, prune), containers (create,
// start, stop, kill, remove, inspect, list), the engine's event stream and
// container logs.
//
// It owns no state besides the SDK client. It is also the only place that
// reads Docker error text: SDK and daemon errors leave this package wrapped
// in an errdefs class (ErrNotFound, ErrConflict, ErrUnavailable,
// ErrInvalidArgument) or one of the sentinels of errors.go
// (ErrPrivilegeRefused, ErrPortInUse, ErrRuntimeUnavailable), so callers
// decide with errors.Is and never match strings.
//
// The package is generic: label names, container names and the meaning of
// states belong to the callers (src/apps, src/logs, src/api).
package docker
