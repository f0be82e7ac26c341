package docker

import (
	"context"
	"errors"
	"fmt"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"reagent/src/errdefs"
)

// Image is one local image in the shape of the reference's get_images
// result (one object per image, these JSON names, empty fields omitted).
type Image struct {
	ID          string            `json:"id"`
	RepoTags    []string          `json:"repoTags,omitempty"`
	Created     int64             `json:"created,omitempty"`
	Size        int64             `json:"size,omitempty"`
	SharedSize  int64             `json:"sharedSize,omitempty"`
	VirtualSize int64             `json:"virtualSize,omitempty"`
	Containers  int64             `json:"containers,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// ImageExists reports whether ref (a reference or an image ID) is present
// locally.
func (c *Client) ImageExists(ctx context.Context, ref string) (bool, error) {
	if _, err := reference.ParseAnyReference(ref); err != nil {
		return false, fmt.Errorf("inspect image: %w", invalidRef(ref, err))
	}
	_, err := c.api.ImageInspect(ctx, ref)
	if err == nil {
		return true, nil
	}
	err = classify(err)
	if errors.Is(err, errdefs.ErrNotFound) {
		return false, nil
	}
	return false, fmt.Errorf("inspect image %s: %w", ref, err)
}

// PullImage pulls ref (":latest" when it has no tag). progress receives every
// JSON message line of the daemon unchanged; an error inside the stream is
// returned. Cancelling ctx aborts the pull: the engine stops downloading
// when the connection closes.
func (c *Client) PullImage(ctx context.Context, ref string, auth *RegistryAuth, progress func(line []byte)) error {
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return fmt.Errorf("pull: %w", invalidRef(ref, err))
	}
	header, err := encodeAuth(auth)
	if err != nil {
		return fmt.Errorf("pull %s: encode registry auth: %w", ref, err)
	}
	c.log.Debug().Str("ref", ref).Msg("pull image")
	body, err := c.api.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: header})
	if err != nil {
		return wrapf(err, "pull %s", ref)
	}
	if err := readStream(ctx, body, progress, nil); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

// PushImage pushes the local tag ref, relaying progress like PullImage.
func (c *Client) PushImage(ctx context.Context, ref string, auth *RegistryAuth, progress func(line []byte)) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fmt.Errorf("push: %w", invalidRef(ref, err))
	}
	if _, ok := named.(reference.Canonical); ok {
		return fmt.Errorf("push %s: %w", ref, errdefs.InvalidArgument("cannot push a digest reference"))
	}
	header, err := encodeAuth(auth)
	if err != nil {
		return fmt.Errorf("push %s: encode registry auth: %w", ref, err)
	}
	c.log.Debug().Str("ref", ref).Msg("push image")
	body, err := c.api.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: header})
	if err != nil {
		return wrapf(err, "push %s", ref)
	}
	if err := readStream(ctx, body, progress, nil); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// TagImage gives the local image src the additional name dst.
func (c *Client) TagImage(ctx context.Context, src, dst string) error {
	if _, err := reference.ParseNormalizedNamed(dst); err != nil {
		return fmt.Errorf("tag %s: %w", src, invalidRef(dst, err))
	}
	if err := c.api.ImageTag(ctx, src, dst); err != nil {
		return wrapf(err, "tag %s as %s", src, dst)
	}
	return nil
}

// RemoveImage removes a tag or an image ID. A missing image is
// errdefs.ErrNotFound; an image used by a container without force is
// errdefs.ErrConflict.
func (c *Client) RemoveImage(ctx context.Context, ref string, force bool) error {
	if _, err := c.api.ImageRemove(ctx, ref, image.RemoveOptions{Force: force, PruneChildren: true}); err != nil {
		return wrapf(err, "remove image %s", ref)
	}
	return nil
}

// RemoveRepoImages force-removes every local tag of repo (a name without tag
// or digest, e.g. "registry:5000/apps/prod_amd64_1_demo") and returns the
// removed tags. Tags of other repositories on the same images stay.
func (c *Client) RemoveRepoImages(ctx context.Context, repo string) ([]string, error) {
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return nil, fmt.Errorf("remove images: %w", invalidRef(repo, err))
	}
	if !reference.IsNameOnly(named) {
		return nil, fmt.Errorf("remove images of %s: %w", repo, errdefs.InvalidArgument("%q has a tag or digest; want a repository name", repo))
	}
	imgs, err := c.api.ImageList(ctx, image.ListOptions{
		Filters: filters.NewArgs(filters.Arg("reference", reference.FamiliarName(named))),
	})
	if err != nil {
		return nil, wrapf(err, "list images of %s", repo)
	}
	var removed []string
	for _, img := range imgs {
		for _, tag := range img.RepoTags {
			t, err := reference.ParseNormalizedNamed(tag)
			if err != nil || t.Name() != named.Name() {
				continue // "<none>:<none>" or a tag of another repository
			}
			err = c.RemoveImage(ctx, tag, true)
			if errors.Is(err, errdefs.ErrNotFound) {
				continue // removed meanwhile: the goal is reached
			}
			if err != nil {
				return removed, err
			}
			removed = append(removed, tag)
		}
	}
	return removed, nil
}

// ListImages lists the top-level local images.
func (c *Client) ListImages(ctx context.Context) ([]Image, error) {
	imgs, err := c.api.ImageList(ctx, image.ListOptions{})
	if err != nil {
		return nil, wrapf(err, "list images")
	}
	out := make([]Image, 0, len(imgs))
	for _, s := range imgs {
		out = append(out, Image{
			ID:          s.ID,
			RepoTags:    s.RepoTags,
			Created:     s.Created,
			Size:        s.Size,
			SharedSize:  s.SharedSize,
			VirtualSize: s.VirtualSize, //nolint:staticcheck // API 1.41 engines still send it; the wire shape has it
			Containers:  s.Containers,
			Labels:      s.Labels,
		})
	}
	return out, nil
}
