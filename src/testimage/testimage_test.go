package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestBusyboxImageHasBusyboxAndFiles(t *testing.T) {
	img, err := Busybox(Options{Cmd: []string{"sh", "-c", "echo hi"}, Files: map[string]string{"/app/run.sh": "#!/bin/sh\necho run\n"}})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers", len(layers))
	}
	rc, _ := layers[0].Uncompressed()
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = h
	}
	if h := seen["bin/busybox"]; h == nil || h.Size < 100000 {
		t.Fatalf("busybox missing: %v", h)
	}
	if h := seen["app/run.sh"]; h == nil || h.Mode != 0o755 {
		t.Fatalf("script missing or not executable: %+v", h)
	}
	if seen["bin/sh"] == nil || seen["bin/sh"].Linkname != "busybox" {
		t.Fatal("sh link missing")
	}
	cf, _ := img.ConfigFile()
	if strings.Join(cf.Config.Cmd, " ") != "sh -c echo hi" || cf.OS != "linux" {
		t.Fatalf("config %+v", cf.Config)
	}
}

func TestPushToRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/apps/prod_amd64_1_demo:1.0.0"
	if err := PushBusybox(context.Background(), ref, Options{Cmd: []string{"sh"}}); err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref, name.Insecure)
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(desc.Manifest, []byte("layers")) {
		t.Fatalf("manifest %s", desc.Manifest)
	}
}
