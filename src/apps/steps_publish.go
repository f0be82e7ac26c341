package apps

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"reagent/src/errdefs"
)

// metaPublished names the per-app fact "the PUBLISHED request of this
// generation was published": "<generation>". PUBLISHED is a one-shot:
// reaching it means done, and a level pass must not push again for the
// same request.
const metaPublished = "published"

// tagRE is what the engine accepts as an image tag; the version becomes
// the tag of the PROD image.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`) // and at most 128 bytes

// planPublished: PUBLISHED wanted for a DEV app (apps-lifecycle §3.4). A
// running container is stopped first (the reference removes it), then the
// release is published once for the request's generation.
func planPublished(m *Manager, ctx context.Context, o *observation) (*step, Result, error) {
	if o.foreign {
		return nil, Result{}, foreignError(o)
	}
	gen, err := m.metaGeneration(ctx, o.key, metaPublished)
	if err != nil || gen == o.req.Generation {
		return nil, Result{}, err
	}
	if o.ours() != nil {
		return m.stopStep(o), Result{}, nil
	}
	return m.publishStep(o), Result{}, nil
}

// publishStep publishes the app: a release build (REMOVED → BUILDING →
// BUILT, reported with release_build true), the DEV image tagged as
// <registry><repo>prod_<arch>_<key>_<name>:<version>, PUBLISHING, the push
// with the registry's credentials, PUBLISHED. Everything it says goes to
// pub_<key>_<name>. It serves only the generation that asked for it.
func (m *Manager) publishStep(o *observation) *step {
	gen, version := o.req.Generation, o.req.Version
	return &step{
		name:   "publish " + version,
		serves: func(t target) bool { return t.State == StatePublished && t.Generation == gen },
		run:    func(ctx context.Context) error { return m.publish(ctx, o, version) },
	}
}

func (m *Manager) publish(ctx context.Context, o *observation, version string) error {
	pub := PublishLogName(o.key.AppKey, o.req.AppName)
	o.logName = pub
	if len(version) > 128 || !tagRE.MatchString(version) {
		return terminal("cannot publish %s as version %q: want a version usable as an image tag", o.req.AppName, version)
	}
	prod := ImageRef(ImageRepo(m.opts.Flock.DockerRegistryURL, m.opts.Flock.DockerMainRepository,
		Key{AppKey: o.key.AppKey, Stage: StageProd}, m.arch, o.req.AppName), StageProd, version)

	m.applog.Clear(pub)
	m.applog.Write(pub, fmt.Sprintf("Initializing publish process for %s...", o.req.AppName))
	o.w.setReleaseBuild(true)
	err := m.build(ctx, o)
	if err == nil {
		err = m.setState(ctx, o, StateBuilt, "", nil)
	}
	o.w.setReleaseBuild(false)
	if err != nil {
		return err
	}
	m.applog.Write(pub, "App build has finished, Starting to publish...")

	existed, err := m.eng.ImageExists(ctx, prod)
	if err != nil {
		return err
	}
	if err := m.eng.TagImage(ctx, o.repo, prod); err != nil {
		return err
	}
	if !existed {
		// The registry keeps the release; a local tag would only hold the
		// image's disk space after the DEV app is gone. A tag that was
		// there before (the PROD app of this version on this device) stays.
		defer m.untag(ctx, o, prod)
	}
	if err := m.setState(ctx, o, StatePublishing, "", nil); err != nil {
		return err
	}
	auth := m.registryAuth(ctx, o, pub, "pushing")
	if err := m.eng.PushImage(ctx, prod, auth, func(line []byte) { m.applog.Progress(pub, line) }); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return sourceFailure(err)
	}
	if err := m.st.SetMeta(ctx, metaKey(o.key, metaPublished), strconv.FormatUint(o.req.Generation, 10)); err != nil {
		return err
	}
	return m.setState(ctx, o, StatePublished, "", nil)
}

// untag removes a tag the publish made, also after a cancel, best effort.
func (m *Manager) untag(ctx context.Context, o *observation, ref string) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := m.eng.RemoveImage(bctx, ref, false); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		m.log.Info().Err(err).Uint64("app_key", o.key.AppKey).Str("stage", o.key.Stage).Str("ref", ref).Msg("publish tag kept")
	}
}
