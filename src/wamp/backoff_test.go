package wamp

import (
	"testing"
	"time"
)

func TestBackoffSequence(t *testing.T) {
	const almostOne = 0.999999
	cases := []struct {
		name string
		rand float64
		want []time.Duration // waits of successive Next calls
	}{
		{"largest draws grow to the cap", almostOne, []time.Duration{
			500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
			16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second,
		}},
		{"full jitter reaches zero", 0, []time.Duration{0, 0, 0}},
		{"half draws", 0.5, []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := &Backoff{Base: 500 * time.Millisecond, Cap: 30 * time.Second, Rand: func() float64 { return tc.rand }}
			for i, w := range tc.want {
				got := b.Next()
				// almostOne shaves a few nanoseconds off the ceiling.
				if got > w || w-got > time.Millisecond {
					t.Fatalf("wait %d = %v, want %v", i, got, w)
				}
			}
		})
	}
}

func TestBackoffNeverAboveCapAndResets(t *testing.T) {
	draws := []float64{0.1, 0.9, 0.5, 0.99, 0.3}
	i := 0
	b := &Backoff{Base: 500 * time.Millisecond, Cap: 30 * time.Second, Rand: func() float64 { i++; return draws[i%len(draws)] }}
	for n := 0; n < 200; n++ {
		c := b.Ceiling()
		if d := b.Next(); d > c || d > 30*time.Second || d < 0 {
			t.Fatalf("attempt %d: wait %v, ceiling %v", n, d, c)
		}
	}
	if c := b.Ceiling(); c != 30*time.Second {
		t.Fatalf("ceiling after many failures = %v", c)
	}
	b.Reset()
	if c := b.Ceiling(); c != 500*time.Millisecond {
		t.Fatalf("ceiling after reset = %v", c)
	}
}
