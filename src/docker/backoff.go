package docker

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff yields growing, jittered, capped delays between reconnect or
// readiness attempts. Not safe for concurrent use: each loop owns one.
type backoff struct {
	min, max time.Duration
	rand     func() float64 // [0,1); injectable for tests
	cur      time.Duration
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max, rand: rand.Float64}
}

// next returns the delay before the next attempt: half the current step plus
// up to another half of random jitter, so many agents restarting together
// (or one agent with several loops) do not retry in lock-step.
func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	d := b.cur/2 + time.Duration(b.rand()*float64(b.cur/2))
	b.cur *= 2
	if b.cur > b.max {
		b.cur = b.max
	}
	return d
}

// reset starts over at the minimum after a healthy period.
func (b *backoff) reset() { b.cur = 0 }

// sleepCtx waits d or until ctx ends, whichever comes first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
