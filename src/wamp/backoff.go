package wamp

import "time"

// Backoff computes the waits between connection attempts: capped
// exponential growth with full jitter, so that a fleet of devices that lost
// the same router spreads its reconnects instead of arriving together.
// Attempt n (counting failures since the last reset) waits a uniformly
// random duration in [0, min(Cap, Base·2ⁿ)]. Not safe for concurrent use;
// the session's Run loop owns it.
type Backoff struct {
	Base time.Duration // first ceiling (≈0.5 s)
	Cap  time.Duration // the ceiling never grows above this (≈30 s)
	// Rand returns a number in [0, 1); injectable for tests.
	Rand func() float64

	failures int
}

// Next returns the wait before the next attempt and counts a failure.
func (b *Backoff) Next() time.Duration {
	ceiling := b.Ceiling()
	if b.failures < 62 { // beyond this the shift overflows; the cap rules anyway
		b.failures++
	}
	return time.Duration(b.Rand() * float64(ceiling))
}

// Ceiling is the largest wait the next call to Next can return.
func (b *Backoff) Ceiling() time.Duration {
	c := b.Base
	for i := 0; i < b.failures && c < b.Cap; i++ {
		c *= 2
	}
	if c > b.Cap {
		c = b.Cap
	}
	return c
}

// Reset starts the sequence again after a connection that stayed up.
func (b *Backoff) Reset() { b.failures = 0 }
