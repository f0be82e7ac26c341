// Package release knows which version of reagent this is and which
// architecture it was built for. The version is embedded from version.txt;
// the architecture comes from the linker:
//
//	go build -ldflags "-X reagent/src/release.BuildArch=armv7"
package release

import (
	_ "embed"
	"runtime"
	"runtime/debug"
	"strings"
)

//go:embed version.txt
var versionTxt string

// BuildArch is the architecture name the release was built for: amd64,
// arm64, armv7, armv6, armv5, … Set with -ldflags -X; empty means "derive
// it from the Go toolchain settings".
var BuildArch string

// Version is the agent version, e.g. "0.1.0".
func Version() string { return strings.TrimSpace(versionTxt) }

// Arch is the architecture including the ARM variant ("amd64", "armv7").
// It names images (prod_<arch>_<key>_<name>) and update downloads.
func Arch() string {
	if BuildArch != "" {
		return BuildArch
	}
	if runtime.GOARCH == "arm" {
		if v := goarm(); v != "" {
			return "armv" + v
		}
	}
	return runtime.GOARCH
}

// SplitArch splits Arch into the Go architecture and the variant, the way
// the reference reports them: "armv7" → ("arm", "v7"), "amd64" → ("amd64", "").
func SplitArch() (arch, variant string) {
	a := Arch()
	if strings.HasPrefix(a, "armv") {
		return "arm", a[len("arm"):]
	}
	return a, ""
}

// goarm reads the GOARM setting the binary was built with ("7" or "7,softfloat").
func goarm() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == "GOARM" {
			v, _, _ := strings.Cut(s.Value, ",")
			return v
		}
	}
	return ""
}
