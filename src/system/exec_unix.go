//go:build unix

package system

import (
	"os/exec"
	"syscall"
)

// killGroupOnCancel starts the command in its own process group and kills
// the whole group on timeout, so what it spawned dies with it.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
