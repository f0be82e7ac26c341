package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Secret is a string that never prints: fmt, zerolog and encoding/json all
// see "***". Reveal gives the value to the few places that need it
// (wampcra, registry auth, Save).
type Secret string

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string   { return "***" }
func (s Secret) GoString() string { return "***" }

// MarshalJSON hides the value; Save writes the real one explicitly.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"***"`), nil }

// Board describes the hardware; only Model is used ("appliance" marks an
// appliance host).
type Board struct {
	CPU          string `json:"cpu"`
	Docs         any    `json:"docs"`
	Board        string `json:"board"`
	Model        string `json:"model"`
	BoardName    string `json:"boardname"`
	ModelName    string `json:"modelname"`
	Reflasher    bool   `json:"reflasher"`
	Architecture string `json:"architecture"`
}

// Authentication is the client certificate presented to legacy endpoints.
type Authentication struct {
	Key         Secret `json:"key"`
	Certificate string `json:"certificate"`
}

// Flock is the device's .flock file: its identity, its secret and where its
// cloud lives. Field names and types are those of the reference agent.
//
//	{"name": "dev-1", "secret": "…", "swarm_key": 1, "device_key": 2,
//	 "serial_number": "7c3e…", "device_endpoint_url": "wss://cbw.ironflock.com/ws-re-dev",
//	 "docker_registry_url": "registry.ironflock.com/", "docker_main_repository": "apps/", …}
type Flock struct {
	Name                 string          `json:"name"`
	Secret               Secret          `json:"secret"`
	Board                *Board          `json:"board,omitempty"`
	Status               string          `json:"status,omitempty"`
	Password             Secret          `json:"password,omitempty"`
	WlanSSID             string          `json:"wlanssid,omitempty"`
	SwarmKey             int64           `json:"swarm_key"`
	DeviceKey            int64           `json:"device_key"`
	SwarmName            string          `json:"swarm_name"`
	Description          any             `json:"description,omitempty"`
	Architecture         string          `json:"architecture,omitempty"`
	SerialNumber         string          `json:"serial_number"`
	Authentication       *Authentication `json:"authentication,omitempty"`
	SwarmOwnerName       string          `json:"swarm_owner_name"`
	ConfigPassphrase     Secret          `json:"config_passphrase,omitempty"`
	DeviceEndpointURL    string          `json:"device_endpoint_url"`
	Environment          string          `json:"environment,omitempty"`
	DockerRegistryURL    string          `json:"docker_registry_url"`
	InsecureRegistries   string          `json:"insecure-registries,omitempty"`
	DockerMainRepository string          `json:"docker_main_repository"`
	ApplianceDomain      string          `json:"appliance_domain,omitempty"`
	UpdateURL            string          `json:"update_url,omitempty"`

	// raw keeps every key of the file as read, so Save writes back what it
	// does not know about.
	raw map[string]json.RawMessage
}

// AuthID is the WAMP authid of the device, "<swarm_key>-<device_key>".
func (f *Flock) AuthID() string { return fmt.Sprintf("%d-%d", f.SwarmKey, f.DeviceKey) }

// FlockError says which file and which field is wrong, in one line.
type FlockError struct {
	Path  string
	Field string // empty when the problem is the file as a whole
	Msg   string
}

func (e *FlockError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
	return fmt.Sprintf("%s: field %q: %s", e.Path, e.Field, e.Msg)
}

// LoadFlock reads and validates a .flock file. It never writes the file.
func LoadFlock(path string) (*Flock, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &FlockError{Path: path, Msg: "file does not exist"}
		}
		return nil, &FlockError{Path: path, Msg: "cannot read: " + err.Error()}
	}
	f, err := ParseFlock(data)
	if err != nil {
		var fe *FlockError
		if errors.As(err, &fe) {
			fe.Path = path
			return nil, fe
		}
		return nil, &FlockError{Path: path, Msg: err.Error()}
	}
	return f, nil
}

// ParseFlock decodes and validates .flock content. Errors are *FlockError
// without a path.
func ParseFlock(data []byte) (*Flock, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, jsonError(err, data)
	}
	if raw == nil {
		return nil, &FlockError{Msg: "invalid JSON: the file must hold one JSON object"}
	}
	var f Flock
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, jsonError(err, data)
	}
	f.raw = raw
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

var (
	serialRe   = regexp.MustCompile(`^[A-Za-z0-9_-]+$`) // and at most 128 bytes
	registryRe = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]{1,5})?/([A-Za-z0-9._-]+/)*$`)
	repoRe     = regexp.MustCompile(`^([a-z0-9._-]+/)+$`)
)

func (f *Flock) validate() error {
	bad := func(field, msg string) error { return &FlockError{Field: field, Msg: msg} }
	for _, k := range []string{"secret", "swarm_key", "device_key", "serial_number", "device_endpoint_url"} {
		if _, ok := f.raw[k]; !ok {
			return bad(k, "is missing")
		}
	}
	switch {
	case f.Secret == "":
		return bad("secret", "must not be empty")
	case f.SwarmKey < 0:
		return bad("swarm_key", "must not be negative")
	case f.DeviceKey <= 0:
		return bad("device_key", "must be a positive integer")
	case len(f.SerialNumber) > 128 || !serialRe.MatchString(f.SerialNumber):
		// The serial is a segment of every WAMP URI of the device: a dot or
		// a space in it would break them.
		return bad("serial_number", "must be 1-128 letters, digits, '-' or '_'")
	}
	u, err := url.Parse(f.DeviceEndpointURL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return bad("device_endpoint_url", fmt.Sprintf("must be a ws:// or wss:// URL, got %q", f.DeviceEndpointURL))
	}
	if f.DockerRegistryURL != "" && !registryRe.MatchString(f.DockerRegistryURL) {
		return bad("docker_registry_url", fmt.Sprintf("must be host[:port]/ with a trailing slash and no scheme, got %q", f.DockerRegistryURL))
	}
	if f.DockerMainRepository != "" && !repoRe.MatchString(f.DockerMainRepository) {
		return bad("docker_main_repository", fmt.Sprintf("must be lower-case path segments ending in '/', got %q", f.DockerMainRepository))
	}
	return nil
}

// jsonError turns an encoding/json error into a one-line FlockError.
func jsonError(err error, data []byte) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line := 1 + bytes.Count(data[:min(int(syn.Offset), len(data))], []byte("\n"))
		return &FlockError{Msg: fmt.Sprintf("invalid JSON at line %d: %v", line, syn)}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return &FlockError{Msg: fmt.Sprintf("invalid JSON: expected an object, got %s", typ.Value)}
		}
		return &FlockError{Field: field, Msg: fmt.Sprintf("expected %s, got %s", jsonKind(typ.Type.Kind().String()), typ.Value)}
	default:
		return &FlockError{Msg: "invalid JSON: " + err.Error()}
	}
}

func jsonKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"), strings.HasPrefix(goKind, "float"):
		return "a number"
	case goKind == "string":
		return "a string"
	case goKind == "bool":
		return "a boolean"
	case goKind == "struct", goKind == "map", goKind == "ptr":
		return "an object"
	}
	return goKind
}

// Save writes f to path atomically (temp file in the same directory, fsync,
// rename) with mode 0600. Keys the file had that Flock does not know are
// kept as they were.
func (f *Flock) Save(path string) error {
	known, err := f.marshalMap()
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	out := make(map[string]json.RawMessage, len(f.raw)+len(known))
	for k, v := range f.raw {
		out[k] = v
	}
	for k, v := range known {
		out[k] = v
	}
	data, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := writeFileAtomic(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	f.raw = out
	return nil
}

// marshalMap encodes the known fields with their secrets revealed.
func (f *Flock) marshalMap() (map[string]json.RawMessage, error) {
	type plain Flock // drops the methods, keeps the tags
	data, err := json.Marshal((*plain)(f))
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	reveal := func(key string, s Secret, keepEmpty bool) {
		if s == "" && !keepEmpty {
			delete(m, key)
			return
		}
		b, _ := json.Marshal(s.Reveal())
		m[key] = b
	}
	reveal("secret", f.Secret, true)
	reveal("password", f.Password, false)
	reveal("config_passphrase", f.ConfigPassphrase, false)
	if f.Authentication != nil {
		auth := map[string]string{"key": f.Authentication.Key.Reveal(), "certificate": f.Authentication.Certificate}
		b, _ := json.Marshal(auth)
		m["authentication"] = b
	}
	return m, nil
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content, never a mix.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; not all filesystems support it
		d.Close()
	}
	return nil
}
