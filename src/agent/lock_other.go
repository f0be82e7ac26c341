//go:build !unix

package agent

import (
	"fmt"
	"os"
	"path/filepath"
)

// instanceLock on systems without flock: an exclusively created file. A
// crash can leave it behind; the message says how to recover.
type instanceLock struct{ path string }

func acquireLock(path string) (*instanceLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("agent dir %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("another reagent seems to run with agent dir %s (remove %s if it does not)", filepath.Dir(path), path)
	}
	f.Close()
	return &instanceLock{path: path}, nil
}

func (l *instanceLock) release() { os.Remove(l.path) }
