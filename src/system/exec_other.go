//go:build !unix

package system

import "os/exec"

// killGroupOnCancel keeps exec's default on this OS: the process itself is
// killed on timeout.
func killGroupOnCancel(*exec.Cmd) {}
