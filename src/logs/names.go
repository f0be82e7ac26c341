package logs

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"

	"reagent/src/errdefs"
	"reagent/src/store"
)

// TopicPrefix starts every app log topic: reswarm.logs.<serial>.<name>.
const TopicPrefix = "reswarm.logs."

// maxNameLen bounds a log name: it is a container name (the engine allows
// about 250 bytes) and part of a topic URI.
const maxNameLen = 200

// namePattern is every log name the agent creates: a container name
// <stage>_<app_key>_<app_name> (lower case), the publish stream
// pub_<app_key>_<app_name>, or a compose container
// <stage>_<app_key>_<app_name>_compose-<service>-<n>. Anything else (a dot
// above all, which would break the topic structure) is refused.
var namePattern = regexp.MustCompile(`^(dev|prod|pub)_([0-9]+)_([a-z0-9_-]+)$`)

// ValidName checks that name is the name of an app log the agent could
// have created. It says nothing about whether the app exists (see
// ManagedFromStore).
func ValidName(name string) error {
	_, _, err := parseName(name)
	return err
}

// KeyOf returns the app a log name belongs to: prod → PROD, dev and pub →
// DEV (the publish stream belongs to the DEV app).
func KeyOf(name string) (store.Key, error) {
	k, _, err := parseName(name)
	return k, err
}

// parseName splits a log name into its app and the rest after the key
// (the app name, for a compose container followed by the service).
func parseName(name string) (store.Key, string, error) {
	if name == "" {
		return store.Key{}, "", errdefs.InvalidArgument("container name is empty")
	}
	if len(name) > maxNameLen {
		return store.Key{}, "", errdefs.InvalidArgument("container name is longer than %d bytes", maxNameLen)
	}
	m := namePattern.FindStringSubmatch(name)
	if m == nil {
		return store.Key{}, "", errdefs.InvalidArgument("%q is not an app container name (<dev|prod|pub>_<app key>_<name>, lower case)", name)
	}
	key, err := strconv.ParseUint(m[2], 10, 63)
	if err != nil || key == 0 {
		return store.Key{}, "", errdefs.InvalidArgument("%q: app key %q out of range", name, m[2])
	}
	stage := "DEV"
	if m[1] == "prod" {
		stage = "PROD"
	}
	return store.Key{AppKey: key, Stage: stage}, m[3], nil
}

// Topic is the topic of an app log: reswarm.logs.<serial>.<name>.
func Topic(serial, name string) string { return TopicPrefix + serial + "." + name }

// ManagedFromStore answers whether name is the log of an app the agent
// manages, from the store alone: a requested or actual row of the name's
// app whose lower-cased app name is the rest of the name (or, for a compose
// container, its project's). The reconciler knows better; this serves
// until it answers itself. Store errors answer false: refusing a query is
// safer than serving a foreign container.
func ManagedFromStore(st *store.Store) func(ctx context.Context, name string) bool {
	return func(ctx context.Context, name string) bool {
		k, rest, err := parseName(name)
		if err != nil {
			return false
		}
		var names []string
		if r, err := st.GetRequested(ctx, k); err == nil {
			names = append(names, r.AppName)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return false
		}
		if a, err := st.GetActual(ctx, k); err == nil {
			names = append(names, a.AppName)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return false
		}
		for _, n := range names {
			if appNameMatches(rest, n) {
				return true
			}
		}
		return false
	}
}

// appNameMatches reports whether rest (the part of a log name after the
// app key) names the app called appName: its container, or one of its
// compose containers <project>-<service>-<n>.
func appNameMatches(rest, appName string) bool {
	n := strings.ToLower(appName)
	return n != "" && (rest == n || strings.HasPrefix(rest, n+"_compose-"))
}
