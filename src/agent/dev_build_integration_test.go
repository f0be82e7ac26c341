package agent

// Integration tests of DEV apps (issue #7): the source uploaded through
// write_data, built on the device by the engine, run, published to
// devcloud's registry and installed from there as a PROD app — through the
// real agent, devcloud and this machine's Docker engine.

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	nx "github.com/gammazero/nexus/v3/wamp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"reagent/src/apps"
	"reagent/src/devcloud"
)

// runScript is the DEV app's command: it says which source it came from,
// then idles until SIGTERM.
const runScript = `trap 'exit 0' TERM; echo "dev app running $(cat /version)"; while true; do sleep 1; done`

// An upload in 64 KiB chunks, BUILT, RUNNING, PUBLISHED 1.2.3, and the
// published release installed and run as the PROD app.
func TestDevBuildRunPublish(t *testing.T) {
	d := devStart(t)
	payload := make([]byte, 200<<10) // incompressible: the upload takes several chunks
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	archive := tgz(t,
		entry{"Dockerfile", d.dockerfile(`RUN echo "compiling `+d.nonce+`" && echo "linking done"`,
			"COPY version /version", "COPY payload.bin /payload.bin", "COPY run.sh /run.sh", `CMD ["sh", "/run.sh"]`)},
		entry{"version", "v1"}, entry{"payload.bin", string(payload)}, entry{"run.sh", runScript})

	devLog := d.subscribe(t, d.container())
	d.awaitLive(t, devLog)
	if n := d.upload(t, d.name+".tgz", archive); n < 3 {
		t.Fatalf("the upload took %d chunks; the test wants several", n)
	}
	got, err := os.ReadFile(filepath.Join(d.buildDir, d.name+".tgz"))
	if err != nil || !bytes.Equal(got, archive) {
		t.Fatalf("uploaded file differs from the archive (%d of %d bytes): %v", len(got), len(archive), err)
	}
	if files := d.buildDirFiles(t); !slices.Equal(files, []string{d.name + ".tgz"}) {
		t.Fatalf("build dir holds %v", files)
	}

	d.request(t, d.requested("BUILT"), nil)
	d.awaitDev(t, "PRESENT")
	if got := reportStates(d.devReports()); !slices.Equal(got, []string{"REMOVED", "BUILDING", "BUILT", "PRESENT"}) {
		t.Fatalf("build reported %v", got)
	}
	d.awaitCond(t, "the build's output on the dev topic", func() bool {
		return devLog.has(`"stream":"Step 1/`) && devLog.has("compiling "+d.nonce) && devLog.has("chunk: Image built successfully")
	})
	for _, want := range []string{"chunk: Starting image build...", "progress: 100.000%"} {
		if !devLog.has(want) {
			t.Fatalf("dev topic lacks %q: %v", want, devLog.all())
		}
	}
	if !d.imageExists(t, d.devImage()) {
		t.Fatalf("no DEV image %s", d.devImage())
	}
	if l := d.imageLabels(t, d.devImage()+":latest"); l[apps.LabelAppKey] != fmt.Sprint(d.key) || l[apps.LabelStage] != "DEV" {
		t.Fatalf("DEV image labels %v", l)
	}

	d.request(t, d.requested("RUNNING"), nil)
	d.awaitDev(t, "RUNNING")
	cts := d.containers(t, d.key)
	if len(cts) != 1 || cts[0].Name != d.container() || !cts[0].State.Running || cts[0].Image != d.devImage() || !cts[0].Tty {
		t.Fatalf("containers %+v", cts)
	}
	d.awaitCond(t, "the DEV app's output", func() bool { return containsLine(d.appLog(t, d.container()), "dev app running v1") })
	for _, v := range []string{"ENV=DEV", "APP_NAME=DevApp", fmt.Sprintf("APP_KEY=%d", d.key), "DEVICE_SERIAL_NUMBER=" + d.serial} {
		if !slices.Contains(cts[0].Env, v) {
			t.Fatalf("DEV environment lacks %s: %v", v, cts[0].Env)
		}
	}

	// Publish: the running DEV app is stopped, the release built and pushed.
	pubLog := d.subscribe(t, d.pubLog())
	before := len(d.devReports())
	// The relay learns of this subscription asynchronously: the subscriber
	// is checked for what comes after the release build, the history for
	// everything.
	d.request(t, d.requested("PUBLISHED"), nx.Dict{"version": "1.2.3"})
	d.awaitDev(t, "PUBLISHED")
	var states []string
	var release []bool
	for _, r := range d.devReports()[before:] {
		states = append(states, r.State)
		rb, _ := r.Payload["release_build"].(bool)
		release = append(release, rb)
	}
	if want := []string{"STOPPING", "PRESENT", "REMOVED", "BUILDING", "BUILT", "PUBLISHING", "PUBLISHED"}; !slices.Equal(states, want) {
		t.Fatalf("publish reported %v, want %v", states, want)
	}
	if want := []bool{false, false, true, true, true, false, false}; !slices.Equal(release, want) {
		t.Fatalf("release_build %v, want %v", release, want)
	}
	prodRef := d.cloud.ProdImageRef(d.key, d.name, "1.2.3")
	ref, err := name.ParseReference(prodRef, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Get(ref, remote.WithContext(d.ctx)); err != nil {
		t.Fatalf("the registry has no %s: %v", prodRef, err)
	}
	tokens := d.cloud.Calls("reswarm.containers.get_registry_token")
	if !slices.ContainsFunc(tokens, func(c devcloud.CallRecord) bool {
		p, _ := c.Args[0].(map[string]any)
		return fmt.Sprint(p["callerID"]) == "9"
	}) {
		t.Fatalf("no registry token for the requestor 9: %v", tokens)
	}
	d.awaitCond(t, "the publish messages on the pub topic", func() bool {
		return pubLog.has("chunk: App build has finished, Starting to publish...") && pubLog.has(`"status":"Pushed"`)
	})
	if h := d.appLog(t, d.pubLog()); !containsLine(h, "Initializing publish process for DevApp...") ||
		!containsLine(h, "Starting image build...") || !containsLine(h, "App build has finished, Starting to publish...") ||
		!containsLine(h, "1.2.3") {
		t.Fatalf("pub history %v", h)
	}
	if devLog.count("chunk: Initializing publish process") != 0 {
		t.Fatal("the publish wrote to the DEV topic")
	}
	if h := d.appLog(t, d.container()); !containsLine(h, "Image built successfully") || !containsLine(h, "dev app running v1") {
		t.Fatalf("the publish touched the DEV app's history: %v", h)
	}
	// The release lives in the registry; the device keeps no PROD tag, so
	// the PROD app below can only come from the registry.
	if d.imageExists(t, prodRef) {
		t.Fatalf("%s kept locally", prodRef)
	}

	// The PROD stage of the app installs and runs the published release.
	prod := app{key: d.key, name: d.name, version: "1.2.3"}
	d.request(t, prod.requested("RUNNING"), nil)
	d.await(t, d.key, "RUNNING")
	var prodStates []string
	for _, r := range d.reports(d.key) {
		if r.Stage == "PROD" {
			prodStates = append(prodStates, r.State)
		}
	}
	if !slices.Equal(prodStates, []string{"DOWNLOADING", "PRESENT", "STARTING", "RUNNING"}) {
		t.Fatalf("PROD install reported %v", prodStates)
	}
	ct, err := d.dc.InspectContainer(d.ctx, prod.container())
	if err != nil || ct.Image != prodRef || !ct.State.Running {
		t.Fatalf("PROD container %+v: %v", ct, err)
	}
	d.awaitCond(t, "the PROD app's output", func() bool { return containsLine(d.appLog(t, prod.container()), "dev app running v1") })
}

// File names that are not plain names are refused before anything is
// written; an archive whose entries escape is refused before the engine
// sees it. Nothing appears outside the build dir.
func TestDevUploadRefusals(t *testing.T) {
	d := devStart(t)
	before := d.filesOutsideBuildDir(t)
	_, etcXBefore := os.Stat("/etc/x")
	for _, fileName := range []string{"../x", "/etc/x", "a/b", "..", "x\x00y", strings.Repeat("a", 200)} {
		for _, chunk := range []string{"BEGIN", "00ff", "END"} {
			err := d.writeData(chunk, fileName, d.container(), 2, "1")
			if uri, text := rpcErr(t, err); uri != "wamp.error.invalid_argument" || !strings.Contains(text, "file name") {
				t.Fatalf("write_data %s %q: %s %q", chunk, fileName, uri, text)
			}
		}
	}
	if _, err := os.Stat("/etc/x"); !os.IsNotExist(err) && os.IsNotExist(etcXBefore) {
		t.Fatal("/etc/x was written")
	}

	// A request for BUILT while an upload is in progress makes that upload
	// stale: it is cancelled, its temporary file removed.
	if err := d.writeData("BEGIN", d.name+".tgz", d.container(), 4, "u1"); err != nil {
		t.Fatal(err)
	}
	if err := d.writeData("0000", d.name+".tgz", d.container(), 4, "u1"); err != nil {
		t.Fatal(err)
	}
	if files := d.buildDirFiles(t); len(files) != 1 || !strings.Contains(files[0], ".part-") {
		t.Fatalf("build dir during the upload holds %v", files)
	}
	d.request(t, d.requested("BUILT"), nil)
	err := d.writeData("0000", d.name+".tgz", d.container(), 4, "u1")
	if _, text := rpcErr(t, err); text != "We received a chunk without an active transfer" {
		t.Fatalf("a chunk after the cancel: %q", text)
	}
	d.awaitDev(t, "FAILED")
	if got := reportStates(d.devReports()); !slices.Equal(got, []string{"REMOVED", "FAILED"}) {
		t.Fatalf("BUILT without a source reported %v", got)
	}
	d.awaitCond(t, "the missing source in the app's log", func() bool {
		return containsLine(d.appLog(t, d.container()), "no source of DevApp to build: upload DevApp.tgz first")
	})
	if files := d.buildDirFiles(t); len(files) != 0 {
		t.Fatalf("the cancelled upload left %v", files)
	}

	escape := filepath.Join(d.buildDir, "../../escape")
	d.source(t, entry{"Dockerfile", d.dockerfile("COPY escape /escape")}, entry{"../../escape", "outside"})
	n := len(d.devReports())
	d.request(t, d.requested("BUILT"), nil)
	d.awaitCond(t, "the refused build reported", func() bool {
		rs := d.devReports()
		return len(rs) >= n+2 && rs[len(rs)-1].State == "FAILED"
	})
	if got := reportStates(d.devReports()[n:]); !slices.Equal(got, []string{"REMOVED", "FAILED"}) {
		t.Fatalf("the refused archive reported %v, want REMOVED, FAILED (never BUILDING)", got)
	}
	d.awaitCond(t, "the refusal in the app's log", func() bool {
		h := d.appLog(t, d.container())
		return containsLine(h, "the uploaded source of DevApp is refused") && containsLine(h, `"../../escape" contains ..`)
	})
	if d.imageExists(t, d.devImage()) {
		t.Fatal("a refused archive produced an image")
	}
	if _, err := os.Stat(escape); !os.IsNotExist(err) {
		t.Fatalf("%s exists: %v", escape, err)
	}
	after := d.filesOutsideBuildDir(t)
	if added := slices.DeleteFunc(after, func(p string) bool { return slices.Contains(before, p) }); len(added) != 0 {
		t.Fatalf("files appeared outside the build dir: %v", added)
	}
	if files := d.buildDirFiles(t); !slices.Equal(files, []string{d.name + ".tgz"}) {
		t.Fatalf("build dir holds %v", files)
	}
}

// A broken Dockerfile ends FAILED, once, with the build's error in the
// log; a fixed upload and BUILT then build.
func TestDevBrokenDockerfile(t *testing.T) {
	d := devStart(t)
	d.source(t, entry{"Dockerfile", d.dockerfile(`RUN echo "main.c:3: error: expected ';' ` + d.nonce + `" && exit 3`)})
	d.request(t, d.requested("BUILT"), nil)
	d.awaitDev(t, "FAILED")
	d.awaitCond(t, "the compiler's error in the stored log", func() bool {
		h := d.appLog(t, d.container())
		return containsLine(h, "returned a non-zero code: 3") && containsLine(h, "main.c:3: error: expected ';' "+d.nonce)
	})
	if d.imageExists(t, d.devImage()) {
		t.Fatal("a failed build left an image")
	}

	d.source(t, entry{"Dockerfile", d.dockerfile(`RUN echo "fixed `+d.nonce+`"`, `CMD ["sh", "-c", "echo fixed; sleep 3600"]`)})
	d.request(t, d.requested("BUILT"), nil)
	d.awaitDev(t, "PRESENT")
	// No retry of the failed build in between: it fails the same way until
	// a new request.
	want := []string{"REMOVED", "BUILDING", "FAILED", "REMOVED", "BUILDING", "BUILT", "PRESENT"}
	if got := reportStates(d.devReports()); !slices.Equal(got, want) {
		t.Fatalf("reported %v, want %v", got, want)
	}
	if !d.imageExists(t, d.devImage()) {
		t.Fatal("no image after the fixed build")
	}

	// Uninstall removes the image and the uploaded source too.
	d.request(t, d.requested("UNINSTALLED"), nil)
	d.awaitDev(t, "UNINSTALLED")
	if d.imageExists(t, d.devImage()) {
		t.Fatal("uninstall kept the DEV image")
	}
	if files := d.buildDirFiles(t); len(files) != 0 {
		t.Fatalf("uninstall left %v in the build dir", files)
	}
}

// A second BUILT while a build runs cancels it and builds again, from the
// source uploaded meanwhile; the cancelled build leaves no container, tag
// or file behind.
func TestDevRebuildWhileBuilding(t *testing.T) {
	d := devStart(t)
	source := func(version string) []entry {
		return []entry{{"Dockerfile", d.dockerfile(`RUN echo "compiling `+version+` `+d.nonce+`"`, "RUN sleep 5",
			"LABEL test.version="+version)}}
	}
	devLog := d.subscribe(t, d.container())
	d.awaitLive(t, devLog)
	d.source(t, source("v1")...)
	d.request(t, d.requested("BUILT"), nil)
	d.awaitCond(t, "the first build in its slow step", func() bool {
		return devLog.has("compiling v1 "+d.nonce) && devLog.has("RUN sleep 5")
	})
	// Its step container carries the base's label: what is left of the
	// build below is seen.
	d.awaitCond(t, "the first build's step container", func() bool { return len(d.nonceContainers(t)) > 0 })
	d.source(t, source("v2")...)
	d.request(t, d.requested("BUILT"), nil)
	d.awaitDev(t, "PRESENT")

	if got := reportStates(d.devReports()); !slices.Equal(got, []string{"REMOVED", "BUILDING", "REMOVED", "BUILDING", "BUILT", "PRESENT"}) {
		t.Fatalf("reported %v: want the first build cancelled (no FAILED, no BUILT) and one complete build", got)
	}
	if l := d.imageLabels(t, d.devImage()+":latest"); l["test.version"] != "v2" {
		t.Fatalf("the DEV image is not the second build's: labels %v", l)
	}
	d.awaitCond(t, "the build's end on the dev topic", func() bool { return devLog.has("chunk: Image built successfully") })
	if n := devLog.count("chunk: Image built successfully"); n != 1 {
		t.Fatalf("%d builds finished, want 1", n)
	}
	// The engine kills and removes the step container of a cancelled build.
	d.awaitCond(t, "no build container left", func() bool { return len(d.nonceContainers(t)) == 0 })
	if files := d.buildDirFiles(t); !slices.Equal(files, []string{d.name + ".tgz"}) {
		t.Fatalf("build dir holds %v", files)
	}
}
