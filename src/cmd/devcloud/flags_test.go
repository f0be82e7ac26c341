package main

import (
	"flag"
	"io"
	"reflect"
	"testing"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []map[string]any
		wantErr bool
	}{
		{"none", nil, nil, false},
		{"port only is http and main", []string{"80"}, []map[string]any{{"name": "port-80", "port": uint64(80), "protocol": "http",
			"main": true, "active": true, "public": false, "local_ip": "", "remote_port_environment": "", "remote_port": uint64(0)}}, false},
		{"proto and remote", []string{"80", "1883/TCP:21883"}, []map[string]any{
			{"name": "port-80", "port": uint64(80), "protocol": "http", "main": true, "active": true, "public": false, "local_ip": "", "remote_port_environment": "", "remote_port": uint64(0)},
			{"name": "port-1883", "port": uint64(1883), "protocol": "tcp", "main": false, "active": true, "public": false, "local_ip": "", "remote_port_environment": "", "remote_port": uint64(21883)},
		}, false},
		{"json object keeps wire numbers", []string{`{"port": 9000, "protocol": "udp", "main": true}`}, []map[string]any{{"port": uint64(9000), "protocol": "udp", "main": true}}, false},
		{"bad protocol", []string{"80/sctp"}, nil, true},
		{"bad port", []string{"http"}, nil, true},
		{"port zero", []string{"0"}, nil, true},
		{"bad remote", []string{"80:x"}, nil, true},
		{"bad json", []string{`{"port":`}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePorts(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestParseEnvAndKwargs(t *testing.T) {
	env, err := parseEnv([]string{"A=1", "B=x=y", "C="})
	if err != nil || !reflect.DeepEqual(env, map[string]any{"A": map[string]any{"value": "1"}, "B": map[string]any{"value": "x=y"}, "C": map[string]any{"value": ""}}) {
		t.Fatalf("env %#v %v", env, err)
	}
	if _, err := parseEnv([]string{"=1"}); err == nil {
		t.Fatal("empty name accepted")
	}
	kw, err := parseKwargs([]string{`cancel_transition=true`, `app_cred_epoch=3`, `docker_credentials={"r:5000/":{"username":"u","password":"p"}}`})
	if err != nil || kw["cancel_transition"] != true || kw["app_cred_epoch"] != uint64(3) || kw["docker_credentials"] == nil {
		t.Fatalf("kwargs %#v %v", kw, err)
	}
	if _, err := parseKwargs([]string{`x=nope`}); err == nil {
		t.Fatal("bad JSON accepted")
	}
}

func TestParseInterleaved(t *testing.T) {
	tests := []struct {
		args    []string
		wantPos []string
		wantKey uint64
	}{
		{[]string{"SERIAL", "--key", "5"}, []string{"SERIAL"}, 5},
		{[]string{"--key", "5", "SERIAL"}, []string{"SERIAL"}, 5},
		{[]string{"A", "--key=6", "B", "[1]"}, []string{"A", "B", "[1]"}, 6},
		{nil, nil, 0},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		key := fs.Uint64("key", 0, "")
		pos, err := parseInterleaved(fs, tt.args)
		if err != nil || !reflect.DeepEqual(pos, tt.wantPos) || *key != tt.wantKey {
			t.Errorf("%q: pos %q key %d err %v", tt.args, pos, *key, err)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in   string
		want [2]int
		ok   bool
	}{
		{"20000-20999", [2]int{20000, 20999}, true},
		{"5-5", [2]int{5, 5}, true},
		{"10-5", [2]int{}, false},
		{"0-5", [2]int{}, false},
		{"1-70000", [2]int{}, false},
		{"20000", [2]int{}, false},
	}
	for _, tt := range tests {
		got, err := parsePortRange(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%q: %v %v", tt.in, got, err)
		}
	}
}
