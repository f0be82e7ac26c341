// Package errdefs holds the error classes every part of reagent wraps its
// errors in. Only src/wamp turns a class into a WAMP error URI; everywhere
// else errors are tested with errors.Is. Standard library only.
package errdefs

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidArgument: the caller sent something malformed; retrying the
	// same input will fail the same way.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotAuthorized: the caller lacks the privilege for the operation.
	ErrNotAuthorized = errors.New("not authorized")
	// ErrNotFound: the named thing does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request clashes with the current state.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: transient trouble (engine down, offline, timeout);
	// the same request may succeed later.
	ErrUnavailable = errors.New("unavailable")
)

// InvalidArgument returns an error of class ErrInvalidArgument whose text is
// exactly the formatted message (the class name is not appended, so wire
// messages keep the reference's wording).
func InvalidArgument(format string, args ...any) error {
	return classed{msg: fmt.Sprintf(format, args...), class: ErrInvalidArgument}
}

// NotAuthorized returns an error of class ErrNotAuthorized with the message.
func NotAuthorized(format string, args ...any) error {
	return classed{msg: fmt.Sprintf(format, args...), class: ErrNotAuthorized}
}

// NotFound returns an error of class ErrNotFound with the message.
func NotFound(format string, args ...any) error {
	return classed{msg: fmt.Sprintf(format, args...), class: ErrNotFound}
}

// Conflict returns an error of class ErrConflict with the message.
func Conflict(format string, args ...any) error {
	return classed{msg: fmt.Sprintf(format, args...), class: ErrConflict}
}

// Unavailable returns an error of class ErrUnavailable with the message.
func Unavailable(format string, args ...any) error {
	return classed{msg: fmt.Sprintf(format, args...), class: ErrUnavailable}
}

// classed is an error with a message of its own and a class it matches.
type classed struct {
	msg   string
	class error
}

func (c classed) Error() string        { return c.msg }
func (c classed) Is(target error) bool { return target == c.class }
