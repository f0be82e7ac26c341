package logs

import (
	"math"
	"strconv"
	"strings"
	"time"

	"reagent/src/errdefs"
)

// ParseTime reads the since/until bound of a log query (param names it in
// the error): an RFC3339 time, Unix seconds ("1700000000", "1700000000.25"),
// or a Go duration meaning that long before now ("30m"; "-2h" is the same
// as "2h"). An empty s is no bound: the zero time.
func ParseTime(param, s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, ok := parseUnix(s); ok {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			d = -d
		}
		return now.Add(-d), nil
	}
	return time.Time{}, errdefs.InvalidArgument("invalid %s: %q is not an RFC3339 time, a Unix timestamp, or a duration", param, s)
}

// parseUnix reads decimal Unix seconds with an optional fraction. Exponents,
// signs other than a leading minus, hex and the like are refused:
// ParseFloat would take them, a user never means them.
func parseUnix(s string) (time.Time, bool) {
	digits := strings.TrimPrefix(s, "-")
	whole, frac, hasFrac := strings.Cut(digits, ".")
	if whole == "" || !allDigits(whole) || hasFrac && (frac == "" || !allDigits(frac)) {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || sec > math.MaxInt64/int64(time.Second) {
		return time.Time{}, false
	}
	var nsec int64
	if hasFrac {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		n, _ := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		nsec = n
	}
	if strings.HasPrefix(s, "-") {
		sec, nsec = -sec, -nsec
	}
	return time.Unix(sec, nsec).UTC(), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
