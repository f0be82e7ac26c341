package wamp

import (
	"errors"
	"fmt"

	"github.com/gammazero/nexus/v3/client"
	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/errdefs"
)

// This file is the only place that names WAMP error URIs.

// Error URIs the agent answers with.
const (
	uriInvalidArgument = "wamp.error.invalid_argument"
	uriNotAuthorized   = "wamp.error.not_authorized"
	uriCanceled        = "wamp.error.canceled"
)

// errorURI maps an error class to the URI of the ERROR message. NotFound,
// Conflict and Unavailable go out as wamp.error.canceled, the reference's
// URI for every failure (DESIGN Rule 1).
func errorURI(err error) nx.URI {
	switch {
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return uriInvalidArgument
	case errors.Is(err, errdefs.ErrNotAuthorized):
		return uriNotAuthorized
	default:
		return uriCanceled
	}
}

// errorResult is the reference's error shape: args [{"error": text}], no
// kwargs.
func errorResult(err error) client.InvokeResult {
	return client.InvokeResult{
		Err:  errorURI(err),
		Args: nx.List{map[string]any{"error": err.Error()}},
	}
}

// Fatal is returned by Session.Run when the device must not keep trying:
// the router rejected its wampcra signature, or another session holds its
// serial. The process should exit 1 with Msg.
type Fatal struct {
	Msg string
	Err error
}

func (f *Fatal) Error() string {
	if f.Err == nil {
		return f.Msg
	}
	return f.Msg + ": " + f.Err.Error()
}

func (f *Fatal) Unwrap() error { return f.Err }

// RemoteError is an ERROR answer of a peer to one of our calls. It matches
// the errdefs class of its URI (not_authorized → ErrNotAuthorized,
// invalid_argument → ErrInvalidArgument, no_such_procedure →
// ErrUnavailable: the callee is not there right now).
type RemoteError struct {
	Procedure string
	URI       string
	Args      []any
	Kwargs    map[string]any
	text      string
}

func (e *RemoteError) Error() string {
	if e.text != "" {
		return e.text
	}
	if m := e.Message(); m != "" {
		return fmt.Sprintf("calling remote procedure '%s': %s: %s", e.Procedure, e.URI, m)
	}
	return fmt.Sprintf("calling remote procedure '%s': %s", e.Procedure, e.URI)
}

// Is lets errors.Is test a remote error against the errdefs classes.
func (e *RemoteError) Is(target error) bool {
	switch e.URI {
	case uriNotAuthorized, string(nx.ErrAuthorizationFailed):
		return target == errdefs.ErrNotAuthorized
	case uriInvalidArgument:
		return target == errdefs.ErrInvalidArgument
	case string(nx.ErrNoSuchProcedure), string(nx.ErrNoEligibleCallee), string(nx.ErrTimeout):
		return target == errdefs.ErrUnavailable
	}
	return false
}

// Message is the text a peer sent in the reference shape [{"error": text}]
// or as a plain first string arg; "" when neither.
func (e *RemoteError) Message() string {
	if len(e.Args) == 0 {
		return ""
	}
	if s, ok := e.Args[0].(string); ok {
		return s
	}
	if d, ok := asDict(e.Args[0]); ok {
		if s, ok := d["error"].(string); ok {
			return s
		}
	}
	return ""
}

// callError turns what nexus's Call returned into our error: a peer's
// ERROR becomes a *RemoteError, anything else (not connected, timeout,
// cancelled) is ErrUnavailable wrapping the cause.
func callError(procedure string, err error) error {
	var rpc client.RPCError
	if errors.As(err, &rpc) && rpc.Err != nil {
		return &RemoteError{
			Procedure: procedure,
			URI:       string(rpc.Err.Error),
			Args:      []any(rpc.Err.Arguments),
			Kwargs:    map[string]any(rpc.Err.ArgumentsKw),
			text:      rpc.Error(),
		}
	}
	return fmt.Errorf("call %s: %w: %w", procedure, errdefs.ErrUnavailable, err)
}
