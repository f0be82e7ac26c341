package agent

// Helpers of the DEV app integration tests (dev_*_test.go): a DEV app of a
// real agent against devcloud and this machine's engine, its source
// uploaded through write_data as the Studio does, a base image in
// devcloud's registry, and everything a build makes labelled with a nonce
// that the cleanup removes by.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	nx "github.com/gammazero/nexus/v3/wamp"

	"reagent/src/devcloud"
	"reagent/src/errdefs"
	"reagent/src/release"
	"reagent/src/testimage"
)

// chunkSize is what the Studio sends per write_data call.
const chunkSize = 64 << 10

// devEnv is an appsEnv with one DEV app.
type devEnv struct {
	*appsEnv
	key      uint64
	name     string // the app name, original case
	nonce    string
	base     string // FROM reference in devcloud's registry
	agentDir string
	buildDir string
}

func devStart(t *testing.T) *devEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("builds images on the engine")
	}
	e := appsStart(t, appsEnvOptions{})
	d := &devEnv{appsEnv: e, key: appKey(t), name: "DevApp", nonce: randomHex(t, 8)}
	d.agentDir = filepath.Join(e.agent.dir, "agent")
	d.buildDir = filepath.Join(d.agentDir, "apps", "build")
	d.base = e.cloud.RegistryHost() + "/apps/base:1"
	// The developer the requests are made for (requestor_account_key).
	e.cloud.AddUser(devcloud.User{AuthID: "9", Secret: "developer-secret", Privileges: devcloud.Privileges})
	// The nonce makes the base unique, so no build of an earlier run is a
	// cache hit.
	if err := testimage.PushBusybox(e.ctx, d.base, testimage.Options{Labels: map[string]string{testLabel: d.nonce},
		Files: map[string]string{"/etc/base-nonce": d.nonce}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cleanup(t) })
	return d
}

// cleanup stops the agent first (it would restart a RUNNING app whose
// container goes), then removes the device's containers, the registry's
// images and whatever the builds left, by the nonce label.
func (d *devEnv) cleanup(t *testing.T) {
	t.Helper()
	if err := d.agent.stop(); err != nil {
		t.Errorf("agent: %v", err)
	}
	removeDeviceContainers(t, d.dc, d.serial)
	for _, id := range d.nonceContainers(t) {
		if err := d.dc.RemoveContainer(d.ctx, id, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("remove build container %s: %v", id, err)
		}
	}
	removeRegistryImages(t, d.dc, d.cloud.RegistryHost())
	imgs, err := d.dc.ListImages(d.ctx)
	if err != nil {
		t.Errorf("list images: %v", err)
		return
	}
	for _, img := range imgs {
		if img.Labels[testLabel] == d.nonce {
			if err := d.dc.RemoveImage(d.ctx, img.ID, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("remove build image %s: %v", img.ID, err)
			}
		}
	}
}

// nonceContainers are the IDs of every container made from the test's
// base image: the builds' step containers and the app containers.
func (d *devEnv) nonceContainers(t *testing.T) []string {
	t.Helper()
	cts, err := d.dc.ListContainers(d.ctx, map[string]string{testLabel: d.nonce})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range cts {
		ids = append(ids, c.ID)
	}
	return ids
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// container is the DEV app's container and log name.
func (d *devEnv) container() string { return fmt.Sprintf("dev_%d_%s", d.key, strings.ToLower(d.name)) }

// pubLog is the publish stream's log name.
func (d *devEnv) pubLog() string { return fmt.Sprintf("pub_%d_%s", d.key, strings.ToLower(d.name)) }

// devImage is the DEV image the agent builds.
func (d *devEnv) devImage() string {
	return strings.ToLower(fmt.Sprintf("%s/apps/dev_%s_%d_%s", d.cloud.RegistryHost(), release.Arch(), d.key, d.name))
}

// requested is the cloud's record of the DEV app.
func (d *devEnv) requested(target string) devcloud.Requested {
	return devcloud.Requested{AppKey: d.key, AppName: d.name, Stage: "DEV", TargetState: target, RequestorAccountKey: 9}
}

func (d *devEnv) awaitDev(t *testing.T, state string) {
	t.Helper()
	if err := d.cloud.AwaitAppState(d.ctx, d.serial, d.key, "DEV", state); err != nil {
		t.Fatalf("%v; reports %v", err, d.states(d.key))
	}
}

// devReports are the DEV app's state reports.
func (d *devEnv) devReports() []devcloud.AppReport {
	var out []devcloud.AppReport
	for _, r := range d.reports(d.key) {
		if r.Stage == "DEV" {
			out = append(out, r)
		}
	}
	return out
}

func reportStates(rs []devcloud.AppReport) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.State
	}
	return out
}

// dockerfile is a source whose Dockerfile builds FROM the test's base.
func (d *devEnv) dockerfile(lines ...string) string {
	return "FROM " + d.base + "\n" + strings.Join(lines, "\n") + "\n"
}

// entry is one tar entry of a test archive.
type entry struct {
	name, body string
}

// tgz makes a gzip-compressed tar of the entries, in order, names as given
// (a hostile "../x" included).
func tgz(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg,
			ModTime: time.Unix(1700000000, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(tw.Close(), zw.Close()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeData calls write_data as system with the Studio's five arguments.
func (d *devEnv) writeData(chunk, fileName, container string, total int, id string) error {
	_, err := d.cloud.CallDevice(d.ctx, devcloud.SystemAuthID, d.serial, "write_data",
		nx.List{chunk, fileName, container, total, id}, nil)
	return err
}

// upload sends data as fileName for the app through write_data: BEGIN,
// hex chunks of 64 KiB, END. It returns how many data chunks went.
func (d *devEnv) upload(t *testing.T, fileName string, data []byte) int {
	t.Helper()
	id := fmt.Sprint(time.Now().UnixNano())
	if err := d.writeData("BEGIN", fileName, d.container(), len(data), id); err != nil {
		t.Fatalf("write_data BEGIN: %v", err)
	}
	n := 0
	for off := 0; off < len(data); off += chunkSize {
		end := min(off+chunkSize, len(data))
		if err := d.writeData(hex.EncodeToString(data[off:end]), fileName, d.container(), len(data), id); err != nil {
			t.Fatalf("write_data chunk %d: %v", n, err)
		}
		n++
	}
	if err := d.writeData("END", fileName, d.container(), len(data), id); err != nil {
		t.Fatalf("write_data END: %v", err)
	}
	return n
}

// source uploads the app's source, <name>.tgz.
func (d *devEnv) source(t *testing.T, entries ...entry) int {
	t.Helper()
	return d.upload(t, d.name+".tgz", tgz(t, entries...))
}

// buildDirFiles lists the build dir's entries.
func (d *devEnv) buildDirFiles(t *testing.T) []string {
	t.Helper()
	es, err := os.ReadDir(d.buildDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// filesOutsideBuildDir lists every path under the test's directory except
// the build dir's contents.
func (d *devEnv) filesOutsideBuildDir(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(d.agent.dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == d.buildDir {
			return fs.SkipDir
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// topicLog collects what a subscriber of an app log topic receives:
// container and build output lines as they are, agent messages as
// "chunk: <text>", transfer progress as "progress: <pct>".
type topicLog struct {
	mu    sync.Mutex
	lines []string
}

func (d *devEnv) subscribe(t *testing.T, name string) *topicLog {
	t.Helper()
	cl, err := d.cloud.Session(d.ctx, devcloud.SystemAuthID)
	if err != nil {
		t.Fatal(err)
	}
	tl := &topicLog{}
	err = cl.Subscribe(devcloud.LogTopic(d.serial, name), func(ev *nx.Event) {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		for _, v := range ev.Arguments {
			switch x := v.(type) {
			case string:
				tl.lines = append(tl.lines, strings.Split(x, "\n")...)
			case map[string]any:
				if c, ok := x["chunk"].(string); ok {
					tl.lines = append(tl.lines, "chunk: "+c)
				} else if p, ok := x["progress"].(string); ok {
					tl.lines = append(tl.lines, "progress: "+p)
				}
			}
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

// awaitLive waits until the agent publishes to tl's subscriber: the log
// relay learns of subscriptions asynchronously. It probes with uploads of
// probe.bin, each superseding the last (and the next real upload
// supersedes the probe), until the subscriber sees one's first message.
func (d *devEnv) awaitLive(t *testing.T, tl *topicLog) {
	t.Helper()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for i := 0; !tl.has("chunk: " + transferFirstPackage); i++ {
		if err := d.writeData("BEGIN", "probe.bin", d.container(), 1, fmt.Sprint("probe-", i)); err != nil {
			t.Fatalf("probe upload: %v", err)
		}
		select {
		case <-d.ctx.Done():
			t.Fatal("the subscriber never got a message")
		case <-tick.C:
		}
	}
}

// transferFirstPackage is the agent's message at BEGIN.
const transferFirstPackage = "Received first package on device!"

func (tl *topicLog) all() []string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Clone(tl.lines)
}

func (tl *topicLog) has(substr string) bool { return containsLine(tl.all(), substr) }

func (tl *topicLog) count(substr string) int {
	n := 0
	for _, l := range tl.all() {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// imageLabels are the labels of a local image, nil when there is none.
func (d *devEnv) imageLabels(t *testing.T, ref string) map[string]string {
	t.Helper()
	imgs, err := d.dc.ListImages(d.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if slices.Contains(img.RepoTags, ref) {
			return img.Labels
		}
	}
	return nil
}
