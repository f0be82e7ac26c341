package devcloud

import (
	"context"
	"fmt"
	"strings"

	"reagent/src/release"
	"reagent/src/testimage"
)

// AppRepository is the docker_main_repository of devcloud's devices.
const AppRepository = "apps/"

// ProdImageName is the PROD image name of an app without registry and tag,
// prod_<arch>_<key>_<name>, lower-cased (apps-lifecycle §1.6).
func ProdImageName(arch string, appKey uint64, name string) string {
	return strings.ToLower(fmt.Sprintf("prod_%s_%d_%s", arch, appKey, name))
}

// ProdImageRef is <RegistryHost>/apps/prod_<arch>_<key>_<name>:<version>,
// lower-case, for this machine's architecture: what the agent pulls for a
// PROD app with newest_version = version.
func (c *Cloud) ProdImageRef(appKey uint64, name, version string) string {
	return ProdImageRef(c.RegistryHost(), release.Arch(), appKey, name, version)
}

// ProdImageRef builds a PROD image reference for any registry and arch.
func ProdImageRef(registryHost, arch string, appKey uint64, name, version string) string {
	return strings.ToLower(registryHost) + "/" + AppRepository + ProdImageName(arch, appKey, name) + ":" + version
}

// PushBusybox builds a busybox image with opts and pushes it as the PROD
// image of the app; it returns the reference.
func (c *Cloud) PushBusybox(ctx context.Context, appKey uint64, name, version string, opts testimage.Options) (string, error) {
	ref := c.ProdImageRef(appKey, name, version)
	if err := testimage.PushBusybox(ctx, ref, opts); err != nil {
		return "", err
	}
	return ref, nil
}
