package docker

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"reagent/src/errdefs"
	"reagent/src/testimage"
)

func TestPing(t *testing.T) {
	e := newEnv(t)
	info, err := e.c.Ping(e.ctx(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.APIVersion == "" || info.ServerVersion == "" || info.OS != "linux" || info.Arch != runtime.GOARCH || info.DataRoot == "" {
		t.Fatalf("engine info %+v", info)
	}
}

func TestPullImage(t *testing.T) {
	e := newEnv(t)
	ref := e.ref("pull", "1.0")
	// A layer of its own, so the engine really downloads something.
	e.push(ref, testimage.Options{Cmd: []string{"true"}, Files: map[string]string{"/id": e.label}})

	var lines [][]byte
	err := e.c.PullImage(e.ctx(60*time.Second), ref, &RegistryAuth{Username: "u", Password: "p", ServerAddress: e.registry},
		func(line []byte) { lines = append(lines, line) })
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[string]bool{}
	for _, l := range lines {
		var m struct{ Status string }
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("progress line is not the daemon's JSON: %q", l)
		}
		statuses[strings.SplitN(m.Status, " ", 2)[0]] = true
	}
	if !statuses["Pulling"] || !statuses["Download"] && !statuses["Downloading"] || !statuses["Status:"] {
		t.Fatalf("progress statuses %v", statuses)
	}
	id := e.removeImageLater(ref)
	for _, query := range []string{ref, id, strings.TrimPrefix(id, "sha256:")} {
		ok, err := e.c.ImageExists(e.ctx(10*time.Second), query)
		if err != nil || !ok {
			t.Fatalf("exists %s after pull: %v %v", query, ok, err)
		}
	}
	if _, err := e.c.ImageExists(e.ctx(10*time.Second), "Bad:Ref:x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("exists with a bad reference: %v", err)
	}

	cases := []struct {
		name  string
		ref   string
		class error
	}{
		{"missing tag", e.ref("pull", "nope"), errdefs.ErrNotFound},
		{"missing repository", e.ref("never-pushed", "1"), errdefs.ErrNotFound},
		{"bad reference", "UPPER/Case:x", errdefs.ErrInvalidArgument},
		{"registry down", "127.0.0.1:1/x/y:1", errdefs.ErrUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			err := e.c.PullImage(e.ctx(60*time.Second), c.ref, nil, nil)
			if !errors.Is(err, c.class) {
				t.Fatalf("pull %s: %v, want %v", c.ref, err, c.class)
			}
			if ok, err := e.c.ImageExists(e.ctx(10*time.Second), c.ref); ok {
				t.Fatalf("image %s exists (%v)", c.ref, err)
			}
		})
	}
}

// Cancelling the context aborts the pull: PullImage returns, and the engine
// drops its download from the registry.
func TestPullImageCancel(t *testing.T) {
	e := newEnv(t)
	ref := e.ref("slow", "1")
	e.push(ref, testimage.Options{Files: map[string]string{"/id": e.label}})
	e.reg.stallBlobs.Store(true)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- e.c.PullImage(ctx, ref, nil, nil) }()
	select {
	case <-e.reg.blobStarted:
	case err := <-errc:
		t.Fatalf("pull ended before downloading: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("engine never asked for a blob")
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("pull: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("PullImage did not return after cancel")
	}
	select {
	case <-e.reg.blobAborted:
	case <-time.After(30 * time.Second):
		t.Fatal("engine kept downloading after the pull was cancelled")
	}
	if ok, _ := e.c.ImageExists(e.ctx(10*time.Second), ref); ok {
		e.removeImageLater(ref)
		t.Fatal("image present after a cancelled pull")
	}
}

func TestTagPushAndRemoveRepo(t *testing.T) {
	e := newEnv(t)
	src := e.image("src", testimage.Options{Cmd: []string{"true"}})
	repo := e.registry + "/reagent-test/pushed"
	tags := []string{repo + ":1.0", repo + ":2.0"}
	for _, tag := range tags {
		if err := e.c.TagImage(e.ctx(10*time.Second), src, tag); err != nil {
			t.Fatal(err)
		}
	}
	var lines int
	for _, tag := range tags {
		err := e.c.PushImage(e.ctx(60*time.Second), tag, &RegistryAuth{Username: "token", Password: "secret"}, func([]byte) { lines++ })
		if err != nil {
			t.Fatal(err)
		}
		r, _ := name.ParseReference(tag, name.Insecure)
		if _, err := remote.Get(r, remote.WithContext(e.ctx(10*time.Second))); err != nil {
			t.Fatalf("%s not in the registry after push: %v", tag, err)
		}
	}
	if lines == 0 {
		t.Fatal("no push progress")
	}

	removed, err := e.c.RemoveRepoImages(e.ctx(30*time.Second), repo)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if strings.Join(removed, ",") != strings.Join(tags, ",") {
		t.Fatalf("removed %v, want %v", removed, tags)
	}
	for _, tag := range tags {
		if ok, _ := e.c.ImageExists(e.ctx(10*time.Second), tag); ok {
			t.Fatalf("%s still present", tag)
		}
	}
	if ok, _ := e.c.ImageExists(e.ctx(10*time.Second), src); !ok {
		t.Fatal("the tag of another repository was removed too")
	}
	if again, err := e.c.RemoveRepoImages(e.ctx(30*time.Second), repo); err != nil || len(again) != 0 {
		t.Fatalf("second removal: %v %v", again, err)
	}

	errCases := []struct {
		name  string
		err   error
		class error
	}{
		{"push missing tag", e.c.PushImage(e.ctx(30*time.Second), repo+":3.0", nil, nil), errdefs.ErrNotFound},
		{"tag missing source", e.c.TagImage(e.ctx(10*time.Second), repo+":nope", repo+":x"), errdefs.ErrNotFound},
		{"tag bad target", e.c.TagImage(e.ctx(10*time.Second), src, "Bad:Ref:x"), errdefs.ErrInvalidArgument},
		{"remove missing image", e.c.RemoveImage(e.ctx(10*time.Second), repo+":1.0", false), errdefs.ErrNotFound},
		{"remove repo with tag", errOf(e.c.RemoveRepoImages(e.ctx(10*time.Second), repo+":1.0")), errdefs.ErrInvalidArgument},
	}
	for _, c := range errCases {
		if !errors.Is(c.err, c.class) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.class)
		}
	}
}

func errOf[T any](_ T, err error) error { return err }

func TestRemoveImageInUse(t *testing.T) {
	e := newEnv(t)
	ref := e.image("inuse", testimage.Options{Cmd: []string{"sleep", "60"}})
	e.create(ContainerSpec{Name: e.name("user"), Image: ref})
	if err := e.c.RemoveImage(e.ctx(10*time.Second), ref, false); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("remove image used by a container: %v", err)
	}
}

func TestListImages(t *testing.T) {
	e := newEnv(t)
	ref := e.image("listed", testimage.Options{Labels: map[string]string{"extra": "yes"}})
	imgs, err := e.c.ListImages(e.ctx(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var found *Image
	for i := range imgs {
		if slices.Contains(imgs[i].RepoTags, ref) {
			found = &imgs[i]
		}
	}
	if found == nil {
		t.Fatalf("%s not listed", ref)
	}
	if !strings.HasPrefix(found.ID, "sha256:") || found.Size <= 0 || found.Created == 0 || found.Labels["extra"] != "yes" || found.Labels[testLabel] != e.label {
		t.Fatalf("image %+v", *found)
	}
	b, _ := json.Marshal(found)
	var keys map[string]any
	_ = json.Unmarshal(b, &keys)
	for _, k := range []string{"id", "repoTags", "created", "size", "labels"} {
		if _, ok := keys[k]; !ok {
			t.Fatalf("wire key %s missing in %s", k, b)
		}
	}
}
