package agent

// Helpers of the api integration tests (api_integration_test.go): an
// agent with an observable power runner, a Docker engine scoped for
// pruning, images and a container made for the test, and a comparison of
// answers with the JSON fixtures of src/api/testdata.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/devcloud"
	"reagent/src/docker"
	"reagent/src/testimage"
)

// apiDockerProxy serves the engine API on a socket of its own and points
// DOCKER_HOST (so the agent's client) at it. Everything passes through to
// the real engine, except that prunes are narrowed to images labelled
// io.ironflock.test=<label> and to no build cache at all, and container,
// volume and network prunes are refused: the agent prunes for real, but
// never another test's images on this shared engine. It returns the prune
// paths the agent requested.
func apiDockerProxy(t *testing.T, label string) (prunes func() []string) {
	t.Helper()
	engine := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		engine = strings.TrimPrefix(h, "unix://")
	} else if h != "" {
		t.Skipf("DOCKER_HOST %s is not a unix socket", h)
	}
	dir, err := os.MkdirTemp("", "apidk") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "d.sock"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", "docker"
			switch {
			case strings.HasSuffix(r.Out.URL.Path, "/images/prune"):
				apiAddFilter(t, r.Out.URL, "label", testLabel+"="+label)
			case strings.HasSuffix(r.Out.URL.Path, "/build/prune"):
				apiAddFilter(t, r.Out.URL, "id", "no-such-cache-record-"+label)
			}
		},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", engine)
		}},
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/prune") {
			mu.Lock()
			seen = append(seen, r.URL.Path[strings.LastIndex(r.URL.Path[:len(r.URL.Path)-len("/prune")], "/"):])
			mu.Unlock()
			if !strings.HasSuffix(r.URL.Path, "/images/prune") && !strings.HasSuffix(r.URL.Path, "/build/prune") {
				http.Error(w, `{"message":"refused by the test proxy"}`, http.StatusForbidden)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	t.Setenv("DOCKER_HOST", "unix://"+ln.Addr().String())
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// apiAddFilter adds key=value to the engine's `filters` query parameter
// (either of its JSON forms).
func apiAddFilter(t *testing.T, u *url.URL, key, value string) {
	q := u.Query()
	f := map[string]map[string]bool{}
	if raw := q.Get("filters"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			var old map[string][]string
			if err := json.Unmarshal([]byte(raw), &old); err != nil {
				t.Errorf("unreadable prune filters %q", raw)
				return
			}
			for k, vs := range old {
				f[k] = map[string]bool{}
				for _, v := range vs {
					f[k][v] = true
				}
			}
		}
	}
	if f[key] == nil {
		f[key] = map[string]bool{}
	}
	f[key][value] = true
	b, _ := json.Marshal(f)
	q.Set("filters", string(b))
	u.RawQuery = q.Encode()
}

// apiEnv is a connected agent with an engine scoped for pruning and the
// things the tests made on it.
type apiEnv struct {
	cloud    *devcloud.Cloud
	agent    *testAgent
	serial   string
	runner   *recRunner
	prunes   func() []string
	dc       *docker.Client // straight to the engine, not through the proxy
	label    string
	imageRef string // tagged, used by container
	oldID    string // the image ref pointed at before: dangling, labelled
	contID   string
	contName string
}

func apiSetup(t *testing.T, withImages bool) *apiEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Docker engine")
	}
	e := &apiEnv{label: "api-" + strings.ReplaceAll(t.Name(), "/", ".") + "-" + randomHex(t, 4),
		runner: &recRunner{}}
	e.dc = engineClient(t)
	e.cloud = startCloud(t)
	if withImages {
		e.makeImages(t)
	}
	e.prunes = apiDockerProxy(t, e.label)
	e.agent = startAgent(t, e.cloud, agentOptions{runner: e.runner})
	e.serial = e.agent.flock.SerialNumber
	if err := e.cloud.AwaitDeviceStatus(deadline(t, 30*time.Second), e.serial, "CONNECTED"); err != nil {
		t.Fatal(err)
	}
	return e
}

// makeImages pulls two versions of one labelled image under the same tag,
// so the first becomes dangling, and creates (without starting) a
// container of the second. Everything is removed by ID at the end.
func (e *apiEnv) makeImages(t *testing.T) {
	t.Helper()
	ctx := deadline(t, 2*time.Minute)
	labels := map[string]string{testLabel: e.label}
	var ids []string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if e.contID != "" {
			_ = e.dc.RemoveContainer(ctx, e.contID, true)
		}
		for _, id := range ids {
			_ = e.dc.RemoveImage(ctx, id, true)
		}
	})
	for i, content := range []string{"old", "new"} {
		ref, err := e.cloud.PushBusybox(ctx, 4, "apitest", "1.0.0",
			testimage.Options{Labels: labels, Files: map[string]string{"/version": content + e.label}})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.dc.PullImage(ctx, ref, nil, nil); err != nil {
			t.Fatal(err)
		}
		id := e.imageID(t, ctx, ref)
		ids = append(ids, id)
		if i == 0 {
			e.oldID = id
		}
		e.imageRef = ref
	}
	e.contName = strings.ToLower(e.label)
	id, err := e.dc.CreateContainer(ctx, docker.ContainerSpec{Name: e.contName, Image: e.imageRef, Cmd: []string{"true"}, Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	e.contID = id
}

func (e *apiEnv) imageID(t *testing.T, ctx context.Context, ref string) string {
	t.Helper()
	imgs, err := e.dc.ListImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range imgs {
		if slices.Contains(i.RepoTags, ref) {
			return i.ID
		}
	}
	t.Fatalf("pulled %s but the engine does not list it", ref)
	return ""
}

func (e *apiEnv) imageExists(t *testing.T, id string) bool {
	t.Helper()
	imgs, err := e.dc.ListImages(deadline(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(imgs, func(i docker.Image) bool { return i.ID == id })
}

func (e *apiEnv) call(t *testing.T, proc string, args nx.List, kwargs nx.Dict) *nx.Result {
	t.Helper()
	return callOK(t, deadline(t, 30*time.Second), e.cloud, "system", e.serial, proc, args, kwargs)
}

// apiGeneric is v as encoding/json sees it, numbers as json.Number.
func apiGeneric(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// apiFixture reads src/api/testdata/<name>: {"args": […], "kwargs": {…}}.
func apiFixture(t *testing.T, name string) (args []any, kwargs map[string]any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "api", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Args   []any          `json:"args"`
		Kwargs map[string]any `json:"kwargs"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f.Args, f.Kwargs
}

// How apiShape compares the keys of two objects.
type apiKeys int

const (
	apiExact    apiKeys = iota // the same keys
	apiSubset                  // got's keys are among want's (omitempty fields)
	apiSuperset                // got has want's keys and maybe more (the engine's own JSON)
)

// apiFreeForm are objects whose keys are data, not schema (labels,
// network names): only their kind is compared.
var apiFreeForm = map[string]bool{"Labels": true, "labels": true, "Networks": true}

// apiShape checks that got has the JSON shape of want: keys compared as
// mode says, each holding a value of the same JSON kind, recursively;
// lists are compared by their first elements.
func apiShape(t *testing.T, where string, got, want any, mode apiKeys) {
	t.Helper()
	got, want = apiGeneric(t, got), apiGeneric(t, want)
	var walk func(path string, g, w any)
	walk = func(path string, g, w any) {
		if fmt.Sprintf("%T", g) != fmt.Sprintf("%T", w) {
			t.Errorf("%s%s: %T %v, want a %T like %v", where, path, g, g, w, w)
			return
		}
		if apiFreeForm[path[strings.LastIndex(path, ".")+1:]] {
			return
		}
		switch wv := w.(type) {
		case map[string]any:
			gv := g.(map[string]any)
			if mode != apiSuperset {
				for k := range gv {
					if _, ok := wv[k]; !ok {
						t.Errorf("%s%s: unexpected key %q", where, path, k)
					}
				}
			}
			for k, x := range wv {
				y, ok := gv[k]
				if !ok {
					if mode != apiSubset {
						t.Errorf("%s%s: key %q missing", where, path, k)
					}
					continue
				}
				walk(path+"."+k, y, x)
			}
		case []any:
			gv := g.([]any)
			if len(gv) > 0 && len(wv) > 0 {
				walk(path+"[0]", gv[0], wv[0])
			}
		}
	}
	walk("", got, want)
}
