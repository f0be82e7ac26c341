// Package testimage builds small container images from the static busybox
// of Debian's busybox-static package and pushes them to a registry. No image
// can be pulled from Docker Hub on build machines, so every test image and
// devcloud's `studio push-image --busybox` come from here. Not linked into
// the agent.
package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Applets are linked to busybox in /bin, so images can run `sh -c …`.
var Applets = []string{"sh", "echo", "sleep", "cat", "ls", "env", "printf", "seq", "yes", "true", "false",
	"date", "head", "tail", "wc", "mkdir", "rm", "touch", "ps", "kill", "id", "hostname", "sed", "grep",
	"awk", "test", "[", "nc", "wget", "httpd", "trap", "tee", "dd", "od", "cp", "mv", "ln", "uname", "top"}

// Options shape the image.
type Options struct {
	Cmd        []string
	Entrypoint []string
	Env        []string
	WorkingDir string
	Labels     map[string]string
	// Files are added to the image: path → content. Paths are absolute;
	// content starting with "#!" gets mode 0755, everything else 0644.
	Files map[string]string
	// Arch is the image architecture; empty means the host's.
	Arch string
}

// BusyboxPath finds a statically linked busybox: $BUSYBOX, else /bin/busybox.
// A dynamically linked one would not run in a FROM-scratch image.
func BusyboxPath() (string, error) {
	p := os.Getenv("BUSYBOX")
	if p == "" {
		p = "/bin/busybox"
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("busybox at %s: %w (install Debian's busybox-static: make deps)", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("busybox at %s is dynamically linked; install busybox-static", p)
		}
	}
	return p, nil
}

// Busybox builds a one-layer image holding busybox, its applet links and
// the extra files of opts.
func Busybox(opts Options) (v1.Image, error) {
	path, err := BusyboxPath()
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	layerTar, err := rootfs(bin, opts.Files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = opts.Arch
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.Config.Cmd = opts.Cmd
	cf.Config.Entrypoint = opts.Entrypoint
	cf.Config.Env = append([]string{"PATH=/bin"}, opts.Env...)
	cf.Config.WorkingDir = opts.WorkingDir
	cf.Config.Labels = opts.Labels
	return mutate.ConfigFile(img, cf)
}

func rootfs(busybox []byte, files map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	addDir := func(dir string) error {
		parts := strings.Split(strings.Trim(dir, "/"), "/")
		for i := range parts {
			d := strings.Join(parts[:i+1], "/") + "/"
			if d == "/" || dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range []string{"bin", "tmp", "data", "etc"} {
		if err := addDir(d); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(busybox))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(busybox); err != nil {
		return nil, err
	}
	for _, a := range Applets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}); err != nil {
			return nil, err
		}
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("file path %q is not absolute", p)
		}
		rel := strings.TrimPrefix(p, "/")
		if i := strings.LastIndex(rel, "/"); i > 0 {
			if err := addDir(rel[:i]); err != nil {
				return nil, err
			}
		}
		content := files[p]
		mode := int64(0o644)
		if strings.HasPrefix(content, "#!") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: mode, Size: int64(len(content))}); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Push writes img to ref ("127.0.0.1:5001/apps/prod_amd64_1_demo:1.0.0")
// over plain HTTP: test registries live on loopback.
func Push(ctx context.Context, ref string, img v1.Image) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// PushBusybox builds a busybox image with opts and pushes it to ref.
func PushBusybox(ctx context.Context, ref string, opts Options) error {
	img, err := Busybox(opts)
	if err != nil {
		return err
	}
	return Push(ctx, ref, img)
}
