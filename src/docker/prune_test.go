package docker

import (
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"reagent/src/testimage"
)

// The engine is shared with other test runs, so the prunes here are scoped
// to this test's label (and to no build cache entry); the production entry
// point PruneImages is the same code with an empty scope.
func TestPruneImages(t *testing.T) {
	e := newEnv(t)
	base := e.image("prunebase", testimage.Options{})

	vol, err := e.c.api.VolumeCreate(e.ctx(10*time.Second), volume.CreateOptions{Name: "reagent-test-" + runID, Labels: e.labels()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.api.VolumeRemove(e.ctx(10*time.Second), vol.Name, true) })

	// Building one tag twice leaves the first image dangling.
	tag := e.ref("pruned", "1")
	build := func(content string) string {
		t.Helper()
		err := e.c.BuildImage(e.ctx(120*time.Second), buildContext(t, false, map[string]string{
			"Dockerfile": "FROM " + base + "\nCOPY f /f\n", "f": content,
		}), BuildOptions{Tags: []string{tag}, Labels: e.labels()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return e.removeImageLater(tag)
	}
	firstID := build("one")
	secondID := build("two")
	if firstID == secondID {
		t.Fatal("the second build did not make a new image")
	}

	scope := pruneScope{
		imageFilters: filters.NewArgs(filters.Arg("label", testLabel+"="+e.label)),
		cacheFilters: filters.NewArgs(filters.Arg("id", "reagent-test-none-"+runID)),
	}
	rep, err := e.c.pruneImages(e.ctx(60*time.Second), false, scope)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.ImagesDeleted, firstID) || slices.Contains(rep.ImagesDeleted, secondID) || rep.BuildCacheReclaimed != 0 {
		t.Fatalf("dangling prune %+v (first %s, second %s)", rep, firstID, secondID)
	}
	if ok, _ := e.c.ImageExists(e.ctx(10*time.Second), tag); !ok {
		t.Fatal("dangling prune removed a tagged image")
	}

	// all=true: unused tagged images go too; an image a container uses stays.
	user := e.image("pruneinuse", testimage.Options{Cmd: []string{"true"}})
	e.create(ContainerSpec{Name: e.name("user"), Image: user})
	rep, err = e.c.pruneImages(e.ctx(60*time.Second), true, scope)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.ImagesDeleted, secondID) || !slices.Contains(rep.ImagesUntagged, tag) || rep.SpaceReclaimed == 0 {
		t.Fatalf("full prune %+v", rep)
	}
	for ref, want := range map[string]bool{tag: false, base: false, user: true} {
		if ok, _ := e.c.ImageExists(e.ctx(10*time.Second), ref); ok != want {
			t.Fatalf("after full prune %s exists=%v, want %v", ref, ok, want)
		}
	}
	if _, err := e.c.api.VolumeInspect(e.ctx(10*time.Second), vol.Name); err != nil {
		t.Fatalf("prune touched a volume: %v", err)
	}
}
