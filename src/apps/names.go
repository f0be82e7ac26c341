package apps

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"reagent/src/errdefs"
)

// Labels every container the agent creates carries. Only containers with
// LabelManaged=true are ever touched by cleanup.
const (
	LabelManaged = "io.ironflock.managed"
	LabelAppKey  = "io.ironflock.app_key"
	LabelStage   = "io.ironflock.stage"
	LabelAppName = "io.ironflock.app_name"
	// LabelDevice is the serial of the device whose agent created the
	// container: an agent treats only its own device's containers as its
	// own (several agents may share an engine, e.g. in tests).
	LabelDevice = "io.ironflock.device"
	// labelReal is the reference's marker on app containers.
	labelReal = "real"
)

// appNameRE: app names end up in container and image names, URIs and
// paths, so they are restricted to what is safe in all of them.
var appNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`) // and at most 100 bytes

// ValidateAppName checks an app name; the error is ErrInvalidArgument.
func ValidateAppName(name string) error {
	if len(name) > 100 || !appNameRE.MatchString(name) {
		return errdefs.InvalidArgument("invalid app name %q: want 1-100 letters, digits, '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// ContainerName is the app's container (and log) name,
// <stage>_<app_key>_<app_name>, lower-cased: prod_42_myapp.
func ContainerName(k Key, appName string) string {
	return strings.ToLower(k.Stage + "_" + strconv.FormatUint(k.AppKey, 10) + "_" + appName)
}

// PublishLogName is the log name of a DEV app's publish stream,
// pub_<app_key>_<app_name>, lower-cased.
func PublishLogName(appKey uint64, appName string) string {
	return strings.ToLower("pub_" + strconv.FormatUint(appKey, 10) + "_" + appName)
}

// ImageName is the local short image name, <stage>_<arch>_<app_key>_<app_name>
// lower-cased (arch includes the ARM variant, e.g. armv7).
func ImageName(k Key, arch, appName string) string {
	return strings.ToLower(fmt.Sprintf("%s_%s_%d_%s", k.Stage, arch, k.AppKey, appName))
}

// ImageRepo is the app's image repository in the registry:
// <docker_registry_url><docker_main_repository><image name>, a plain
// concatenation (both config values end in '/'), lower-cased.
func ImageRepo(registryURL, mainRepository string, k Key, arch, appName string) string {
	return strings.ToLower(registryURL + mainRepository + ImageName(k, arch, appName))
}

// ImageRef is the reference of one version: PROD repo:version, DEV the bare
// repo (the engine's "latest").
func ImageRef(repo, stage, version string) string {
	if stage == StageDev || version == "" {
		return repo
	}
	return repo + ":" + version
}

// RegistryHost is the host[:port] part of a registry URL such as
// "registry.ironflock.com/", "https://reg:5000/x/" or "127.0.0.1:5001/".
func RegistryHost(registryURL string) string {
	u := registryURL
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	host, _, _ := strings.Cut(u, "/")
	return strings.ToLower(host)
}

// keyFromLabels reads the app a managed container belongs to.
func keyFromLabels(labels map[string]string) (Key, bool) {
	if labels[LabelManaged] != "true" {
		return Key{}, false
	}
	n, err := strconv.ParseUint(labels[LabelAppKey], 10, 64)
	stage := labels[LabelStage]
	if err != nil || n == 0 || (stage != StageDev && stage != StageProd) {
		return Key{}, false
	}
	return Key{AppKey: n, Stage: stage}, true
}

// appLabels are the labels of an app's container on device serial.
func appLabels(k Key, appName, serial string) map[string]string {
	return map[string]string{
		LabelManaged: "true",
		LabelAppKey:  strconv.FormatUint(k.AppKey, 10),
		LabelStage:   k.Stage,
		LabelAppName: appName,
		LabelDevice:  serial,
		labelReal:    "True",
	}
}

// ownedBy reports whether a container with these labels is app k's on
// device serial.
func ownedBy(labels map[string]string, k Key, serial string) bool {
	got, ok := keyFromLabels(labels)
	return ok && got == k && labels[LabelDevice] == serial
}
