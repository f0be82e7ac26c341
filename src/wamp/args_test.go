package wamp

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/errdefs"
)

func TestToUint64(t *testing.T) {
	cases := []struct {
		name    string
		in      any
		lenient bool
		want    uint64
		ok      bool
	}{
		{"uint64", uint64(42), false, 42, true},
		{"uint64 max", uint64(math.MaxUint64), false, math.MaxUint64, true},
		{"int64", int64(42), false, 42, true},
		{"negative int64", int64(-1), false, 0, false},
		{"int", 7, false, 7, true},
		{"negative int", -7, false, 0, false},
		{"uint8", uint8(8), false, 8, true},
		{"int8", int8(8), false, 8, true},
		{"whole float", 42.0, false, 42, true},
		{"float32", float32(3), false, 3, true},
		{"fraction", 42.5, false, 0, false},
		{"negative float", -1.0, false, 0, false},
		{"2^64 float", 18446744073709551616.0, false, 0, false},
		{"NaN", math.NaN(), false, 0, false},
		{"Inf", math.Inf(1), false, 0, false},
		{"json.Number", json.Number("42"), false, 42, true},
		{"json.Number float", json.Number("42.0"), false, 42, true},
		{"json.Number fraction", json.Number("4.2"), false, 0, false},
		{"string strict", "42", false, 0, false},
		{"string lenient", "42", true, 42, true},
		{"string spaces", " 42 ", true, 42, true},
		{"string negative", "-1", true, 0, false},
		{"string junk", "x", true, 0, false},
		{"string inf", "Inf", true, 0, false},
		{"string hex", "0x10", true, 0, false},
		{"empty string", "", true, 0, false},
		{"bool", true, true, 0, false},
		{"nil", nil, true, 0, false},
		{"dict", map[string]any{}, true, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ToUint64(tc.in, tc.lenient)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Fatalf("ToUint64(%#v, %v) = %d, %v; want %d, %v", tc.in, tc.lenient, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestToInt64(t *testing.T) {
	cases := []struct {
		name    string
		in      any
		lenient bool
		want    int64
		ok      bool
	}{
		{"int64 negative", int64(-5), false, -5, true},
		{"uint64 small", uint64(5), false, 5, true},
		{"uint64 too big", uint64(math.MaxUint64), false, 0, false},
		{"float negative whole", -3.0, false, -3, true},
		{"float 2^63", 9223372036854775808.0, false, 0, false},
		{"float -2^63", -9223372036854775808.0, false, math.MinInt64, true},
		{"string lenient negative", "-12", true, -12, true},
		{"string strict", "-12", false, 0, false},
		{"json.Number", json.Number("-4"), false, -4, true},
		{"bool", false, true, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ToInt64(tc.in, tc.lenient)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Fatalf("ToInt64(%#v) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestCallDict(t *testing.T) {
	cases := []struct {
		name    string
		args    []any
		wantErr string // "" = ok
	}{
		{"no args", nil, "arguments are missing"},
		{"null", []any{nil}, "first param should be a dict"},
		{"string", []any{"x"}, "first param should be a dict"},
		{"list", []any{[]any{}}, "first param should be a dict"},
		{"dict", []any{map[string]any{"a": 1}}, ""},
		{"nexus dict", []any{nx.Dict{"a": 1}}, ""},
		{"any-keyed map", []any{map[any]any{"a": 1}}, ""},
		{"non-string keys", []any{map[any]any{1: 1}}, "first param should be a dict"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Call{Args: tc.args}
			d, err := c.Dict(0)
			if tc.wantErr == "" {
				if err != nil || d["a"] == nil {
					t.Fatalf("Dict = %v, %v", d, err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Dict err = %v; want invalid argument %q", err, tc.wantErr)
			}
		})
	}
}

func TestOptDict(t *testing.T) {
	for _, args := range [][]any{nil, {nil}} {
		d, err := (&Call{Args: args}).OptDict(0)
		if err != nil || d == nil || len(d) != 0 {
			t.Fatalf("OptDict(%v) = %v, %v; want empty dict", args, d, err)
		}
	}
	if _, err := (&Call{Args: []any{"x"}}).OptDict(0); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("OptDict(x) err = %v", err)
	}
}

func TestDictGetters(t *testing.T) {
	d := map[string]any{
		"s": "text", "n": uint64(5), "neg": int64(-5), "f": 5.0, "frac": 5.5, "ns": "5",
		"b": true, "null": nil, "dict": map[string]any{}, "list": []any{1}, "nxlist": nx.List{1},
	}
	type check func() error
	cases := []struct {
		name    string
		run     check
		wantErr string
	}{
		{"string ok", func() error { _, err := String(d, "s", true); return err }, ""},
		{"string wrong type", func() error { _, err := String(d, "n", false); return err }, "the n param should be a string"},
		{"string missing required", func() error { _, err := String(d, "x", true); return err }, "the x param is missing"},
		{"string null optional", func() error { _, err := String(d, "null", false); return err }, ""},
		{"uint64 float", func() error { v, err := Uint64(d, "f", true, false); return want(v == 5, err) }, ""},
		{"uint64 negative", func() error { _, err := Uint64(d, "neg", true, false); return err }, "the neg param should be a non-negative whole number"},
		{"uint64 fraction", func() error { _, err := Uint64(d, "frac", true, false); return err }, "the frac param should be a non-negative whole number"},
		{"uint64 string strict", func() error { _, err := Uint64(d, "ns", true, false); return err }, "the ns param should be a non-negative whole number"},
		{"uint64 string lenient", func() error { v, err := Uint64(d, "ns", true, true); return want(v == 5, err) }, ""},
		{"int64 negative", func() error { v, err := Int64(d, "neg", true, false); return want(v == -5, err) }, ""},
		{"float64 fraction", func() error { v, err := Float64(d, "frac", true, false); return want(v == 5.5, err) }, ""},
		{"bool ok", func() error { v, err := Bool(d, "b", true); return want(v, err) }, ""},
		{"bool wrong", func() error { _, err := Bool(d, "s", true); return err }, "the s param should be a boolean"},
		{"bool default", func() error { v, err := BoolDefault(d, "x", true); return want(v, err) }, ""},
		{"dict field", func() error { _, err := DictField(d, "dict", true); return err }, ""},
		{"dict field wrong", func() error { _, err := DictField(d, "list", true); return err }, "the list param should be a dict"},
		{"list", func() error { v, err := List(d, "list", true); return want(len(v) == 1, err) }, ""},
		{"nexus list", func() error { v, err := List(d, "nxlist", true); return want(len(v) == 1, err) }, ""},
		{"list wrong", func() error { _, err := List(d, "s", true); return err }, "the s param should be a list"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err = %v; want invalid argument %q", err, tc.wantErr)
			}
		})
	}
}

func want(ok bool, err error) error {
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("unexpected value")
	}
	return nil
}

func TestPositionalArgs(t *testing.T) {
	c := &Call{Args: []any{"BEGIN", "app.tgz", 3.0, "7"}}
	if s, err := c.StringArg(1, "name"); err != nil || s != "app.tgz" {
		t.Fatalf("StringArg = %q, %v", s, err)
	}
	if _, err := c.StringArg(2, "total"); err == nil || !strings.Contains(err.Error(), "failed to parse total argument") {
		t.Fatalf("StringArg on a number: %v", err)
	}
	if _, err := c.StringArg(9, "id"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("StringArg out of range: %v", err)
	}
	if n, err := c.Uint64Arg(2, "total", false); err != nil || n != 3 {
		t.Fatalf("Uint64Arg = %d, %v", n, err)
	}
	if _, err := c.Uint64Arg(3, "total", false); err == nil {
		t.Fatal("strict Uint64Arg accepted a string")
	}
	if n, err := c.Uint64Arg(3, "total", true); err != nil || n != 7 {
		t.Fatalf("lenient Uint64Arg = %d, %v", n, err)
	}
	var nilCall *Call
	if _, ok := nilCall.Arg(0); ok {
		t.Fatal("nil call has args")
	}
}

func TestProcedureURI(t *testing.T) {
	if got := ProcedureURI("abc-1", "get_images"); got != "re.mgmt.abc-1.get_images" {
		t.Fatal(got)
	}
}
