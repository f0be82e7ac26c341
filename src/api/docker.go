package api

import (
	"context"
	"time"

	"reagent/src/errdefs"
	"reagent/src/wamp"
)

// Bounds of the engine calls. Listing is quick (the reference allowed
// 2 s; slow SD cards need more); a prune of a full build cache is not.
const (
	dockerListTimeout  = 15 * time.Second
	dockerPruneTimeout = 5 * time.Minute
)

func (h *handlers) engine() (DockerAPI, error) {
	if h.d.Docker == nil {
		return nil, errdefs.Unavailable("the docker engine is not available")
	}
	return h.d.Docker, nil
}

// list_containers wraps the engine's container summaries once:
// `[[{"Id": …, "Names": […], "Image": …, "State": …, …}, …]]`, every
// container on the host (the reference's shape).
func (h *handlers) listContainers(ctx context.Context, _ *wamp.Call) (wamp.Result, error) {
	e, err := h.engine()
	if err != nil {
		return wamp.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, dockerListTimeout)
	defer cancel()
	list, err := e.ListContainersRaw(ctx)
	if err != nil {
		return wamp.Result{}, err
	}
	if list == nil {
		list = []map[string]any{} // [[]], not [null]
	}
	return args(list), nil
}

// Image is one entry of get_images (the reference's tags, all omitempty).
//
//	{"created": 1700000000, "containers": 1, "sharedSize": 0, "virtualSize": 4400000,
//	 "id": "sha256:…", "labels": {"a": "b"}, "size": 4400000, "repoTags": ["localhost:5001/apps/x:1"]}
type Image struct {
	Created     int64             `json:"created,omitempty"`
	Containers  int64             `json:"containers,omitempty"`
	SharedSize  int64             `json:"sharedSize,omitempty"`
	VirtualSize int64             `json:"virtualSize,omitempty"`
	ID          string            `json:"id,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Size        int64             `json:"size,omitempty"`
	RepoTags    []string          `json:"repoTags,omitempty"`
}

// get_images spreads the images across the positional args (the
// reference's shape): `[Image, Image, …]`.
func (h *handlers) getImages(ctx context.Context, _ *wamp.Call) (wamp.Result, error) {
	e, err := h.engine()
	if err != nil {
		return wamp.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, dockerListTimeout)
	defer cancel()
	imgs, err := e.ListImages(ctx)
	if err != nil {
		return wamp.Result{}, err
	}
	out := make([]any, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, Image{
			Created: i.Created, Containers: i.Containers, SharedSize: i.SharedSize, VirtualSize: i.VirtualSize,
			ID: i.ID, Labels: i.Labels, Size: i.Size, RepoTags: i.RepoTags,
		})
	}
	return wamp.Result{Args: out}, nil
}

// PruneResult is the answer of prune_images, `[PruneResult]`. The
// reference answered the text output of `docker system prune -af
// --volumes` for all:true (and nothing otherwise); we prune through the
// engine API, never volumes, and answer what was reclaimed, structured.
//
//	{"imagesDeleted": ["sha256:…"], "imagesUntagged": ["x:1"], "spaceReclaimed": 4400000,
//	 "buildCacheReclaimed": 0}
type PruneResult struct {
	ImagesDeleted       []string `json:"imagesDeleted"`
	ImagesUntagged      []string `json:"imagesUntagged"`
	SpaceReclaimed      uint64   `json:"spaceReclaimed"`
	BuildCacheReclaimed uint64   `json:"buildCacheReclaimed"`
}

// prune_images takes an optional `{all?: bool}`: all removes every image
// no container uses and the build cache; otherwise dangling images only.
func (h *handlers) pruneImages(ctx context.Context, c *wamp.Call) (wamp.Result, error) {
	all, err := decodePruneImages(c)
	if err != nil {
		return wamp.Result{}, err
	}
	e, err := h.engine()
	if err != nil {
		return wamp.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, dockerPruneTimeout)
	defer cancel()
	h.log.Info().Bool("all", all).Str("caller", c.Caller).Msg("prune images")
	rep, err := e.PruneImages(ctx, all)
	if err != nil {
		return wamp.Result{}, err
	}
	return args(PruneResult{
		ImagesDeleted:       nonNil(rep.ImagesDeleted),
		ImagesUntagged:      nonNil(rep.ImagesUntagged),
		SpaceReclaimed:      rep.SpaceReclaimed,
		BuildCacheReclaimed: rep.BuildCacheReclaimed,
	}), nil
}

// decodePruneImages reads the optional `{all?: bool}` (no args and [null]
// are accepted: the reference panicked on them).
func decodePruneImages(c *wamp.Call) (all bool, err error) {
	d, err := c.OptDict(0)
	if err != nil {
		return false, err
	}
	if v, ok := d["all"]; ok && v != nil {
		b, isBool := v.(bool)
		if !isBool {
			return false, errdefs.InvalidArgument("all value for container prune is not a boolean")
		}
		all = b
	}
	return all, nil
}

// nonNil makes an empty list go out as [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
