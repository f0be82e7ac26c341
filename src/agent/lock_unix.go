//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// instanceLock holds an exclusive flock on <agentDir>/reagent.lock for the
// life of the process, so two agents never drive the same apps and DB. The
// kernel drops the lock when the process dies, so a crash never leaves a
// stale lock behind.
type instanceLock struct{ f *os.File }

func acquireLock(path string) (*instanceLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("agent dir %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another reagent is already running with agent dir %s (pid %s); stop it first (systemctl stop reagent)",
				filepath.Dir(path), trimPID(holder))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Record our pid for the message a second agent prints.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	return &instanceLock{f: f}, nil
}

func (l *instanceLock) release() { l.f.Close() }

func trimPID(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}
