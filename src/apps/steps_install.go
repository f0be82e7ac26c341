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
	if m.opts.Cloud == nil || m.opts.Link == nil || !m.opts.Link.Connected() {
		m.applog.Write(logName, "The device is offline: "+doing+" without registry credentials.")
		return nil
	}
	caller := o.req.RequestorAccountKey
	if o.key.Stage == StageProd && o.req.DeviceOwnerAccountKey != 0 {
		caller = o.req.DeviceOwnerAccountKey
	}
	tctx, cancel := context.WithTimeout(ctx, tokenTimeout)
	defer cancel()
	token, err := m.opts.Cloud.GetRegistryToken(tctx, caller)
	if err != nil {
		if ctx.Err() == nil {
			m.applog.Write(logName, fmt.Sprintf("Could not get a registry token (%v): %s without registry credentials.", err, doing))
		}
		return nil
	}
	return &docker.RegistryAuth{Username: token, Password: m.opts.Flock.Secret.Reveal(), ServerAddress: host}
}
