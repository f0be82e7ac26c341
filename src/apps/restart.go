package apps

import (
	"fmt"
	"time"
)

// restartTracker paces the automatic restarts of one crashing PROD app:
// capped exponential delays with jitter, reset once the app has run
// healthily for a while (the reference never reset, so a crash days later
// started with an hour's wait). Only the app's worker uses it.
type restartTracker struct {
	min, max     time.Duration
	healthyAfter time.Duration
	rand         func() float64 // [0,1)

	count int // restarts since the last reset
}

func newRestartTracker(min, max, healthyAfter time.Duration, rand func() float64) *restartTracker {
	return &restartTracker{min: min, max: max, healthyAfter: healthyAfter, rand: rand}
}

// Next records a crash after a run from startedAt to exitedAt and returns
// the delay before the next restart and the reason to show in the app log,
// e.g. "restarting in 20s (3rd restart): exited with status code 1". A run
// that lasted healthyAfter or longer resets the count first.
func (t *restartTracker) Next(cause string, startedAt, exitedAt time.Time) (time.Duration, string) {
	if !startedAt.IsZero() && !exitedAt.IsZero() && exitedAt.Sub(startedAt) >= t.healthyAfter {
		t.count = 0
	}
	d := t.min
	for i := 0; i < t.count && d < t.max; i++ {
		d *= 2
	}
	d = min(d, t.max)
	// Jitter in [0.8, 1.2) keeps a fleet of devices from restarting in step,
	// without ever exceeding the cap by more than a fifth.
	d = time.Duration(float64(d) * (0.8 + 0.4*t.rand()))
	t.count++
	return d, fmt.Sprintf("restarting in %s (%s restart): %s", roundDelay(d), ordinalWord(t.count), cause)
}

// Healthy tells the tracker the app has been running since startedAt; once
// that is healthyAfter ago the count starts over.
func (t *restartTracker) Healthy(startedAt, now time.Time) {
	if !startedAt.IsZero() && now.Sub(startedAt) >= t.healthyAfter {
		t.count = 0
	}
}

// Count is the number of restarts since the last reset.
func (t *restartTracker) Count() int { return t.count }

// roundDelay keeps log lines readable: whole seconds above 10 s,
// milliseconds below.
func roundDelay(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// ordinalWord: 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st …
func ordinalWord(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}

// backoff is the per-app retry pacing for failed steps (not crashes):
// capped exponential with jitter, reset on success.
type backoff struct {
	min, max time.Duration
	rand     func() float64
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return time.Duration(float64(b.cur) * (0.8 + 0.4*b.rand()))
}

func (b *backoff) reset() { b.cur = 0 }
