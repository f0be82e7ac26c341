package apps

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// A pass whose context ends while it plans — the agent shutting down, or
// a newer request — records and reports nothing: cancellation is not a
// failure.
func TestCancelledPlanIsNoFailure(t *testing.T) {
	h := newHarness(t, nil)
	k := Key{AppKey: 1, Stage: StageProd}
	h.eng.registry[h.ref(k, "svc", "1")] = true
	h.request(t, prodApp(1, "svc", StateRunning, "1"))
	h.settle(t, k)
	if a := h.actual(t, k); a.State != StateRunning {
		t.Fatalf("actual %+v", a)
	}
	// A crash: the next pass plans a restart, reading the store as it goes.
	h.eng.exit("prod_1_svc", 3)
	reported := h.outboxStates(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.eng.mu.Lock()
	h.eng.onImageExists = cancel // the last engine read before planning
	h.eng.mu.Unlock()
	if _, err := h.m.Reconcile(ctx, k); !errors.Is(err, context.Canceled) {
		t.Fatalf("Reconcile = %v, want context.Canceled", err)
	}
	if a := h.actual(t, k); a.State != StateRunning || a.LastError != "" {
		t.Fatalf("a cancelled pass recorded %+v", a)
	}
	if got := h.outboxStates(t); !slices.Equal(got, reported) {
		t.Fatalf("a cancelled pass reported %v", got[len(reported):])
	}
}
