package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// labelDevice is the label the agent puts on every container it creates,
// with its device's serial (apps.LabelDevice; spelled out so the bench does
// not depend on the reconciler's package).
const labelDevice = "io.ironflock.device"

// cleanup removes everything the run created, in reverse: the agent
// process, the containers of this run's device (by its label) and of the
// baseline (by the run's label), the images in this run's registry (by
// reference: the registry's port is this run's), devcloud, the temp dir.
// It runs on a fresh context: an interrupt must not skip it.
func (b *bench) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	if b.agent != nil {
		if err := b.agent.stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if b.dc != nil {
		if b.serial != "" {
			errs = append(errs, b.removeContainers(ctx, labelDevice+"="+b.serial))
		}
		if b.runID != "" {
			errs = append(errs, b.removeContainers(ctx, labelBench+"="+b.runID))
		}
		if b.cloud != nil {
			errs = append(errs, b.removeImages(ctx, b.cloud.RegistryHost()+"/"))
		}
	}
	if b.cloud != nil {
		errs = append(errs, b.cloud.Close())
	}
	if b.devLog != nil {
		b.devLog.Close()
	}
	if b.dc != nil {
		errs = append(errs, b.dc.Close())
	}
	if b.tmp != "" {
		if b.cfg.keep {
			b.logf("kept %s (agent.out, reagent.log, devcloud.log, devcloud/)", b.tmp)
		} else if err := os.RemoveAll(b.tmp); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *bench) removeContainers(ctx context.Context, label string) error {
	cts, err := b.dc.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		return fmt.Errorf("list containers %s: %w", label, err)
	}
	var errs []error
	for _, c := range cts {
		if err := b.dc.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !client.IsErrNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID[:12], err))
		}
	}
	return errors.Join(errs...)
}

// removeImages removes every tag under prefix. Not forced: an image some
// other container still uses stays (it cannot be one of this run's).
func (b *bench) removeImages(ctx context.Context, prefix string) error {
	imgs, err := b.dc.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	var errs []error
	for _, img := range imgs {
		for _, tag := range img.RepoTags {
			if !strings.HasPrefix(tag, prefix) {
				continue
			}
			if _, err := b.dc.ImageRemove(ctx, tag, image.RemoveOptions{PruneChildren: true}); err != nil && !client.IsErrNotFound(err) {
				errs = append(errs, fmt.Errorf("remove image %s: %w", tag, err))
			}
		}
	}
	return errors.Join(errs...)
}
