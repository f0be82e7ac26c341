package release

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestVersionIsTheEmbeddedFile(t *testing.T) {
	raw, err := os.ReadFile("version.txt")
	if err != nil {
		t.Fatal(err)
	}
	if Version() != strings.TrimSpace(string(raw)) || Version() == "" {
		t.Fatalf("Version() = %q, file has %q", Version(), raw)
	}
}

func TestArch(t *testing.T) {
	old := BuildArch
	t.Cleanup(func() { BuildArch = old })

	BuildArch = ""
	if runtime.GOARCH != "arm" && Arch() != runtime.GOARCH {
		t.Fatalf("Arch() = %q without ldflag, want GOARCH %q", Arch(), runtime.GOARCH)
	}
	BuildArch = "armv7"
	if a, v := SplitArch(); a != "arm" || v != "v7" || Arch() != "armv7" {
		t.Fatalf("armv7 split into %q %q", a, v)
	}
	BuildArch = "arm64"
	if a, v := SplitArch(); a != "arm64" || v != "" {
		t.Fatalf("arm64 split into %q %q", a, v)
	}
}
