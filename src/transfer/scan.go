package transfer

import (
	"archive/tar"
	"path"
	"strings"

	"reagent/src/errdefs"
)

// The checks of every archive entry. scan keeps the tree the archive
// would produce, so a symlink is judged by where it really leads after
// extraction (through the archive's other links), not by its text alone:
// `a -> sub/..` is harmless until `b -> a/..` follows it out of the root.

// Entry kinds after normalisation.
type kind uint8

const (
	kindImplicitDir kind = iota // a parent no entry declared
	kindDir
	kindFile
	kindSymlink
	kindHardlink
)

const (
	// maxFollows is the kernel's MAXSYMLINKS: a resolution needing more
	// fails with ELOOP after extraction, so the archive is refused.
	maxFollows = 40
	// maxResolveSteps bounds the work of resolving all symlinks of one
	// archive (path components visited); a legitimate tree needs a tiny
	// fraction of it.
	maxResolveSteps = 1 << 22
)

// entry is one accepted tar entry. name is clean, relative and
// slash-separated; "" for the root itself ("./"), which is skipped.
type entry struct {
	name string
	kind kind
	link string // symlink: the target as written; hard link: the clean target path
	size int64
	mode int64
}

// node is one path of the tree the archive would produce.
type node struct {
	kind     kind
	target   string           // symlinks
	children map[string]*node // nil until needed
}

func (n *node) child(name string) *node {
	if n == nil || n.children == nil {
		return nil
	}
	return n.children[name]
}

type scan struct {
	lim      Limits
	root     *node
	symlinks []symlinkRef
	seen     map[string]bool // regular files already in info.Files
	info     Info
}

// symlinkRef is a symlink and the directory nodes leading to it.
type symlinkRef struct {
	name    string
	parents []*node // root first
	target  string
}

func newScan(lim Limits) *scan {
	return &scan{lim: lim, root: &node{kind: kindDir}, seen: map[string]bool{}}
}

// add checks one header and records it in the tree.
func (s *scan) add(hdr *tar.Header) (entry, error) {
	s.info.Entries++
	if s.info.Entries > s.lim.MaxEntries {
		return entry{}, errdefs.InvalidArgument("invalid archive: more than %d entries", s.lim.MaxEntries)
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return entry{}, err
	}
	e := entry{name: name, mode: hdr.Mode}
	switch hdr.Typeflag {
	case tar.TypeReg:
		e.kind, e.size = kindFile, hdr.Size
	case tar.TypeDir:
		e.kind = kindDir
	case tar.TypeSymlink:
		e.kind, e.link = kindSymlink, hdr.Linkname
		if err := checkLinkTarget(name, hdr.Linkname); err != nil {
			return entry{}, err
		}
	case tar.TypeLink:
		e.kind = kindHardlink
		if e.link, err = cleanName(hdr.Linkname); err != nil || e.link == "" {
			return entry{}, errdefs.InvalidArgument("invalid archive: hard link %s points outside the archive", quote(hdr.Name))
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return entry{}, errdefs.InvalidArgument("invalid archive: %s is a device or fifo", quote(hdr.Name))
	default:
		return entry{}, errdefs.InvalidArgument("invalid archive: %s has the unsupported type %q", quote(hdr.Name), hdr.Typeflag)
	}
	if name == "" {
		if e.kind != kindDir {
			return entry{}, errdefs.InvalidArgument("invalid archive: the root entry %s is not a directory", quote(hdr.Name))
		}
		return e, nil
	}
	if e.kind == kindFile {
		if e.size > s.lim.MaxBytes-s.info.Bytes {
			return entry{}, errdefs.InvalidArgument("invalid archive: more than %d bytes of files", s.lim.MaxBytes)
		}
		s.info.Bytes += e.size
	}
	if err := s.place(e); err != nil {
		return entry{}, err
	}
	if (e.kind == kindFile || e.kind == kindHardlink) && !s.seen[name] {
		s.seen[name] = true
		s.info.Files = append(s.info.Files, name)
	}
	return e, nil
}

// place puts e into the tree. Its parents must be directories (declared
// or implied), never a symlink or a file; a name may repeat only with the
// same kind (a later regular file replaces an earlier one, as tar does).
func (s *scan) place(e entry) error {
	parts := strings.Split(e.name, "/")
	cur := s.root
	var parents []*node
	for _, p := range parts[:len(parts)-1] {
		parents = append(parents, cur)
		next := cur.child(p)
		if next == nil {
			next = &node{kind: kindImplicitDir}
			if cur.children == nil {
				cur.children = map[string]*node{}
			}
			cur.children[p] = next
		}
		switch next.kind {
		case kindSymlink:
			return errdefs.InvalidArgument("invalid archive: %s lies behind a symlink", quote(e.name))
		case kindFile, kindHardlink:
			return errdefs.InvalidArgument("invalid archive: %s lies inside a file", quote(e.name))
		}
		cur = next
	}
	parents = append(parents, cur)
	last := parts[len(parts)-1]
	if old := cur.child(last); old != nil {
		sameKind := old.kind == e.kind || (e.kind == kindDir && old.kind == kindImplicitDir)
		if !sameKind || e.kind == kindSymlink || e.kind == kindHardlink {
			return errdefs.InvalidArgument("invalid archive: %s appears twice with different types", quote(e.name))
		}
		if e.kind == kindDir {
			old.kind = kindDir
		}
		return nil
	}
	if e.kind == kindHardlink {
		if t := s.lookup(e.link); t == nil || t.kind != kindFile {
			return errdefs.InvalidArgument("invalid archive: hard link %s must point to an earlier regular file", quote(e.name))
		}
	}
	n := &node{kind: e.kind, target: e.link}
	if cur.children == nil {
		cur.children = map[string]*node{}
	}
	cur.children[last] = n
	if e.kind == kindSymlink {
		s.symlinks = append(s.symlinks, symlinkRef{name: e.name, parents: parents, target: e.link})
	}
	return nil
}

// lookup finds a clean path in the tree without following symlinks.
func (s *scan) lookup(p string) *node {
	cur := s.root
	for _, part := range strings.Split(p, "/") {
		if cur.kind == kindSymlink {
			return nil
		}
		cur = cur.child(part)
		if cur == nil {
			return nil
		}
	}
	return cur
}

// finish resolves every symlink against the complete tree: each must stay
// inside the root however it is followed.
func (s *scan) finish() error {
	budget := maxResolveSteps
	for _, l := range s.symlinks {
		if !s.staysInside(l, &budget) {
			return errdefs.InvalidArgument("invalid archive: symlink %s -> %s leads outside the archive", quote(l.name), quote(l.target))
		}
	}
	return nil
}

// staysInside follows l's target as path resolution would: component by
// component from the link's directory, ".." going up (never above the
// root), a symlink met on the way replaced by its own target. A component
// the archive does not contain is taken literally; after extraction it
// does not exist, so resolution could only fail there, never escape
// further than this walk allows.
func (s *scan) staysInside(l symlinkRef, budget *int) bool {
	stack := append([]*node(nil), l.parents...) // stack[0] is the root
	pending := reversed(l.target)
	follows := 0
	for len(pending) > 0 {
		*budget--
		if *budget < 0 {
			return false
		}
		c := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 1 {
				return false
			}
			stack = stack[:len(stack)-1]
			continue
		}
		next := stack[len(stack)-1].child(c)
		if next == nil {
			next = &node{kind: kindImplicitDir} // not in the archive
		}
		if next.kind != kindSymlink {
			stack = append(stack, next)
			continue
		}
		follows++
		if follows > maxFollows || strings.HasPrefix(next.target, "/") {
			return false
		}
		pending = append(pending, reversed(next.target)...)
	}
	return true
}

// reversed splits a slash path into components, last first, so the slice
// works as a stack of what is left to resolve.
func reversed(p string) []string {
	parts := strings.Split(p, "/")
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return parts
}

// cleanName checks an entry name and returns it clean and relative ("" for
// the root itself).
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", errdefs.InvalidArgument("invalid archive: an entry has no name")
	case len(name) > maxNameLen:
		return "", errdefs.InvalidArgument("invalid archive: a name is longer than %d bytes", maxNameLen)
	case strings.IndexByte(name, 0) >= 0:
		return "", errdefs.InvalidArgument("invalid archive: %s contains NUL", quote(name))
	case strings.HasPrefix(name, "/"):
		return "", errdefs.InvalidArgument("invalid archive: %s is an absolute path", quote(name))
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", errdefs.InvalidArgument("invalid archive: %s contains ..", quote(name))
		}
	}
	// Without ".." and a leading "/", Clean cannot leave the root.
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// checkLinkTarget refuses symlink targets that leave the root on their
// own; where relative ones lead is checked by finish.
func checkLinkTarget(name, target string) error {
	switch {
	case target == "":
		return errdefs.InvalidArgument("invalid archive: symlink %s has no target", quote(name))
	case len(target) > maxNameLen:
		return errdefs.InvalidArgument("invalid archive: the target of %s is longer than %d bytes", quote(name), maxNameLen)
	case strings.IndexByte(target, 0) >= 0:
		return errdefs.InvalidArgument("invalid archive: the target of %s contains NUL", quote(name))
	case strings.HasPrefix(target, "/"):
		return errdefs.InvalidArgument("invalid archive: symlink %s -> %s is absolute", quote(name), quote(target))
	}
	return nil
}
