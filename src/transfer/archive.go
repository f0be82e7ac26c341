package transfer

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"reagent/src/errdefs"
)

// Archives the agent reads itself (uploaded build sources, compose
// bundles) are untrusted: the reference extracted entry names verbatim
// (zip-slip, DESIGN §4). Every archive is walked once by Inspect, which
// refuses whatever could reach outside its root, before anything is
// written.

// Defaults of Limits.
const (
	DefaultMaxEntries = 10_000
	DefaultMaxBytes   = 2 << 30 // uncompressed bytes of all regular files
	maxNameLen        = 4096    // PATH_MAX
	// entryOverhead bounds the tar metadata per entry (header, long-name
	// and PAX records, padding) when the decompressed stream is capped, so
	// a gzip bomb of headers cannot make a walk endless either.
	entryOverhead = 16 << 10
)

// Limits bound what an archive may hold; zero fields take the defaults.
type Limits struct {
	MaxEntries int   // entries of any type
	MaxBytes   int64 // total uncompressed size of the regular files
}

func (l Limits) withDefaults() Limits {
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

// Info describes an archive that passed Inspect.
type Info struct {
	// Files are the regular files (hard links included), as clean
	// slash-separated paths relative to the archive root, in archive order,
	// each once.
	Files   []string
	Entries int   // entries of every type
	Bytes   int64 // total size of the regular files
}

// Inspect walks the tar or tar.gz file at archivePath (gzip is detected by its magic) and
// refuses, with an errdefs.ErrInvalidArgument error, absolute names, ".."
// components, names longer than 4096 bytes, symlinks whose target
// resolves outside the root (followed through the archive's own links, as
// the kernel would after extraction), hard links to anything but an
// earlier regular file, entries reached through a symlink, device, char
// and fifo entries, more than MaxEntries entries and more than MaxBytes of
// file data. It writes nothing.
func Inspect(archivePath string, lim Limits) (Info, error) {
	return InspectContext(context.Background(), archivePath, lim)
}

// InspectContext is Inspect that stops when ctx ends: an archive of
// gigabytes takes a while, and a shutdown or a newer request must not
// wait for it.
func InspectContext(ctx context.Context, archivePath string, lim Limits) (Info, error) {
	s, err := walkFile(ctx, archivePath, lim, nil)
	if err != nil {
		return Info{}, err
	}
	return s.info, nil
}

// DockerfileFor picks the Dockerfile of a build: `Dockerfile.<arch>` (arch
// with its variant, e.g. "armv7", as release.Arch gives it) when a file of
// that base name is anywhere in the archive — the shallowest, then the
// first in name order — otherwise "Dockerfile" (apps-lifecycle §3.2). The
// result is a path relative to the archive root, as the build wants it.
func DockerfileFor(info Info, arch string) string {
	want := "Dockerfile." + arch
	best := ""
	for _, f := range info.Files {
		if path.Base(f) != want {
			continue
		}
		if best == "" || depth(f) < depth(best) || (depth(f) == depth(best) && f < best) {
			best = f
		}
	}
	if best == "" {
		return "Dockerfile"
	}
	return best
}

func depth(p string) int { return strings.Count(p, "/") }

// visitFunc sees every accepted entry in order; data is the content of a
// regular file (nil otherwise) and must be read before returning.
type visitFunc func(e entry, data io.Reader) error

// walkFile opens archivePath and walks it; see walk.
func walkFile(ctx context.Context, archivePath string, lim Limits, visit visitFunc) (*scan, error) {
	f, err := os.Open(archivePath)
	if err != nil {
		return nil, fmt.Errorf("open the archive: %w", err)
	}
	defer f.Close()
	return walk(ctx, f, lim, visit)
}

// walk reads the archive in r, checks every entry (scan.add) and, when
// the whole archive is read, every symlink (scan.finish). visit, if not
// nil, is called for each entry after its own checks passed.
func walk(ctx context.Context, r io.Reader, lim Limits, visit visitFunc) (*scan, error) {
	lim = lim.withDefaults()
	// Skipping a file's data reads it too: every read checks ctx.
	stream, err := decompress(&ctxReader{ctx: ctx, r: r})
	if err != nil {
		return nil, err
	}
	// Everything the tar reader may consume: the file data plus bounded
	// metadata per entry, plus the end-of-archive blocks.
	capped := &capReader{r: stream, left: lim.MaxBytes + int64(lim.MaxEntries+1)*entryOverhead}
	tr := tar.NewReader(capped)
	s := newScan(lim)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, archiveError(err)
		}
		e, err := s.add(hdr)
		if err != nil {
			return nil, err
		}
		if visit == nil || e.name == "" {
			continue
		}
		var data io.Reader
		if e.kind == kindFile {
			data = &ctxReader{ctx: ctx, r: tr}
		}
		if err := visit(e, data); err != nil {
			return nil, archiveError(err)
		}
	}
	// A read at the very end may have been refused without anybody
	// seeing it (buffered data sufficed); cancelled means cancelled.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.finish(); err != nil {
		return nil, err
	}
	return s, nil
}

// decompress returns r, gunzipped when it starts with the gzip magic.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read the archive: %w", err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, errdefs.InvalidArgument("invalid archive: %v", err)
		}
		return zr, nil
	}
	return br, nil
}

var errStreamTooLarge = errors.New("archive too large")

// archiveError classes what went wrong while reading: a malformed or
// oversized archive is the sender's fault (invalid argument); a cancelled
// context and errors of our own disk (*os.PathError) are passed on.
func archiveError(err error) error {
	var pe *os.PathError
	switch {
	case errors.Is(err, errdefs.ErrInvalidArgument), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, errStreamTooLarge):
		return errdefs.InvalidArgument("invalid archive: more data than the limits allow")
	case errors.As(err, &pe):
		return fmt.Errorf("extract: %w", err)
	}
	// archive/tar, compress/gzip and compress/flate report malformed input
	// with many error types (tar.ErrHeader, io.ErrUnexpectedEOF, plain
	// errors for bad numbers and PAX records, flate.CorruptInputError);
	// all of them are about the input.
	return errdefs.InvalidArgument("invalid archive: %v", err)
}

// capReader fails once more than left bytes were read.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errStreamTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// ctxReader stops a long copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
