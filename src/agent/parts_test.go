package agent

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// funcPart is a part made of a function.
type funcPart struct {
	name string
	run  func(ctx context.Context) error
}

func (p funcPart) Name() string                  { return p.name }
func (p funcPart) Run(ctx context.Context) error { return p.run(ctx) }

// runParts stops every part and says which ones did not stop in time, so
// that Run leaves open what they still use (the store, the log) instead of
// closing it under them. A failing part stops the others.
func TestRunPartsStragglersAndFailures(t *testing.T) {
	untilDone := func(ctx context.Context) error { <-ctx.Done(); return nil }
	boom := errors.New("boom")
	tests := []struct {
		name       string
		parts      func(t *testing.T) []part
		cancel     bool // cancel the context (a signal); else a part fails
		stragglers []string
		err        error
	}{
		{"all stop", func(*testing.T) []part {
			return []part{funcPart{"a", untilDone}, funcPart{"b", untilDone}}
		}, true, nil, nil},
		{"one fails, the others stop", func(*testing.T) []part {
			return []part{funcPart{"a", untilDone}, funcPart{"b", func(context.Context) error { return boom }}}
		}, false, nil, boom},
		{"one ignores its context", func(t *testing.T) []part {
			release, done := make(chan struct{}), make(chan struct{})
			t.Cleanup(func() { close(release); <-done })
			stuck := func(context.Context) error { defer close(done); <-release; return nil }
			return []part{funcPart{"a", untilDone}, funcPart{"stuck", stuck}}
		}, true, []string{"stuck"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parts := tc.parts(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				stragglers []string
				err        error
			}
			res := make(chan result, 1)
			go func() {
				s, err := runParts(ctx, parts, zerolog.Nop())
				res <- result{s, err}
			}()
			if tc.cancel {
				cancel()
			}
			select {
			case r := <-res:
				if !slices.Equal(r.stragglers, tc.stragglers) || !errors.Is(r.err, tc.err) {
					t.Fatalf("runParts = %v, %v; want %v, %v", r.stragglers, r.err, tc.stragglers, tc.err)
				}
			case <-time.After(ShutdownTimeout + 5*time.Second):
				t.Fatal("runParts did not return")
			}
		})
	}
}
