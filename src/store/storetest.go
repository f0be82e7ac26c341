package store

import (
	"context"
	"path/filepath"
	"testing"
)

// OpenTest opens a store in a fresh t.TempDir() with default options and
// closes it when the test ends. For tests of any package.
func OpenTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "reagent.db"), Options{})
	if err != nil {
		t.Fatalf("open test store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close test store: %v", err)
		}
	})
	return s
}
