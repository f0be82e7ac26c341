package wamp_test

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/gammazero/nexus/v3/transport/serialize"
	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/api"
	"reagent/src/wamp"
)

// Argument decoding as the agent does it for every call (issue #9): the
// router's INVOCATION bytes are deserialised by nexus (ugorji/codec, built
// with -tags codec.notfastpath, so maps and slices go through reflection),
// and the handler's decoder turns the generic values into a typed,
// validated request. The "wire" cases measure both steps from the bytes
// the router sends, per serialisation; the "kwargs" and "args" cases only
// the decoder, with the numbers in each encoding a router or an
// in-process caller hands over: uint64 (JSON and CBOR integers), float64
// (integers a JavaScript client wrote as 42.0, or a float-only encoder),
// json.Number, and decimal strings where the contract allows them.

// numbers renders a whole number in one of the encodings.
type numbers func(n uint64) any

var encodings = []struct {
	name string
	num  numbers
	// str: the encoding for the fields that also accept decimal strings
	// (account keys, release_key, instance_key, app_cred_epoch).
	str numbers
}{
	{"uint64", func(n uint64) any { return n }, nil},
	{"float64", func(n uint64) any { return float64(n) }, nil},
	{"json.Number", func(n uint64) any { return json.Number(strconv.FormatUint(n, 10)) }, nil},
	{"strings", func(n uint64) any { return n }, func(n uint64) any { return strconv.FormatUint(n, 10) }},
}

// appStateKwargs is a request_app_state as Studio sends it for a PROD app
// with an environment, a template, two port rules and registry
// credentials (the shape of DecodeAppStateRequest's doc comment).
func appStateKwargs(num, str numbers) map[string]any {
	if str == nil {
		str = num
	}
	return map[string]any{
		"app_key": num(4242), "app_name": "temperature_dashboard", "stage": "PROD",
		"target_state": "RUNNING", "current_state": "PRESENT",
		"requestor_account_key": str(1207), "device_owner_account_key": str(1207),
		"release_key": str(9311), "new_release_key": num(0),
		"version": "1.4.2", "present_version": "1.4.1", "newest_version": "1.4.2",
		"request_update": false, "cancel_transition": false,
		"environment": map[string]any{
			"GREETING":       map[string]any{"value": "hello"},
			"SAMPLE_RATE_HZ": map[string]any{"value": num(50)},
			"THRESHOLDS":     map[string]any{"value": []any{num(10), num(20), num(30)}},
		},
		"environment_template": map[string]any{
			"GREETING": map[string]any{"type": "text", "defaultValue": "hi"},
			"UNITS":    map[string]any{"type": "text", "defaultValue": "metric"},
		},
		"ports": []any{
			map[string]any{"name": "web", "port": num(8080), "protocol": "http", "main": true, "active": true, "remote_port_environment": "WEB_PORT"},
			map[string]any{"name": "mqtt", "port": num(1883), "protocol": "tcp", "active": false},
		},
		"docker_credentials": map[string]any{
			"registry.example.com": map[string]any{"username": "device", "password": "s3cr3t"},
		},
		"instance_key": str(77), "app_cred_epoch": str(3),
	}
}

// writeDataArgs is one write_data call carrying 4 KiB of an upload.
func writeDataArgs(num numbers) []any {
	chunk := hex.EncodeToString([]byte(strings.Repeat("reagent!", 512)))
	return []any{chunk, "temperature_dashboard.tgz", "dev_4242_temperature_dashboard", num(1 << 20), "1700000000000"}
}

var serializers = []struct {
	name string
	s    serialize.Serializer
}{
	{"json", &serialize.JSONSerializer{}},
	{"msgpack", &serialize.MessagePackSerializer{}},
	{"cbor", &serialize.CBORSerializer{}},
}

// invocation serialises an INVOCATION the way the router sends it to the
// agent.
func invocation(b *testing.B, s serialize.Serializer, args []any, kwargs map[string]any) []byte {
	b.Helper()
	msg := &nx.Invocation{
		Request: 7, Registration: 12345,
		Details:     nx.Dict{"caller_authid": "1207", "procedure": "re.mgmt.serial.request_app_state"},
		Arguments:   args,
		ArgumentsKw: kwargs,
	}
	data, err := s.Serialize(msg)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// receive is what the agent does with an INVOCATION's bytes before the
// handler's decoder runs.
func receive(b *testing.B, s serialize.Serializer, data []byte) *wamp.Call {
	m, err := s.Deserialize(data)
	if err != nil {
		b.Fatal(err)
	}
	inv, ok := m.(*nx.Invocation)
	if !ok {
		b.Fatalf("got %T, want an INVOCATION", m)
	}
	return &wamp.Call{Args: []any(inv.Arguments), Kwargs: map[string]any(inv.ArgumentsKw)}
}

func BenchmarkDecodeRequestAppState(b *testing.B) {
	for _, enc := range encodings {
		b.Run("kwargs="+enc.name, func(b *testing.B) {
			kw := appStateKwargs(enc.num, enc.str)
			b.ReportAllocs()
			for b.Loop() {
				r, err := api.DecodeAppStateRequest(kw)
				if err != nil || r.AppKey != 4242 || r.ReleaseKey != 9311 || len(r.Ports) != 2 {
					b.Fatalf("decoded %+v, %v", r, err)
				}
			}
		})
	}
	for _, ser := range serializers {
		b.Run("wire="+ser.name, func(b *testing.B) {
			data := invocation(b, ser.s, nil, appStateKwargs(encodings[0].num, nil))
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				c := receive(b, ser.s, data)
				r, err := api.DecodeAppStateRequest(c.Kwargs)
				if err != nil || r.AppKey != 4242 || r.InstanceKey != 77 {
					b.Fatalf("decoded %+v, %v", r, err)
				}
			}
		})
	}
}

func BenchmarkDecodeWriteData(b *testing.B) {
	for _, enc := range encodings[:3] { // total is never a string (wamp-contract)
		b.Run("args="+enc.name, func(b *testing.B) {
			c := &wamp.Call{Args: writeDataArgs(enc.num)}
			b.ReportAllocs()
			for b.Loop() {
				a, err := api.DecodeWriteData(c)
				if err != nil || a.Total != 1<<20 {
					b.Fatalf("decoded %+v, %v", a, err)
				}
			}
		})
	}
	for _, ser := range serializers {
		b.Run("wire="+ser.name, func(b *testing.B) {
			data := invocation(b, ser.s, writeDataArgs(encodings[0].num), nil)
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				a, err := api.DecodeWriteData(receive(b, ser.s, data))
				if err != nil || a.Total != 1<<20 || len(a.Chunk) != 8192 {
					b.Fatalf("decoded %+v, %v", a, err)
				}
			}
		})
	}
}
