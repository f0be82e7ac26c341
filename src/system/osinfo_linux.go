package system

import (
	"os"

	"golang.org/x/sys/unix"
)

// platformInfo is the distribution id and version from os-release (as
// gopsutil reports them) and the kernel release from uname.
func platformInfo() (platform, version, kernel string) {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		if data, err := os.ReadFile(p); err == nil {
			kv := parseOSRelease(data)
			platform, version = kv["ID"], kv["VERSION_ID"]
			break
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	return platform, version, kernel
}
