//go:build tools

// Package deps pins the modules the parts of reagent are built on, so that
// parallel work on several packages never has to edit go.mod at once.
package deps

import (
	_ "github.com/docker/docker/api/types"
	_ "github.com/docker/docker/api/types/container"
	_ "github.com/docker/docker/api/types/events"
	_ "github.com/docker/docker/api/types/filters"
	_ "github.com/docker/docker/api/types/image"
	_ "github.com/docker/docker/api/types/registry"
	_ "github.com/docker/docker/client"
	_ "github.com/docker/docker/pkg/stdcopy"
	_ "github.com/docker/go-connections/nat"
	_ "github.com/gammazero/nexus/v3/client"
	_ "github.com/gammazero/nexus/v3/router"
	_ "github.com/gammazero/nexus/v3/router/auth"
	_ "github.com/gammazero/nexus/v3/wamp"
	_ "github.com/gammazero/nexus/v3/wamp/crsign"
	_ "github.com/google/go-containerregistry/pkg/name"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1"
	_ "github.com/google/go-containerregistry/pkg/v1/empty"
	_ "github.com/google/go-containerregistry/pkg/v1/mutate"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/go-containerregistry/pkg/v1/tarball"
	_ "github.com/google/uuid"
	_ "github.com/rs/zerolog"
	_ "golang.org/x/sys/unix"
	_ "gopkg.in/natefinch/lumberjack.v2"
	_ "modernc.org/sqlite"
)
