//go:build !linux

package system

// platformInfo is empty outside Linux: DetailedOS is then just the GOOS.
func platformInfo() (platform, version, kernel string) { return "", "", "" }
