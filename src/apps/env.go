package apps

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"reagent/src/config"
)

// maxEnvValue: larger variables reach the app only as files (the
// reference's limit; large env blocks break some engines and shells).
const maxEnvValue = 20 << 10

// envName: env names become file names under /data/env, so only plain
// identifiers are accepted.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validEnvName: a shell-style name of at most 255 bytes. The length is
// checked apart: a counted repetition in the pattern compiles into a
// program of hundreds of states at every start of the agent.
func validEnvName(n string) bool { return len(n) <= 255 && envNameRE.MatchString(n) }

// reservedEnv are names a user environment cannot set: the app
// credentials are the agent's, and the device secret never reaches an app.
var reservedEnv = map[string]bool{"APP_AUTH_ID": true, "APP_AUTH_SECRET": true, "DEVICE_SECRET": true}

// envVar is one variable of an app's environment.
type envVar struct{ Name, Value string }

// envInput is everything an app's environment is made of.
type envInput struct {
	Key                   Key
	AppName               string
	Flock                 *config.Flock
	CredKey               string // get_app_cred_key; "" → no app credentials
	Epoch                 uint64 // app_cred_epoch; 0 → 1
	InstanceKey           uint64
	BaseURL               string // the cloud's reswarmBaseURL; "" → no RESWARM_URL/DEVICE_URL
	LANIP                 string
	Environment, Template json.RawMessage
	HostPorts             []hostPort // DEVICE_PORT_FOR_<declared>
}

// composeEnv builds the app's environment (apps-lifecycle §3.8): system
// defaults, then the user's environment values (for DEV too — the
// reference ignoring them is a listed bug), then template defaults for
// names not yet set (exact match, not the reference's substring match),
// then DEVICE_PORT_FOR_<port>. Values have \n, \t, \r escaped. Entries that
// cannot be used are reported through warn.
func composeEnv(in envInput, warn func(string)) []envVar {
	var out []envVar
	idx := map[string]int{}
	set := func(name, value string) {
		value = escapeEnv(value)
		if i, ok := idx[name]; ok {
			out[i].Value = value
			return
		}
		idx[name] = len(out)
		out = append(out, envVar{Name: name, Value: value})
	}
	fl := in.Flock
	set("DEVICE_SERIAL_NUMBER", fl.SerialNumber)
	set("ENV", in.Key.Stage)
	set("DEVICE_KEY", strconv.FormatInt(fl.DeviceKey, 10))
	set("SWARM_KEY", strconv.FormatInt(fl.SwarmKey, 10))
	set("APP_KEY", strconv.FormatUint(in.Key.AppKey, 10))
	set("APP_NAME", in.AppName)
	set("DEVICE_NAME", fl.Name)
	set("DEVICE_ENDPOINT_URL", containerEndpoint(fl.DeviceEndpointURL))
	set("TUNNEL_DOMAIN", tunnelDomain(fl))
	if in.CredKey != "" {
		id, secret := AppCredential(in.CredKey, fl.SerialNumber, in.Key, in.Epoch)
		set("APP_AUTH_ID", id)
		set("APP_AUTH_SECRET", secret)
	}
	if in.LANIP != "" {
		set("DEVICE_LAN_IP", in.LANIP)
	}
	if in.InstanceKey > 0 {
		set("INSTANCE_KEY", strconv.FormatUint(in.InstanceKey, 10))
	}
	if in.BaseURL != "" {
		set("RESWARM_URL", in.BaseURL)
		set("DEVICE_URL", strings.TrimRight(in.BaseURL, "/")+"/"+fl.SwarmOwnerName+"/swarms/"+fl.SwarmName+
			"/settings/devices/"+fl.Name)
	}

	for _, e := range decodeEnvMap(in.Environment, "value", "environment", warn) {
		switch {
		case reservedEnv[e.Name]:
			warn(fmt.Sprintf("environment variable %s is set by the device and cannot be overridden", e.Name))
		default:
			set(e.Name, e.Value)
		}
	}
	for _, e := range decodeEnvMap(in.Template, "defaultValue", "environment template", warn) {
		if _, ok := idx[e.Name]; ok || reservedEnv[e.Name] {
			continue
		}
		set(e.Name, e.Value)
	}
	for _, hp := range in.HostPorts {
		set("DEVICE_PORT_FOR_"+strconv.Itoa(int(hp.Declared)), strconv.Itoa(int(hp.Host)))
	}
	return out
}

// decodeEnvMap reads {NAME: {field: value}} in name order. Null values and
// invalid names are skipped.
func decodeEnvMap(raw json.RawMessage, field, what string, warn func(string)) []envVar {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		warn(fmt.Sprintf("the app's %s is not an object: %v", what, err))
		return nil
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []envVar
	for _, n := range names {
		if !validEnvName(n) {
			warn(fmt.Sprintf("ignoring %s entry %q: not a valid variable name", what, n))
			continue
		}
		var entry map[string]json.RawMessage
		if err := json.Unmarshal(m[n], &entry); err != nil {
			warn(fmt.Sprintf("ignoring %s entry %s: not an object", what, n))
			continue
		}
		v, ok := jsonText(entry[field])
		if !ok {
			continue
		}
		out = append(out, envVar{Name: n, Value: v})
	}
	return out
}

// jsonText stringifies a JSON value: strings as they are, numbers as
// written, booleans, objects and lists as compact JSON; null or absent → false.
func jsonText(raw json.RawMessage) (string, bool) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return "", false
	}
	if t[0] == '"' {
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return "", false
		}
		return s, true
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return "", false
	}
	return buf.String(), true
}

func escapeEnv(v string) string {
	return strings.NewReplacer("\n", `\n`, "\t", `\t`, "\r", `\r`).Replace(v)
}

// AppCredential derives an app's credentials from the device's app
// credential key (wamp-contract §4; the backend verifies the same way):
// id app-<key>-<stage lower>-e<epoch>@<serial>, secret
// base64(HMAC-SHA256(key, "ironflock/app-cred/v1|<serial>|<key>|<STAGE>|<epoch>")).
// Epoch 0 counts as 1.
func AppCredential(credKey, serial string, k Key, epoch uint64) (id, secret string) {
	if epoch == 0 {
		epoch = 1
	}
	e := strconv.FormatUint(epoch, 10)
	key := strconv.FormatUint(k.AppKey, 10)
	id = "app-" + key + "-" + strings.ToLower(k.Stage) + "-e" + e + "@" + serial
	mac := hmac.New(sha256.New, []byte(credKey))
	mac.Write([]byte("ironflock/app-cred/v1|" + serial + "|" + key + "|" + strings.ToUpper(k.Stage) + "|" + e))
	return id, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// containerEndpoint rewrites a loopback endpoint host to
// host.docker.internal, which the app's container resolves to the host.
func containerEndpoint(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return endpoint
	}
	h := u.Hostname()
	ip := net.ParseIP(h)
	if h != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return endpoint
	}
	if p := u.Port(); p != "" {
		u.Host = "host.docker.internal:" + p
	} else {
		u.Host = "host.docker.internal"
	}
	return u.String()
}

// tunnelDomain is appliance_domain, else the domain of the device's
// environment (platform.md §1).
func tunnelDomain(fl *config.Flock) string {
	if fl.ApplianceDomain != "" {
		return fl.ApplianceDomain
	}
	env := fl.Environment
	if env == "" {
		switch {
		case strings.Contains(fl.DeviceEndpointURL, "datapods"):
			env = "test"
		case strings.Contains(fl.DeviceEndpointURL, "record-evolution"):
			env = "production"
		default:
			env = "local"
		}
	}
	switch env {
	case "test":
		return "app.ironflock.dev"
	case "local":
		return "localhost"
	}
	return "app.ironflock.com"
}

// dockerEnv is the NAME=value list handed to the engine; oversized values
// are left to their files.
func dockerEnv(vars []envVar) []string {
	out := make([]string, 0, len(vars))
	for _, v := range vars {
		if len(v.Value) > maxEnvValue {
			continue
		}
		out = append(out, v.Name+"="+v.Value)
	}
	return out
}

// envDir is where an app's env files live: <data dir>/env, /data/env in
// the container.
func envDir(dataDir string) string { return filepath.Join(dataDir, "env") }

// writeEnvFiles makes <dir>/<NAME>.txt for every variable (dir 0700, files
// 0600, replaced atomically so a running app never reads half a value) and
// removes the files of variables that no longer exist, DEVICE_SECRET.txt
// of old agents included. A file that already holds its value is left
// alone: every start of an app passes here, and rewriting a dozen files
// through a rename each is most of the agent's own share of a start.
func writeEnvFiles(dir string, vars []envVar) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create env dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restrict env dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read env dir: %w", err)
	}
	existing := make(map[string]os.DirEntry, len(entries))
	for _, e := range entries {
		existing[e.Name()] = e
	}
	keep := make(map[string]bool, len(vars))
	for _, v := range vars {
		name := v.Name + ".txt"
		keep[name] = true
		path := filepath.Join(dir, name)
		if e, ok := existing[name]; ok && sameEnvFile(path, e, v.Value) {
			continue
		}
		if err := writeFileAtomic(path, []byte(v.Value), 0o600); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".txt") && !keep[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove stale env file: %w", err)
			}
		}
	}
	return nil
}

// sameEnvFile reports whether the env file e at path is a regular 0600
// file holding exactly value.
func sameEnvFile(path string, e os.DirEntry, value string) bool {
	if !e.Type().IsRegular() {
		return false
	}
	info, err := e.Info()
	if err != nil || info.Mode().Perm() != 0o600 || info.Size() != int64(len(value)) {
		return false
	}
	b, err := os.ReadFile(path)
	return err == nil && string(b) == value
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, mode)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}
