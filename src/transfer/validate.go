package transfer

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"reagent/src/errdefs"
)

// Limits of the names a write_data call may carry. Everything that ends up
// in a path is checked here, before any file is touched (DESIGN §4: the
// reference joined fileName onto the build dir verbatim).
const (
	maxIDLen            = 128
	maxContainerNameLen = 255
	maxQuoted           = 64 // how much of a refused value an error text repeats
)

var (
	// A plain file name: starts with a letter or digit (so never "." or
	// "..", never hidden), then letters, digits, '.', '_', '-'. No
	// separator, no NUL, at most 128 bytes.
	fileNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`) // and at most 128 bytes
	// dev_<appKey>_<name> or prod_<appKey>_<name> (apps-lifecycle §1.6).
	containerNameRE = regexp.MustCompile(`^(dev|prod)_[0-9]+_[a-z0-9_-]+$`)
)

// ValidateFileName accepts a plain file name: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`,
// so no separator, no "..", no NUL, nothing hidden. Anything else is
// errdefs.ErrInvalidArgument.
func ValidateFileName(name string) error {
	// The regexp already excludes all of these; the explicit checks keep
	// the rule obvious to a reader and safe against a careless edit of it.
	if name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || len(name) > 128 || !fileNameRE.MatchString(name) {
		return errdefs.InvalidArgument("invalid file name %s: must be a plain file name of letters, digits, '.', '_' or '-' (at most 128)", quote(name))
	}
	return nil
}

// ValidateContainerName accepts the transfer key of the reference,
// `^(dev|prod)_[0-9]+_[a-z0-9_-]+$`, e.g. "dev_42_myapp".
func ValidateContainerName(name string) error {
	if len(name) > maxContainerNameLen || !containerNameRE.MatchString(name) {
		return errdefs.InvalidArgument("invalid containerName %s: must look like dev_<appKey>_<name>", quote(name))
	}
	return nil
}

// ValidateID accepts a transfer id: 1 to 128 bytes of printable UTF-8.
func ValidateID(id string) error {
	if id == "" || len(id) > maxIDLen || !utf8.ValidString(id) || strings.IndexFunc(id, notPrintable) >= 0 {
		return errdefs.InvalidArgument("invalid transfer id %s: must be 1 to %d printable characters", quote(id), maxIDLen)
	}
	return nil
}

func notPrintable(r rune) bool { return !unicode.IsPrint(r) }

// quote repeats a refused value in an error text, shortened and escaped,
// so a hostile argument cannot flood or forge the log line it ends up in.
func quote(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "…"
	}
	return strconv.Quote(s)
}
