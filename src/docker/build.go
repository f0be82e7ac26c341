package docker

import (
	"context"
	"fmt"
	"io"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/build"
)

// BuildOptions shape an image build.
type BuildOptions struct {
	Tags       []string
	Dockerfile string // path inside the context; "" = "Dockerfile"
	Labels     map[string]string
	BuildArgs  map[string]string
	NoCache    bool
	// Auth are credentials for the registries the Dockerfile's FROM
	// images come from, keyed by registry host ("host:port"). The engine
	// picks the entry of each base image's registry; the rest stay unused.
	Auth map[string]RegistryAuth
}

// buildTailLines is how much build output an error message carries.
const buildTailLines = 10

// BuildImage builds an image from a tar or gzip-compressed tar context with
// the classic builder: BuildKit over the API needs a client session the
// bare SDK does not run, and every engine back to 1.41 has the classic one.
// progress gets every JSON message line; a failing step is
// returned with the last lines of output. Cancelling ctx aborts the build:
// the engine stops it when the connection closes.
func (c *Client) BuildImage(ctx context.Context, buildContext io.Reader, opts BuildOptions, progress func(line []byte)) error {
	for _, t := range opts.Tags {
		if _, err := reference.ParseNormalizedNamed(t); err != nil {
			return fmt.Errorf("build: %w", invalidRef(t, err))
		}
	}
	args := make(map[string]*string, len(opts.BuildArgs))
	for k, v := range opts.BuildArgs {
		args[k] = &v
	}
	c.log.Debug().Strs("tags", opts.Tags).Msg("build image")
	resp, err := c.api.ImageBuild(ctx, buildContext, build.ImageBuildOptions{
		Tags:        opts.Tags,
		Dockerfile:  opts.Dockerfile,
		Labels:      opts.Labels,
		BuildArgs:   args,
		NoCache:     opts.NoCache,
		Remove:      true,
		ForceRemove: true, // no intermediate containers left behind by a failed step
		Version:     build.BuilderV1,
		AuthConfigs: authConfigs(opts.Auth),
	})
	if err != nil {
		return wrapf(err, "build %v", opts.Tags)
	}
	tail := &tailLines{max: buildTailLines}
	if err := readStream(ctx, resp.Body, progress, tail); err != nil {
		return fmt.Errorf("build %v: %w", opts.Tags, err)
	}
	return nil
}
