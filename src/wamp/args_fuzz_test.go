package wamp

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"reagent/src/errdefs"
)

// FuzzToUint64 feeds arbitrary text through every numeric path: as a
// lenient string, as json.Number, and as the float64 and int64 a decoder
// would produce for it. Whatever is accepted must round-trip exactly.
func FuzzToUint64(f *testing.F) {
	for _, s := range []string{"0", "42", "18446744073709551615", "18446744073709551616", "-1", "1e3", "4.2",
		"42.0", " 7 ", "NaN", "Inf", "0x10", "1_000", "", "+5", "9223372036854775808", "-9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, v := range []any{s, json.Number(s)} {
			if u, ok := ToUint64(v, true); ok {
				trimmed := strings.TrimSpace(s)
				if p, err := strconv.ParseUint(trimmed, 10, 64); err == nil && p != u {
					t.Fatalf("ToUint64(%q) = %d, want %d", s, u, p)
				}
				if fl, err := strconv.ParseFloat(trimmed, 64); err == nil && fl < 1<<53 && float64(u) != fl {
					t.Fatalf("ToUint64(%q) = %d, parsed float %v", s, u, fl)
				}
			}
			if i, ok := ToInt64(v, true); ok {
				if p, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil && p != i {
					t.Fatalf("ToInt64(%q) = %d, want %d", s, i, p)
				}
			}
			if fl, ok := ToFloat64(v, true); ok && (math.IsNaN(fl) || math.IsInf(fl, 0)) {
				t.Fatalf("ToFloat64(%q) = %v", s, fl)
			}
		}
		if fl, err := strconv.ParseFloat(s, 64); err == nil {
			u, ok := ToUint64(fl, false)
			if ok && (float64(u) != fl || fl < 0) {
				t.Fatalf("ToUint64(%v) = %d", fl, u)
			}
			i, ok := ToInt64(fl, false)
			if ok && float64(i) != fl {
				t.Fatalf("ToInt64(%v) = %d", fl, i)
			}
		}
		if s, err := strconv.ParseInt(s, 10, 64); err == nil {
			u, ok := ToUint64(s, false)
			if ok != (s >= 0) || (ok && int64(u) != s) {
				t.Fatalf("ToUint64(int64 %d) = %d, %v", s, u, ok)
			}
		}
	})
}

// FuzzCallDecoders decodes arbitrary JSON as the positional args of a call
// (and as kwargs) and runs every helper over it: none may panic, and every
// error must be an ErrInvalidArgument, the class that becomes
// wamp.error.invalid_argument.
func FuzzCallDecoders(f *testing.F) {
	for _, s := range []string{`[]`, `[null]`, `["x"]`, `[{}]`, `[{"app_key": 5, "name": "a", "all": true}]`,
		`[{"app_key": -5, "name": 3, "all": "yes"}]`, `[{"app_key": 5.5}]`, `[{"app_key": "5"}]`,
		`[1, "two", 3.0, null, {"a": [1, {"b": null}]}]`, `{"requestor_account_key": "12"}`, `[[[[]]]]`,
		`[{"app_key": 1e400}]`, `[{"x": {"y": {"z": 1}}}]`} {
		f.Add([]byte(s))
	}
	keys := []string{"app_key", "name", "all", "a", "x", "requestor_account_key"}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		c := &Call{}
		switch x := v.(type) {
		case []any:
			c.Args = x
		case map[string]any:
			c.Kwargs = x
		default:
			c.Args = []any{x}
		}
		check := func(err error) {
			t.Helper()
			if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v is not an invalid argument", err)
			}
		}
		dicts := []map[string]any{c.Kwargs}
		for i := 0; i < len(c.Args)+1; i++ {
			d, err := c.Dict(i)
			check(err)
			dicts = append(dicts, d)
			_, err = c.OptDict(i)
			check(err)
			_, err = c.StringArg(i, "x")
			check(err)
			_, err = c.Uint64Arg(i, "x", true)
			check(err)
			c.Arg(i)
		}
		for _, d := range dicts {
			for _, k := range keys {
				for _, req := range []bool{false, true} {
					_, err := String(d, k, req)
					check(err)
					_, err = Uint64(d, k, req, req)
					check(err)
					_, err = Int64(d, k, req, !req)
					check(err)
					_, err = Float64(d, k, req, req)
					check(err)
					_, err = Bool(d, k, req)
					check(err)
					_, err = DictField(d, k, req)
					check(err)
					_, err = List(d, k, req)
					check(err)
				}
			}
		}
	})
}
