package apps

import (
	"context"
	"fmt"
	"time"

	"reagent/src/docker"
	"reagent/src/store"
)

// tokenTimeout bounds get_registry_token.
const tokenTimeout = 10 * time.Second

// pullStep installs the target version (apps-lifecycle §3.6):
// DOWNLOADING → pull, progress to the app's log → PRESENT. A pull serves
// PRESENT and RUNNING of the same version, so flipping between those two
// never cancels it.
func (m *Manager) pullStep(o *observation) *step {
	v := o.version
	return &step{
		name: "pull " + v,
		serves: func(t target) bool {
			return (t.State == StatePresent || t.State == StateRunning) && t.Version == v
		},
		run: func(ctx context.Context) error {
			m.applog.Clear(o.name)
			m.applog.Write(o.name, fmt.Sprintf("Initialising download for the app: %s...", o.req.AppName))
			if err := m.setState(ctx, o, StateDownloading, "", nil); err != nil {
				return err
			}
			if err := m.pull(ctx, o, v); err != nil {
				return err
			}
			m.applog.Write(o.name, fmt.Sprintf("Succesfully installed the app: %s (Version: %s)", o.req.AppName, v))
			o.installed = v
			return m.setState(ctx, o, StatePresent, "", func(a *store.Actual) {
				a.Version = v
				a.ReleaseKey = o.req.ReleaseKey
			})
		},
	}
}

// pull pulls a version of the app's image with the registry's credentials,
// relaying the engine's progress lines to the app's log.
func (m *Manager) pull(ctx context.Context, o *observation, version string) error {
	ref := o.ref(version)
	auth := m.registryAuth(ctx, o, o.name, "pulling")
	return m.eng.PullImage(ctx, ref, auth, func(line []byte) { m.applog.Progress(o.name, line) })
}

// registryAuth is how the app's registry is logged into, through the
// engine's RegistryAuth (never a `docker login` command line): an entry of
// docker_credentials for the registry's host wins; otherwise the registry
// token of the app's account (get_registry_token) with the device secret.
// Offline, or when the token call fails, the pull (or push, doing) goes
// without credentials (open registries still work) and the log logName
// says so.
func (m *Manager) registryAuth(ctx context.Context, o *observation, logName, doing string) *docker.RegistryAuth {
	host := RegistryHost(m.opts.Flock.DockerRegistryURL)
	creds, err := credentials(o.req)
	if err != nil {
		m.applog.Write(logName, err.Error())
	}
	for key, c := range creds {
		if RegistryHost(key) == host {
			return &docker.RegistryAuth{Username: c.Username, Password: c.Password, ServerAddress: host}
		}
	}
	auth, why := m.deviceRegistryAuth(ctx, o)
	if auth == nil && why != "" {
		m.applog.Write(logName, why+": "+doing+" without registry credentials.")
	}
	return auth
}

// buildAuth are the credentials a build hands the engine for the images
// of its FROM lines (the classic builder pulls them itself): every entry
// of docker_credentials, keyed by its host, and the device registry with
// the registry token and device secret, unless docker_credentials already
// name that host (the same precedence as for pulls). What cannot be had
// is said in the log logName; the build goes on without it, since a
// Dockerfile based on a public image needs none.
func (m *Manager) buildAuth(ctx context.Context, o *observation, logName string) map[string]docker.RegistryAuth {
	out := map[string]docker.RegistryAuth{}
	creds, err := credentials(o.req)
	if err != nil {
		m.applog.Write(logName, err.Error())
	}
	for key, c := range creds {
		host := RegistryHost(key)
		out[host] = docker.RegistryAuth{Username: c.Username, Password: c.Password, ServerAddress: host}
	}
	host := RegistryHost(m.opts.Flock.DockerRegistryURL)
	if _, ok := out[host]; !ok && host != "" {
		auth, why := m.deviceRegistryAuth(ctx, o)
		if auth != nil {
			out[host] = *auth
		} else if why != "" {
			m.applog.Write(logName, why+": building without the credentials of "+host+".")
		}
	}
	return out
}

// deviceRegistryAuth is the login to the device registry: the registry
// token of the app's account (get_registry_token; the device owner's for
// PROD when known, else the requestor's) with the device secret. Without
// it, why says for the app log what went wrong ("" when ctx ended).
func (m *Manager) deviceRegistryAuth(ctx context.Context, o *observation) (auth *docker.RegistryAuth, why string) {
	if m.opts.Cloud == nil || m.opts.Link == nil || !m.opts.Link.Connected() {
		return nil, "The device is offline"
	}
	caller := o.req.RequestorAccountKey
	if o.key.Stage == StageProd && o.req.DeviceOwnerAccountKey != 0 {
		caller = o.req.DeviceOwnerAccountKey
	}
	tctx, cancel := context.WithTimeout(ctx, tokenTimeout)
	defer cancel()
	token, err := m.opts.Cloud.GetRegistryToken(tctx, caller)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ""
		}
		return nil, fmt.Sprintf("Could not get a registry token (%v)", err)
	}
	host := RegistryHost(m.opts.Flock.DockerRegistryURL)
	return &docker.RegistryAuth{Username: token, Password: m.opts.Flock.Secret.Reveal(), ServerAddress: host}, ""
}
