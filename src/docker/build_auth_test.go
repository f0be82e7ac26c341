package docker

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"reagent/src/errdefs"
	"reagent/src/testimage"
)

// privateRegistry is a go-containerregistry registry on 127.0.0.1 that
// answers only requests carrying its basic-auth credentials, like the
// IronFlock registry or one of docker_credentials. It records which
// manifests were asked for by an authorised client.
type privateRegistry struct {
	host       string
	user, pass string

	mu     sync.Mutex // guards served
	served map[string]bool
}

func newPrivateRegistry(t *testing.T, user, pass string) *privateRegistry {
	t.Helper()
	p := &privateRegistry{user: user, pass: pass, served: map[string]bool{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, pw, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(p.user)) != 1 || subtle.ConstantTimeCompare([]byte(pw), []byte(p.pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="reagent-test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		if strings.Contains(r.URL.Path, "/manifests/") { // GET or HEAD: engines resolve a tag either way
			p.mu.Lock()
			p.served[r.URL.Path] = true
			p.mu.Unlock()
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// servedManifest tells whether an authorised client asked for the manifest
// of repo:tag.
func (p *privateRegistry) servedManifest(repo, tag string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.served["/v2/"+repo+"/manifests/"+tag]
}

// push writes a busybox image to repo:tag with the registry's credentials.
func (p *privateRegistry) push(t *testing.T, ctx context.Context, repo, tag string, opts testimage.Options) string {
	t.Helper()
	ref := p.host + "/" + repo + ":" + tag
	img, err := testimage.Busybox(opts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: p.user, Password: p.pass})); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	// The push itself asked for the manifest; only later requests count.
	p.mu.Lock()
	delete(p.served, "/v2/"+repo+"/manifests/"+tag)
	p.mu.Unlock()
	return ref
}

// TestBuildImageAuth: a Dockerfile whose FROM lives in a registry that
// requires credentials builds only when BuildOptions.Auth carries them for
// that registry's host.
func TestBuildImageAuth(t *testing.T) {
	e := newEnv(t)
	priv := newPrivateRegistry(t, "device-token", "device-secret")
	const repo = "reagent-test/private-base"

	// Anonymous access is refused, so whatever builds below got its base
	// image through the credentials.
	anon, err := name.ParseReference(priv.host+"/"+repo+":probe", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(anon, remote.WithContext(e.ctx(10*time.Second))); err == nil {
		t.Fatal("the private registry answered an anonymous request")
	}

	cases := []struct {
		name   string
		auth   map[string]RegistryAuth
		builds bool
	}{
		{"without credentials", nil, false},
		{"wrong password", map[string]RegistryAuth{priv.host: {Username: "device-token", Password: "wrong"}}, false},
		{"credentials of another registry only", map[string]RegistryAuth{e.registry: {Username: "device-token", Password: "device-secret"}}, false},
		{"credentials for the registry", map[string]RegistryAuth{
			e.registry: {Username: "other", Password: "other"},
			priv.host:  {Username: "device-token", Password: "device-secret", ServerAddress: priv.host},
		}, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.sub(t)
			// A base tag per case: the engine pulls a FROM image only when
			// it is not local yet, so no case may profit from another.
			tag := string(rune('a' + i))
			base := priv.push(t, e.ctx(30*time.Second), repo, tag, testimage.Options{
				Labels: e.labels(),
				Files:  map[string]string{"/base.txt": "private base " + tag},
			})
			removeLocalImageLater(e, base)
			built := e.ref("from-private", tag)
			ctxTar := buildContext(t, false, map[string]string{
				"Dockerfile": "FROM " + base + "\nRUN cp /base.txt /built.txt\n",
			})
			err := e.c.BuildImage(e.ctx(120*time.Second), ctxTar, BuildOptions{
				Tags:    []string{built},
				Labels:  e.labels(),
				NoCache: true,
				Auth:    c.auth,
			}, nil)
			if !c.builds {
				if err == nil {
					e.removeImageLater(built)
					t.Fatal("built without the registry's credentials")
				}
				if priv.servedManifest(repo, tag) {
					t.Fatalf("the registry served the base image, yet the build failed: %v", err)
				}
				if strings.Contains(err.Error(), "device-secret") {
					t.Fatalf("the error carries the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("build with credentials: %v", err)
			}
			e.removeImageLater(built)
			if !priv.servedManifest(repo, tag) {
				t.Fatal("the base image did not come from the private registry")
			}
			id := e.run(ContainerSpec{Name: e.name("from-private-" + tag), Image: built, Cmd: []string{"cat", "/built.txt"}})
			e.waitExited(id)
			if got := e.logs(id, LogsOptions{}); len(got) != 1 || got[0].Text != "private base "+tag {
				t.Fatalf("built image prints %+v", got)
			}
		})
	}
}

// removeLocalImageLater removes, when the test ends, the local image ref
// names if a build pulled it, by its ID.
func removeLocalImageLater(e *env, ref string) {
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		insp, err := e.c.api.ImageInspect(ctx, ref)
		if err != nil {
			if !errors.Is(classify(err), errdefs.ErrNotFound) {
				e.t.Errorf("cleanup: inspect %s: %v", ref, err)
			}
			return
		}
		if _, err := e.c.api.ImageRemove(ctx, insp.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !errors.Is(classify(err), errdefs.ErrNotFound) {
			e.t.Errorf("cleanup image %s: %v", insp.ID, err)
		}
	})
}
