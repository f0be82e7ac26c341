package system

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// Files get_os_release reads (ReswarmOS layout).
const (
	OSReleaseFile       = "/etc/os-release"
	LatestOSReleaseFile = "/etc/os-release-latest.json"
)

// DetailedOS describes the OS like the reference (gopsutil):
// "<goos> [platform] [platformVersion] [kernelVersion]", parts that are
// unknown left out, e.g. "linux debian 12 6.1.0-28-amd64".
func DetailedOS() string {
	platform, version, kernel := platformInfo()
	return joinNonEmpty(runtime.GOOS, platform, version, kernel)
}

func joinNonEmpty(parts ...string) string {
	out := parts[:0:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

// parseOSRelease reads KEY=VALUE lines (os-release(5)): comments and blank
// lines skipped, one level of single or double quotes stripped.
func parseOSRelease(data []byte) map[string]string {
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		kv[strings.TrimSpace(k)] = v
	}
	return kv
}

// Release names one OS release. Field names are the reference's Go names:
// it encoded an untagged struct, so Studio sees capitalised keys.
//
//	{"Name": "ReswarmOS", "Version": "2.5.1", "BuildTime": "20240301T101500"}
type Release struct {
	Name      string `json:"Name"`
	Version   string `json:"Version"`
	BuildTime string `json:"BuildTime"`
}

// OSReleases is the answer of get_os_release.
//
//	{"currentRelease": {"Name": "ReswarmOS", "Version": "2.5.1", "BuildTime": "20240301T101500"},
//	 "latestRelease": {"Name": "ReswarmOS", "Version": "2.6.0", "BuildTime": "20240601T080000"}}
type OSReleases struct {
	Current Release `json:"currentRelease"`
	Latest  Release `json:"latestRelease"`
}

// OSRelease reads the installed and the latest available OS release from
// OSReleaseFile and LatestOSReleaseFile. ok is false when either file is
// missing (devices without ReswarmOS); get_os_release then answers no args.
func OSRelease() (r OSReleases, ok bool, err error) {
	return osReleaseFrom(OSReleaseFile, LatestOSReleaseFile)
}

func osReleaseFrom(currentPath, latestPath string) (OSReleases, bool, error) {
	cur, err := os.ReadFile(currentPath)
	if errors.Is(err, fs.ErrNotExist) {
		return OSReleases{}, false, nil
	}
	if err != nil {
		return OSReleases{}, false, fmt.Errorf("read %s: %w", currentPath, err)
	}
	latest, err := os.ReadFile(latestPath)
	if errors.Is(err, fs.ErrNotExist) {
		return OSReleases{}, false, nil
	}
	if err != nil {
		return OSReleases{}, false, fmt.Errorf("read %s: %w", latestPath, err)
	}
	kv := parseOSRelease(cur)
	r := OSReleases{Current: releaseOf(kv["NAME"], kv["VERSION"], "")}
	var doc map[string]any
	if err := json.Unmarshal(latest, &doc); err != nil {
		return OSReleases{}, false, fmt.Errorf("parse %s: %w", latestPath, err)
	}
	r.Latest = releaseOf(lookupFold(doc, "name"), lookupFold(doc, "version"),
		lookupFold(doc, "buildTime", "build_time"))
	return r, true, nil
}

// releaseOf splits a ReswarmOS version "v<version>-<x>-<buildtime>" the way
// the reference does; any other form is kept whole as the version. An
// explicit build time wins.
func releaseOf(name, version, buildTime string) Release {
	r := Release{Name: name, Version: strings.TrimPrefix(version, "v"), BuildTime: buildTime}
	if parts := strings.Split(version, "-"); len(parts) == 3 {
		r.Version = strings.TrimPrefix(parts[0], "v")
		if r.BuildTime == "" {
			r.BuildTime = parts[2]
		}
	}
	return r
}

// lookupFold returns the first of keys present in doc (any letter case) as
// a string. The latest-release file's key spelling is not documented; the
// reference read a key that never existed.
func lookupFold(doc map[string]any, keys ...string) string {
	for _, want := range keys {
		for k, v := range doc {
			if strings.EqualFold(k, want) {
				if s, ok := v.(string); ok {
					return s
				}
				return fmt.Sprint(v)
			}
		}
	}
	return ""
}
