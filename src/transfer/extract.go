package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"reagent/src/errdefs"
)

// Extract extracts the tar or tar.gz at archivePath into dest. The archive is
// inspected first (Inspect's checks), so a refused archive writes nothing.
// dest is created fresh: whatever was there is removed first, the entries
// are written into a temporary sibling through an os.Root and renamed to
// dest at the end; on any error nothing is left at dest.
//
// While writing, no path component is ever a symlink (checked on every
// component, files created with O_EXCL, so an existing link is never
// written through), and modes are 0755 for directories and executables,
// 0644 for other files; owners, times and special bits are not restored.
func Extract(ctx context.Context, archivePath, dest string, lim Limits) (err error) {
	if dest == "" {
		return errdefs.InvalidArgument("extract: no destination")
	}
	dest = filepath.Clean(dest)
	parent, base := filepath.Dir(dest), filepath.Base(dest)
	if base == "." || base == ".." || base == string(filepath.Separator) {
		return errdefs.InvalidArgument("extract: invalid destination %s", quote(dest))
	}
	if err := os.RemoveAll(dest); err != nil {
		return fmt.Errorf("extract: remove the old %s: %w", dest, err)
	}
	if _, err := walkFile(ctx, archivePath, lim, nil); err != nil {
		return err
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".extract-")
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	x := &extractor{root: root, dirs: map[string]bool{}}
	// The second walk repeats every check: the file is read again, and
	// what is written must be what was inspected.
	_, err = walkFile(ctx, archivePath, lim, x.visit)
	if cerr := root.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("extract: %w", cerr)
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	return nil
}

// extractor writes accepted entries below root.
type extractor struct {
	root *os.Root
	// dirs are the directories this extraction made or checked: the
	// destination is fresh and only we write to it, so they stay such.
	dirs map[string]bool
}

func (x *extractor) visit(e entry, data io.Reader) error {
	if e.kind == kindDir {
		return x.mkdirs(e.name)
	}
	if err := x.mkdirs(path.Dir(e.name)); err != nil {
		return err
	}
	switch e.kind {
	case kindFile:
		return x.writeFile(e, data)
	case kindSymlink:
		return x.root.Symlink(e.link, e.name) // fails if the name exists
	case kindHardlink:
		return x.root.Link(e.link, e.name)
	}
	return errdefs.InvalidArgument("invalid archive: %s has an unsupported type", quote(e.name))
}

func (x *extractor) writeFile(e entry, data io.Reader) error {
	if err := x.clearFile(e.name); err != nil {
		return err
	}
	mode := fileMode(e.mode)
	f, err := x.root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, data)
	if err == nil && n != e.size {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		err = f.Chmod(mode) // exact, whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// clearFile makes room for a regular file that repeats an earlier one; an
// existing link or directory there is refused, never written through.
func (x *extractor) clearFile(name string) error {
	fi, err := x.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().IsRegular():
		return x.root.Remove(name)
	}
	return errdefs.InvalidArgument("invalid archive: %s already exists and is not a regular file", quote(name))
}

// mkdirs creates every missing directory of the clean path p, refusing
// any component that exists as a symlink or a non-directory.
func (x *extractor) mkdirs(p string) error {
	if p == "." || p == "" {
		return nil
	}
	acc := ""
	for _, part := range strings.Split(p, "/") {
		acc = path.Join(acc, part)
		if x.dirs[acc] {
			continue
		}
		fi, err := x.root.Lstat(acc)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := x.root.Mkdir(acc, 0o755); err != nil {
				return err
			}
			if err := x.root.Chmod(acc, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return errdefs.InvalidArgument("invalid archive: %s would be written through a symlink", quote(p))
		case !fi.IsDir():
			return errdefs.InvalidArgument("invalid archive: %s is not a directory", quote(acc))
		}
		x.dirs[acc] = true
	}
	return nil
}

// fileMode keeps only whether a file is executable.
func fileMode(m int64) os.FileMode {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}
