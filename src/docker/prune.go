package docker

import (
	"context"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
)

// PruneReport says what a prune removed.
type PruneReport struct {
	ImagesDeleted       []string // IDs of deleted images
	ImagesUntagged      []string // references that were untagged
	SpaceReclaimed      uint64   // bytes, images
	BuildCacheReclaimed uint64   // bytes, build cache (all=true only)
}

// PruneImages removes dangling images (all=false), or every image no
// container uses plus the whole build cache (all=true). Volumes are never
// touched: they hold user data.
func (c *Client) PruneImages(ctx context.Context, all bool) (PruneReport, error) {
	return c.pruneImages(ctx, all, pruneScope{})
}

// pruneScope narrows a prune. Production passes the zero value; tests on a
// shared engine narrow it to what they created.
type pruneScope struct {
	imageFilters filters.Args // extra image filters, e.g. label=…
	cacheFilters filters.Args // build cache filters, e.g. id=…
}

func (c *Client) pruneImages(ctx context.Context, all bool, scope pruneScope) (PruneReport, error) {
	f := filters.NewArgs()
	for _, k := range scope.imageFilters.Keys() {
		for _, v := range scope.imageFilters.Get(k) {
			f.Add(k, v)
		}
	}
	if all {
		f.Add("dangling", "false")
	} else {
		f.Add("dangling", "true")
	}
	rep, err := c.api.ImagesPrune(ctx, f)
	if err != nil {
		return PruneReport{}, wrapf(err, "prune images")
	}
	out := PruneReport{SpaceReclaimed: rep.SpaceReclaimed}
	for _, d := range rep.ImagesDeleted {
		if d.Deleted != "" {
			out.ImagesDeleted = append(out.ImagesDeleted, d.Deleted)
		}
		if d.Untagged != "" {
			out.ImagesUntagged = append(out.ImagesUntagged, d.Untagged)
		}
	}
	if all {
		cache, err := c.api.BuildCachePrune(ctx, build.CachePruneOptions{All: true, Filters: scope.cacheFilters})
		if err != nil {
			return out, wrapf(err, "prune build cache")
		}
		out.BuildCacheReclaimed = cache.SpaceReclaimed
	}
	c.log.Info().Bool("all", all).Int("images", len(out.ImagesDeleted)).
		Uint64("bytes", out.SpaceReclaimed+out.BuildCacheReclaimed).Msg("pruned images")
	return out, nil
}
