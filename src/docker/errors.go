package docker

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"reagent/src/errdefs"
)

var (
	// ErrPrivilegeRefused: the engine refuses the privileges, capabilities
	// or devices a container asks for (e.g. an engine whose bounding set
	// lacks capabilities: "unable to apply caps: operation not permitted").
	// Retrying the same spec fails the same way.
	ErrPrivilegeRefused = errors.New("engine refused the requested privileges")
	// ErrPortInUse: a host port of the container is taken. The concrete
	// error is a *PortInUseError when the port could be read.
	ErrPortInUse = errors.New("host port already in use")
	// ErrRuntimeUnavailable: the requested OCI runtime (e.g. nvidia) is not
	// known to, or not runnable by, the engine.
	ErrRuntimeUnavailable = errors.New("container runtime unavailable")
)

// PortInUseError names the host port the engine could not bind. It matches
// ErrPortInUse and errdefs.ErrConflict.
type PortInUseError struct {
	HostPort int // 0 when the daemon message named no port
	msg      string
}

func (e *PortInUseError) Error() string { return e.msg }

// Is makes errors.Is(err, ErrPortInUse) and errors.Is(err, errdefs.ErrConflict) hold.
func (e *PortInUseError) Is(target error) bool {
	return target == ErrPortInUse || target == errdefs.ErrConflict
}

// engineError keeps the daemon's message and cause and adds the classes
// callers test for with errors.Is.
type engineError struct {
	cause   error
	classes []error
}

func (e *engineError) Error() string { return e.cause.Error() }
func (e *engineError) Unwrap() error { return e.cause }
func (e *engineError) Is(target error) bool {
	for _, c := range e.classes {
		if c == target {
			return true
		}
	}
	return false
}

var (
	// "Bind for 0.0.0.0:40001 failed: port is already allocated"
	reAllocated = regexp.MustCompile(`:(\d+) failed: port is already allocated`)
	// "listen tcp4 0.0.0.0:40001: bind: address already in use"
	reAddrInUse = regexp.MustCompile(`:(\d+): bind: address already in use`)
)

// classify maps an SDK or daemon error to our classes. Context errors pass
// through untouched so callers can tell cancellation from failure.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || isClassified(err) {
		return err
	}
	msg := err.Error()
	lower := strings.ToLower(msg)

	// The sentinels come first: the daemon sends them as generic 500s (or
	// 400 for an unknown runtime), so only the text tells them apart.
	if strings.Contains(lower, "port is already allocated") || strings.Contains(lower, "address already in use") {
		pe := &PortInUseError{msg: msg}
		for _, re := range []*regexp.Regexp{reAllocated, reAddrInUse} {
			if m := re.FindStringSubmatch(msg); m != nil {
				pe.HostPort, _ = strconv.Atoi(m[1])
				break
			}
		}
		return pe
	}
	if isPrivilegeRefusal(lower) {
		return &engineError{cause: err, classes: []error{ErrPrivilegeRefused}}
	}
	if strings.Contains(lower, "unknown runtime") || strings.Contains(lower, "invalid runtime name") ||
		(strings.Contains(lower, "runtime") && strings.Contains(lower, "executable file not found")) {
		return &engineError{cause: err, classes: []error{ErrRuntimeUnavailable, errdefs.ErrInvalidArgument}}
	}

	switch {
	case client.IsErrConnectionFailed(err), cerrdefs.IsUnavailable(err):
		return &engineError{cause: err, classes: []error{errdefs.ErrUnavailable}}
	case cerrdefs.IsNotFound(err):
		return &engineError{cause: err, classes: []error{errdefs.ErrNotFound}}
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err):
		return &engineError{cause: err, classes: []error{errdefs.ErrConflict}}
	case cerrdefs.IsInvalidArgument(err):
		return &engineError{cause: err, classes: []error{errdefs.ErrInvalidArgument}}
	case isNetworkFailure(lower):
		// e.g. the engine could not reach a registry: try again later.
		return &engineError{cause: err, classes: []error{errdefs.ErrUnavailable}}
	}
	return err
}

// isNetworkFailure recognises transient network trouble in a message.
func isNetworkFailure(lower string) bool {
	for _, s := range []string{"connection refused", "i/o timeout", "no such host", "connection reset",
		"tls handshake timeout", "network is unreachable", "unexpected eof"} {
		if strings.Contains(lower, s) {
			return true
		}
	}
	return false
}

// isClassified reports whether err already carries one of our classes, so
// wrapping layers do not classify twice.
func isClassified(err error) bool {
	for _, c := range []error{ErrPrivilegeRefused, ErrPortInUse, ErrRuntimeUnavailable, errdefs.ErrInvalidArgument,
		errdefs.ErrNotAuthorized, errdefs.ErrNotFound, errdefs.ErrConflict, errdefs.ErrUnavailable} {
		if errors.Is(err, c) {
			return true
		}
	}
	return false
}

// isPrivilegeRefusal recognises runc/daemon refusals of privileges,
// capabilities and devices.
func isPrivilegeRefusal(lower string) bool {
	if strings.Contains(lower, "unable to apply caps") {
		return true
	}
	if !strings.Contains(lower, "operation not permitted") {
		return false
	}
	for _, hint := range []string{"cap", "device", "privileged", "cgroup"} {
		if strings.Contains(lower, hint) {
			return true
		}
	}
	return false
}

// classifyMessage classifies an error that arrived inside a JSON progress
// stream (pull, push, build), where no HTTP status exists any more.
func classifyMessage(msg string) error {
	lower := strings.ToLower(msg)
	base := errors.New(msg)
	switch {
	case strings.Contains(lower, "manifest unknown"), strings.Contains(lower, "not found"),
		strings.Contains(lower, "does not exist"), strings.Contains(lower, "no such image"):
		return &engineError{cause: base, classes: []error{errdefs.ErrNotFound}}
	case isNetworkFailure(lower):
		return &engineError{cause: base, classes: []error{errdefs.ErrUnavailable}}
	}
	return base
}

// invalidRef is the error for a reference the daemon would reject anyway;
// checked here because the SDK returns such errors unclassified.
func invalidRef(ref string, err error) error {
	return errdefs.InvalidArgument("invalid image reference %q: %v", ref, err)
}

// wrapf wraps a classified error with what was being done.
func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, classify(err))...)
}
