package devcloud

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/gammazero/nexus/v3/wamp"
)

// decodeJSON decodes s with numbers as the WAMP JSON serializer produces
// them (uint64 for non-negative integers, int64 for negative ones, float64
// otherwise), so stored payloads read back as they arrived on the wire.
// Invalid JSON decodes to nil.
func decodeJSON(s string) any {
	v, err := ParseWireJSON([]byte(s))
	if err != nil {
		return nil
	}
	return v
}

// ParseWireJSON decodes JSON (from a command line, a file) into values
// typed as if they had arrived over WAMP: non-negative integers are uint64,
// negative ones int64, other numbers float64. A float64 5 would go out as
// 5.0, which the agent's strict uint64 fields reject.
func ParseWireJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON value")
	}
	return wireNumbers(v), nil
}

// encodeJSON encodes v for storage; values that cannot be encoded (they
// came from the wire, so this does not happen) are stored as null.
func encodeJSON(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "null"
	}
	return strings.TrimSpace(buf.String())
}

// wireNumbers replaces json.Number and integral floats in v, recursively,
// with uint64/int64, the types the agent's decoders expect.
func wireNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = wireNumbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = wireNumbers(e)
		}
		return x
	case []map[string]any:
		for i, e := range x {
			x[i] = wireNumbers(e).(map[string]any)
		}
		return x
	case json.Number:
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return u
		}
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			if x >= 0 {
				return uint64(x)
			}
			return int64(x)
		}
		return x
	}
	return v
}

// asUint64 accepts every encoding a key arrives in: any integer type, an
// integral float, or a decimal string.
func asUint64(v any) (uint64, bool) {
	switch x := v.(type) {
	case uint64:
		return x, true
	case uint32:
		return uint64(x), true
	case uint:
		return uint64(x), true
	case int64:
		return uint64(x), x >= 0
	case int:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case float64:
		return uint64(x), x >= 0 && x == math.Trunc(x) && x < 1<<64
	case float32:
		return asUint64(float64(x))
	case json.Number:
		return asUint64(string(x))
	case string:
		u, err := strconv.ParseUint(strings.TrimSpace(x), 10, 64)
		if err == nil {
			return u, true
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return 0, false
		}
		return asUint64(f)
	}
	return 0, false
}

// asDict returns v as a map whatever map type carried it.
func asDict(v any) (map[string]any, bool) {
	switch x := v.(type) {
	case map[string]any:
		return x, true
	case wamp.Dict:
		return map[string]any(x), true
	case nil:
		return nil, false
	}
	b, err := json.Marshal(v)
	if err != nil || len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	m, ok := decodeJSON(string(b)).(map[string]any)
	return m, ok
}
