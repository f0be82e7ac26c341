package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const validFlock = `{
 "name": "dev-1",
 "secret": "s3cr3t-value",
 "swarm_key": 1,
 "device_key": 2,
 "swarm_name": "swarm",
 "serial_number": "c6aa09d3-0000-4000-8000-bf75cdd7f149",
 "swarm_owner_name": "owner",
 "device_endpoint_url": "ws://localhost:8080/ws-re-dev",
 "docker_registry_url": "localhost:5001/",
 "docker_main_repository": "apps/",
 "board": {"model": "pi", "docs": null},
 "future_field": {"kept": [1, 2, 3]}
}`

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "device.flock")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadValid(t *testing.T) {
	f, err := LoadFlock(writeFile(t, validFlock))
	if err != nil {
		t.Fatal(err)
	}
	if f.AuthID() != "1-2" || f.Secret.Reveal() != "s3cr3t-value" || f.Board.Model != "pi" {
		t.Fatalf("decoded %+v", f)
	}
}

func TestLoadErrorsNameFileAndFieldAndLeaveFileAlone(t *testing.T) {
	mutate := func(key string, value any) string {
		var m map[string]any
		_ = json.Unmarshal([]byte(validFlock), &m)
		if value == nil {
			delete(m, key)
		} else {
			m[key] = value
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	cases := []struct {
		name, content, field, want string
	}{
		{"invalid json", `{"secret": "x",`, "", "invalid JSON"},
		{"not an object", `[1,2]`, "", "invalid JSON"},
		{"no secret", mutate("secret", nil), "secret", "missing"},
		{"empty secret", mutate("secret", ""), "secret", "empty"},
		{"device_key string", mutate("device_key", "2"), "device_key", "expected a number"},
		{"swarm_key missing", mutate("swarm_key", nil), "swarm_key", "missing"},
		{"http endpoint", mutate("device_endpoint_url", "http://x"), "device_endpoint_url", "ws://"},
		{"serial with dot", mutate("serial_number", "a.b"), "serial_number", "letters"},
		{"registry with scheme", mutate("docker_registry_url", "https://r.io/"), "docker_registry_url", "trailing slash"},
		{"repository without slash", mutate("docker_main_repository", "apps"), "docker_main_repository", "ending in"},
		{"board not object", mutate("board", "pi"), "board", "expected an object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, c.content)
			before, _ := os.ReadFile(p)
			_, err := LoadFlock(p)
			var fe *FlockError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a FlockError", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, p+": ") || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Fatalf("message %q: want file prefix, %q, one line", msg, c.want)
			}
			if c.field != "" && fe.Field != c.field {
				t.Fatalf("field %q, want %q (%s)", fe.Field, c.field, msg)
			}
			if strings.Contains(msg, "s3cr3t-value") {
				t.Fatalf("the secret leaked into %q", msg)
			}
			after, _ := os.ReadFile(p)
			if !bytes.Equal(before, after) {
				t.Fatal("the file was changed")
			}
		})
	}
	_, err := LoadFlock(filepath.Join(t.TempDir(), "missing.flock"))
	if err == nil || !strings.Contains(err.Error(), "missing.flock: file does not exist") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestSaveRoundTripKeepsUnknownKeysAndIs0600(t *testing.T) {
	p := writeFile(t, validFlock)
	f, err := LoadFlock(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Name = "renamed"
	f.SwarmKey = 7
	if err := f.Save(p); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	again, err := LoadFlock(p)
	if err != nil {
		t.Fatal(err)
	}
	if again.Name != "renamed" || again.SwarmKey != 7 || again.Secret.Reveal() != "s3cr3t-value" {
		t.Fatalf("round trip lost values: %+v", again)
	}
	var m map[string]json.RawMessage
	raw, _ := os.ReadFile(p)
	_ = json.Unmarshal(raw, &m)
	if string(m["future_field"]) != `{"kept":[1,2,3]}` && !strings.Contains(string(m["future_field"]), `"kept"`) {
		t.Fatalf("unknown key lost: %s", raw)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	f, err := ParseFlock([]byte(validFlock))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(f), fmt.Sprintf("%+v", *f), fmt.Sprintf("%#v", f.Secret), f.Secret.String()} {
		if strings.Contains(s, "s3cr3t-value") {
			t.Fatalf("secret printed: %s", s)
		}
	}
	b, _ := json.Marshal(f)
	if strings.Contains(string(b), "s3cr3t-value") {
		t.Fatalf("secret in JSON: %s", b)
	}
}
