package wamp

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/errdefs"
)

// Argument decoding. nexus negotiates JSON, CBOR or msgpack with the
// router, and each decodes numbers differently (uint64 for non-negative
// JSON integers, int64 for negative ones, float64 for fractions, smaller
// int types from msgpack, json.Number from some encoders). Every handler
// goes through these helpers, so a number is a number whatever the wire
// encoding, and bad input is an ErrInvalidArgument with a readable text
// instead of a panic.

// maxUint64Float is 2^64, the first float64 above every uint64.
const maxUint64Float = 18446744073709551616.0

// ToUint64 converts any integer encoding to uint64: unsigned and
// non-negative signed integers, whole non-negative floats below 2^64 and
// json.Number. With lenientString a decimal string ("42", " 42 ") is
// accepted too. Anything else (negative, fractional, NaN, bool, nil, …)
// reports false.
func ToUint64(v any, lenientString bool) (uint64, bool) {
	switch n := v.(type) {
	case uint64:
		return n, true
	case uint:
		return uint64(n), true
	case uint32:
		return uint64(n), true
	case uint16:
		return uint64(n), true
	case uint8:
		return uint64(n), true
	case int64:
		return uint64(n), n >= 0
	case int:
		return uint64(n), n >= 0
	case int32:
		return uint64(n), n >= 0
	case int16:
		return uint64(n), n >= 0
	case int8:
		return uint64(n), n >= 0
	case float64:
		return floatToUint64(n)
	case float32:
		return floatToUint64(float64(n))
	case json.Number:
		return parseUint(string(n))
	case string:
		if !lenientString {
			return 0, false
		}
		return parseUint(n)
	}
	return 0, false
}

// ToInt64 converts any integer encoding to int64, like ToUint64 but
// accepting negative values and rejecting values above MaxInt64.
func ToInt64(v any, lenientString bool) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case int16:
		return int64(n), true
	case int8:
		return int64(n), true
	case uint64:
		return int64(n), n <= math.MaxInt64
	case uint:
		return int64(n), uint64(n) <= math.MaxInt64
	case uint32:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint8:
		return int64(n), true
	case float64:
		return floatToInt64(n)
	case float32:
		return floatToInt64(float64(n))
	case json.Number:
		return parseInt(string(n))
	case string:
		if !lenientString {
			return 0, false
		}
		return parseInt(n)
	}
	return 0, false
}

// ToFloat64 converts any numeric encoding to float64 (finite values only).
func ToFloat64(v any, lenientString bool) (float64, bool) {
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case float32:
		f = float64(n)
	case json.Number:
		x, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return 0, false
		}
		f = x
	case string:
		if !lenientString {
			return 0, false
		}
		x, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		if err != nil {
			return 0, false
		}
		f = x
	default:
		if i, ok := ToInt64(v, false); ok {
			return float64(i), true
		}
		if u, ok := ToUint64(v, false); ok {
			return float64(u), true
		}
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

func floatToUint64(f float64) (uint64, bool) {
	if f < 0 || f >= maxUint64Float || f != math.Trunc(f) { // NaN fails f != Trunc(f)
		return 0, false
	}
	return uint64(f), true
}

func floatToInt64(f float64) (int64, bool) {
	// -2^63 is exact in float64; 2^63 is the first value above MaxInt64.
	if f < math.MinInt64 || f >= -math.MinInt64 || f != math.Trunc(f) {
		return 0, false
	}
	return int64(f), true
}

// parseUint accepts decimal digits, and a whole number in float notation
// ("42.0", "1e3") because json.Number carries whatever the encoder wrote.
func parseUint(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return u, true
	}
	if !looksNumeric(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false
	}
	return floatToUint64(f)
}

func parseInt(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, true
	}
	if !looksNumeric(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false
	}
	return floatToInt64(f)
}

// looksNumeric keeps ParseFloat's extras ("Inf", "NaN", hex, '_') out:
// only plain decimal notation counts as a number.
func looksNumeric(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9', r == '.', r == 'e', r == 'E', r == '+', r == '-':
		default:
			return false
		}
	}
	return true
}

// Arg returns the i-th positional argument. A JSON null counts as present
// (the value is nil).
func (c *Call) Arg(i int) (any, bool) {
	if c == nil || i < 0 || i >= len(c.Args) {
		return nil, false
	}
	return c.Args[i], true
}

// Dict returns the i-th positional argument, which must be a dict. A
// missing argument is "arguments are missing"; anything else that is not a
// dict (null included) is "first param should be a dict" (the reference's
// texts).
func (c *Call) Dict(i int) (map[string]any, error) {
	v, ok := c.Arg(i)
	if !ok {
		return nil, errdefs.InvalidArgument("arguments are missing")
	}
	if d, ok := asDict(v); ok {
		return d, nil
	}
	return nil, errdefs.InvalidArgument("%s param should be a dict", ordinal(i))
}

// OptDict is Dict for procedures whose dict is optional: a missing
// argument or a null gives an empty dict; any other non-dict is an error.
func (c *Call) OptDict(i int) (map[string]any, error) {
	v, ok := c.Arg(i)
	if !ok || v == nil {
		return map[string]any{}, nil
	}
	if d, ok := asDict(v); ok {
		return d, nil
	}
	return nil, errdefs.InvalidArgument("%s param should be a dict", ordinal(i))
}

// StringArg returns the i-th positional argument as a string; name is used
// in the error text ("failed to parse <name> argument", the reference's).
func (c *Call) StringArg(i int, name string) (string, error) {
	v, ok := c.Arg(i)
	s, isStr := v.(string)
	if !ok || !isStr {
		return "", errdefs.InvalidArgument("failed to parse %s argument", name)
	}
	return s, nil
}

// Uint64Arg returns the i-th positional argument as a non-negative whole
// number (decimal strings too when lenient).
func (c *Call) Uint64Arg(i int, name string, lenient bool) (uint64, error) {
	v, ok := c.Arg(i)
	if !ok {
		return 0, errdefs.InvalidArgument("failed to parse %s argument", name)
	}
	u, ok := ToUint64(v, lenient)
	if !ok {
		return 0, errdefs.InvalidArgument("failed to parse %s argument", name)
	}
	return u, nil
}

// AsDict returns v as a dict when it is one in any of the shapes a
// decoder or an in-process caller produces.
func AsDict(v any) (map[string]any, bool) { return asDict(v) }

func asDict(v any) (map[string]any, bool) {
	switch d := v.(type) {
	case map[string]any:
		return d, d != nil
	case nx.Dict: // values built in-process rather than decoded
		return d, d != nil
	case map[any]any: // msgpack/cbor decoders without a map type hint
		out := make(map[string]any, len(d))
		for k, val := range d {
			ks, ok := k.(string)
			if !ok {
				return nil, false
			}
			out[ks] = val
		}
		return out, true
	}
	return nil, false
}

func ordinal(i int) string {
	switch i {
	case 0:
		return "first"
	case 1:
		return "second"
	case 2:
		return "third"
	}
	return "param #" + strconv.Itoa(i+1) + " "
}

// String reads d[key] as a string. Absent or null: "" (an error when
// required). Wrong type: "the <key> param should be a string".
func String(d map[string]any, key string, required bool) (string, error) {
	v, ok := d[key]
	if !ok || v == nil {
		if required {
			return "", missing(key)
		}
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", errdefs.InvalidArgument("the %s param should be a string", key)
	}
	return s, nil
}

// Uint64 reads d[key] as a non-negative whole number in any encoding (and
// as a decimal string when lenient). Absent or null: 0 (an error when
// required).
func Uint64(d map[string]any, key string, required, lenient bool) (uint64, error) {
	v, ok := d[key]
	if !ok || v == nil {
		if required {
			return 0, missing(key)
		}
		return 0, nil
	}
	u, ok := ToUint64(v, lenient)
	if !ok {
		return 0, errdefs.InvalidArgument("the %s param should be a non-negative whole number", key)
	}
	return u, nil
}

// Int64 reads d[key] as a whole number in any encoding (and as a decimal
// string when lenient).
func Int64(d map[string]any, key string, required, lenient bool) (int64, error) {
	v, ok := d[key]
	if !ok || v == nil {
		if required {
			return 0, missing(key)
		}
		return 0, nil
	}
	i, ok := ToInt64(v, lenient)
	if !ok {
		return 0, errdefs.InvalidArgument("the %s param should be a whole number", key)
	}
	return i, nil
}

// Float64 reads d[key] as any finite number.
func Float64(d map[string]any, key string, required, lenient bool) (float64, error) {
	v, ok := d[key]
	if !ok || v == nil {
		if required {
			return 0, missing(key)
		}
		return 0, nil
	}
	f, ok := ToFloat64(v, lenient)
	if !ok {
		return 0, errdefs.InvalidArgument("the %s param should be a number", key)
	}
	return f, nil
}

// Bool reads d[key] as a boolean. Absent or null: false (an error when
// required).
func Bool(d map[string]any, key string, required bool) (bool, error) {
	v, ok := d[key]
	if !ok || v == nil {
		if required {
			return false, missing(key)
		}
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, errdefs.InvalidArgument("the %s param should be a boolean", key)
	}
	return b, nil
}

// BoolDefault is Bool with a value for an absent or null key.
func BoolDefault(d map[string]any, key string, def bool) (bool, error) {
	if v, ok := d[key]; !ok || v == nil {
		return def, nil
	}
	return Bool(d, key, false)
}

// DictField reads d[key] as a dict. Absent or null: nil (an error when
// required).
func DictField(d map[string]any, key string, required bool) (map[string]any, error) {
	v, ok := d[key]
	if !ok || v == nil {
		if required {
			return nil, missing(key)
		}
		return nil, nil
	}
	m, ok := asDict(v)
	if !ok {
		return nil, errdefs.InvalidArgument("the %s param should be a dict", key)
	}
	return m, nil
}

// List reads d[key] as a list. Absent or null: nil (an error when required).
func List(d map[string]any, key string, required bool) ([]any, error) {
	v, ok := d[key]
	if !ok || v == nil {
		if required {
			return nil, missing(key)
		}
		return nil, nil
	}
	l, ok := v.([]any)
	if nl, isList := v.(nx.List); isList {
		l, ok = nl, true
	}
	if !ok {
		return nil, errdefs.InvalidArgument("the %s param should be a list", key)
	}
	return l, nil
}

func missing(key string) error {
	return errdefs.InvalidArgument("the %s param is missing", key)
}
