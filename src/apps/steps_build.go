package apps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"reagent/src/docker"
	"reagent/src/errdefs"
	"reagent/src/transfer"
)

// metaBuilt names the per-app fact "the BUILT request of this generation
// was built": "<generation>". A build serves exactly the request that asked
// for it (the source may have changed since an earlier one), so a level
// pass knows from it whether BUILT is reached.
const metaBuilt = "built"

// planBuilt: BUILT wanted for a DEV app (apps-lifecycle §3.2). A running
// container is stopped first (the reference's RUNNING → BUILT), then the
// uploaded source is built once for the request's generation; afterwards
// the app is PRESENT (the reference's VerifyState flips BUILT to PRESENT
// right away). An image that vanished is built again.
func planBuilt(m *Manager, ctx context.Context, o *observation) (*step, Result, error) {
	if o.foreign {
		return nil, Result{}, foreignError(o)
	}
	if o.ours() != nil {
		return m.stopStep(o), Result{}, nil
	}
	gen, err := m.metaGeneration(ctx, o.key, metaBuilt)
	if err != nil {
		return nil, Result{}, err
	}
	if gen != o.req.Generation || o.installed == "" {
		return m.buildStep(o), Result{}, nil
	}
	if o.act.State != StatePresent {
		return m.reportStep(o, StatePresent, "", nil), Result{}, nil
	}
	return nil, Result{}, nil
}

// buildStep builds the app's DEV image: REMOVED → BUILDING → BUILT, the
// engine's output on dev_<key>_<name>. It serves only the generation that
// asked for it: any newer request cancels it (a new BUILT builds again),
// and the engine tags nothing of a cancelled build.
func (m *Manager) buildStep(o *observation) *step {
	gen := o.req.Generation
	return &step{
		name:   "build",
		serves: func(t target) bool { return t.State == StateBuilt && t.Generation == gen },
		run: func(ctx context.Context) error {
			m.applog.Clear(o.name)
			if err := m.build(ctx, o); err != nil {
				return err
			}
			if err := m.st.SetMeta(ctx, metaKey(o.key, metaBuilt), strconv.FormatUint(gen, 10)); err != nil {
				return err
			}
			return m.setState(ctx, o, StateBuilt, "", nil)
		},
	}
}

// build makes the DEV image <registry><repo>dev_<arch>_<key>_<name>(:latest)
// from the uploaded source: REMOVED, the archive checked, "Starting image
// build...", BUILDING, the engine's build with the archive itself as the
// context and the registry credentials of buildAuth for its FROM images,
// every output line to o.logTo(), "Image built successfully". The caller
// records BUILT.
func (m *Manager) build(ctx context.Context, o *observation) error {
	if err := m.setState(ctx, o, StateRemoved, "", nil); err != nil {
		return err
	}
	src, info, err := m.buildSource(ctx, o)
	if err != nil {
		return err
	}
	defer src.Close()
	dockerfile := transfer.DockerfileFor(info, m.arch)
	if !slices.Contains(info.Files, dockerfile) {
		return terminal("the uploaded source of %s has no %s", o.req.AppName, dockerfile)
	}
	logName := o.logTo()
	m.applog.Write(logName, "Starting image build...")
	if err := m.setState(ctx, o, StateBuilding, "", nil); err != nil {
		return err
	}
	err = m.eng.BuildImage(ctx, src, docker.BuildOptions{
		Tags:       []string{o.repo},
		Dockerfile: dockerfile,
		Labels:     map[string]string{LabelAppKey: strconv.FormatUint(o.key.AppKey, 10), LabelStage: o.key.Stage},
		Auth:       m.buildAuth(ctx, o, logName),
	}, func(line []byte) { m.applog.Progress(logName, line) })
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return sourceFailure(err)
	}
	o.installed = "latest"
	m.applog.Write(logName, "Image built successfully")
	return nil
}

// sourcePath is where write_data leaves an app's source:
// <build dir>/<AppName>.<ext>, the app name in its original case.
func (m *Manager) sourcePath(appName string) string {
	return filepath.Join(m.opts.Paths.BuildDir, appName+"."+m.opts.BuildExtension)
}

// buildSource opens the uploaded source of the app after transfer.Inspect
// accepted it: no absolute or ".." names, no links leading out, bounded
// size and entry count. The engine extracts the context itself, so a
// refused archive never reaches it. The open file is the one inspected: an
// upload finishing meanwhile renames a new file over the name, which the
// identity check notices.
func (m *Manager) buildSource(ctx context.Context, o *observation) (*os.File, transfer.Info, error) {
	if m.opts.Paths.BuildDir == "" {
		return nil, transfer.Info{}, terminal("no build directory: %s cannot be built", o.req.AppName)
	}
	path := m.sourcePath(o.req.AppName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, transfer.Info{}, terminal("no source of %s to build: upload %s first", o.req.AppName, filepath.Base(path))
	}
	if err != nil {
		return nil, transfer.Info{}, fmt.Errorf("open the source of %s: %w", o.req.AppName, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = terminal("the source of %s is not a regular file", o.req.AppName)
	}
	var info transfer.Info
	if err == nil {
		info, err = transfer.InspectContext(ctx, path, transfer.Limits{})
		if errors.Is(err, errdefs.ErrInvalidArgument) {
			err = terminal("the uploaded source of %s is refused: %v", o.req.AppName, err)
		}
	}
	if err == nil {
		again, serr := os.Stat(path)
		if serr != nil || !os.SameFile(fi, again) {
			err = errdefs.Unavailable("the source of %s changed while it was checked", o.req.AppName)
		}
	}
	if err != nil {
		f.Close()
		return nil, transfer.Info{}, err
	}
	return f, info, nil
}

// sourceFailure classes a failed build or push: trouble of the engine or
// the network (ErrUnavailable) is retried with backoff; anything else — a
// broken Dockerfile, a failing RUN, a missing base image, a refused push —
// fails the same way until a new request, so it is terminal, the message
// (with the build's last lines) kept for the log.
func sourceFailure(err error) error {
	if errors.Is(err, errdefs.ErrUnavailable) {
		return err
	}
	return permanentError{err}
}

// permanentError keeps an error's text and chain and classes it
// ErrInvalidArgument, which the reconciler treats as terminal.
type permanentError struct{ err error }

func (p permanentError) Error() string        { return p.err.Error() }
func (p permanentError) Unwrap() error        { return p.err }
func (p permanentError) Is(target error) bool { return target == errdefs.ErrInvalidArgument }

// metaGeneration reads a per-app fact that holds a generation; 0 when
// unset.
func (m *Manager) metaGeneration(ctx context.Context, k Key, what string) (uint64, error) {
	v, ok, err := m.st.GetMeta(ctx, metaKey(k, what))
	if err != nil || !ok || v == "" {
		return 0, err
	}
	g, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, nil // unreadable: as if unset, so the work is done again
	}
	return g, nil
}
