package memtrim

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// The trimmer trims once after each quiet period that follows a poke
// (the first one is the start), and never while pokes keep coming.
func TestRunTrimsAfterQuiet(t *testing.T) {
	const quiet = 50 * time.Millisecond
	tr := New(quiet, zerolog.Nop())
	var trims atomic.Int32
	tr.trim = func() (Stats, error) { trims.Add(1); return Stats{}, nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()

	waitTrims := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for trims.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%d trims, want %d", trims.Load(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitTrims(1) // the start
	time.Sleep(4 * quiet)
	if n := trims.Load(); n != 1 {
		t.Fatalf("%d trims without a poke", n)
	}
	// Pokes closer together than quiet hold the trim back.
	for range 6 {
		_ = tr.PostStart(ctx, "prod_1_a", "id")
		time.Sleep(quiet / 3)
	}
	if n := trims.Load(); n != 1 {
		t.Fatalf("%d trims while busy", n)
	}
	waitTrims(2)
	_ = tr.Stop(ctx, "prod_1_a")
	waitTrims(3)
}
