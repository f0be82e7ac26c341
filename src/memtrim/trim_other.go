//go:build !linux

package memtrim

import "errors"

// Trim is Linux only: elsewhere the agent's RSS stays as the OS keeps it.
func Trim() (Stats, error) { return Stats{}, errors.ErrUnsupported }
