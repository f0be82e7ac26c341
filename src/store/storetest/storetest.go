// Package storetest opens real SQLite stores for the tests of other
// packages. It lives apart from src/store so that the agent binary, which
// links store, never links the testing package.
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"reagent/src/store"
)

// Open opens a store in a fresh t.TempDir() with default options and
// closes it when the test ends.
func Open(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "reagent.db"), store.Options{})
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
