package logs

import (
	"errors"
	"testing"
	"time"

	"reagent/src/errdefs"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		err  string
	}{
		{in: "", want: time.Time{}},
		{in: "  ", want: time.Time{}},
		{in: "2024-05-01T10:00:00Z", want: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)},
		{in: "2024-05-01T12:00:00+02:00", want: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)},
		{in: "2024-05-01T10:00:00.123456789Z", want: time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.UTC)},
		{in: "1700000000", want: time.Unix(1700000000, 0)},
		{in: "1700000000.5", want: time.Unix(1700000000, 5e8)},
		{in: "1700000000.123456789123", want: time.Unix(1700000000, 123456789)},
		{in: "0", want: time.Unix(0, 0)},
		{in: "30m", want: now.Add(-30 * time.Minute)},
		{in: "-2h", want: now.Add(-2 * time.Hour)},
		{in: "1h30m", want: now.Add(-90 * time.Minute)},
		{in: "yesterday", err: `invalid since: "yesterday" is not an RFC3339 time, a Unix timestamp, or a duration`},
		{in: "2024-05-01", err: `invalid since: "2024-05-01" is not an RFC3339 time, a Unix timestamp, or a duration`},
		{in: "1e9", err: `invalid since: "1e9" is not an RFC3339 time, a Unix timestamp, or a duration`},
		{in: "0x10", err: `invalid since: "0x10" is not an RFC3339 time, a Unix timestamp, or a duration`},
		{in: "1700000000.", err: `invalid since: "1700000000." is not an RFC3339 time, a Unix timestamp, or a duration`},
		{in: "99999999999999999999", err: `invalid since: "99999999999999999999" is not an RFC3339 time, a Unix timestamp, or a duration`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTime("since", tc.in, now)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("got %v, %v; want invalid argument %q", got, err, tc.err)
				}
				return
			}
			if err != nil || !got.Equal(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"", "30m", "-2h", "1700000000.5", "2024-05-01T10:00:00Z", "x"} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) {
		_, err := ParseTime("until", s, now)
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("%q: error of the wrong class: %v", s, err)
		}
	})
}
