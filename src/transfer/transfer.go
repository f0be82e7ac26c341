// Package transfer receives the DEV source uploads of write_data (BEGIN,
// hex chunks, END per transfer id) into the build directory, and inspects
// and extracts archives without letting any entry escape its directory.
//
// State it owns: the active transfers, at most one per container name, and
// their temporary files in Options.Dir. An upload is written to
// `.<fileName>.part-<n>` (0600) and renamed over `<Dir>/<fileName>` only at
// END, after an fsync, so a cancelled or broken upload never leaves a half
// file where a build would read it and a build never reads a mix of two
// uploads.
package transfer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"reagent/src/errdefs"
)

// Texts the app's log topic shows (the reference's, platform.md §8).
const (
	MsgFirstPackage = "Received first package on device!"
	MsgFinished     = "File transfer has finished, starting build..."
)

// Defaults of the Options knobs.
const (
	DefaultMaxSize     = 2 << 30 // 2 GiB
	DefaultIdleTimeout = 30 * time.Minute
	// progressEvery throttles progress to about ten messages a second per
	// transfer; the final 100 % is always sent.
	progressEvery = 100 * time.Millisecond
)

// Error texts of the reference (wamp-contract §3.2 write_data).
const (
	textNoTransfer = "We received a chunk without an active transfer"
	textCanceled   = "canceled"
)

var errClosed = errdefs.Unavailable("transfers are shut down")

// staleRE matches the temporary files Begin creates; New removes those a
// previous run left behind.
var staleRE = regexp.MustCompile(`^\.[A-Za-z0-9][A-Za-z0-9._-]*\.part-[0-9]+$`)

// Options configure a Manager. Dir is required; nil funcs do nothing.
type Options struct {
	Dir string // <appsDir>/build; created 0700 when missing
	// Progress reports how much of fileName arrived for container name, in
	// percent; the log relay publishes it on the app's log topic
	// ((*logs.Relay).TransferProgress). At most ~10 a second per transfer,
	// plus the final 100.
	Progress func(name, fileName string, pct float64)
	// Message writes an agent message to the app's log topic (the relay's
	// Write): MsgFirstPackage at BEGIN, MsgFinished at END.
	Message func(name, text string)
	// ClearHistory clears the app's log history at BEGIN, as the reference
	// does before a new upload.
	ClearHistory func(name string)
	// Dropped is told when a transfer ends without END succeeding: a write
	// error, an upload larger than announced, a bad chunk, an incomplete
	// upload at END, an idle timeout. Not for Cancel, a superseding BEGIN
	// or Close, whose callers know. The reconciler reports a TRANSFERING
	// app as REMOVED then (the reference's behaviour).
	Dropped func(name string, err error)
	// MaxSize bounds one upload (the announced total and the bytes
	// written); 0 → DefaultMaxSize.
	MaxSize int64
	// IdleTimeout drops a transfer nobody wrote to for this long, checked
	// at every BEGIN; 0 → DefaultIdleTimeout, < 0 → never.
	IdleTimeout time.Duration
	Now         func() time.Time // nil → time.Now
	Log         zerolog.Logger
}

// Manager owns the active transfers. Its methods are safe for concurrent
// use; chunks of one transfer are written one at a time.
type Manager struct {
	opts Options
	root *os.Root // Dir: every file operation goes through it, so nothing lands outside
	log  zerolog.Logger

	mu     sync.Mutex // guards the fields below; never held during I/O or callbacks
	active map[string]*transfer
	closed bool
}

// transfer is one upload. The fields above token are fixed at Begin.
type transfer struct {
	name, fileName, id string
	total              uint64
	tmp                string       // the temporary file's name in Dir
	lastUse            atomic.Int64 // unix nanoseconds of the last call for it

	// token (capacity 1) is held while the file is written, finished or
	// discarded; holding it owns the fields below.
	token        chan struct{}
	f            *os.File // nil once the transfer finished (END, cancel, drop)
	written      uint64
	lastProgress time.Time
	sent100      bool
}

// New creates Dir if needed and removes the temporary files of a previous
// run. It starts nothing.
func New(opts Options) (*Manager, error) {
	if opts.Dir == "" {
		return nil, errdefs.InvalidArgument("transfer: Options.Dir is required")
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the build dir: %w", err)
	}
	root, err := os.OpenRoot(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open the build dir: %w", err)
	}
	m := &Manager{opts: opts, root: root, active: map[string]*transfer{},
		log: opts.Log.With().Str("component", "transfer").Logger()}
	if err := m.removeStale(); err != nil {
		root.Close()
		return nil, err
	}
	return m, nil
}

func (m *Manager) removeStale() error {
	entries, err := fs.ReadDir(m.root.FS(), ".")
	if err != nil {
		return fmt.Errorf("list the build dir: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !staleRE.MatchString(e.Name()) {
			continue
		}
		if err := m.root.Remove(e.Name()); err != nil {
			return fmt.Errorf("remove a stale upload: %w", err)
		}
		m.log.Info().Str("file", e.Name()).Msg("removed a stale upload")
	}
	return nil
}

// Begin starts a transfer of fileName for container name, replacing (and
// discarding) any transfer that container had.
func (m *Manager) Begin(ctx context.Context, name, fileName, id string, total uint64) error {
	if err := validate(name, id); err != nil {
		return err
	}
	if err := ValidateFileName(fileName); err != nil {
		return err
	}
	if total > uint64(m.opts.MaxSize) {
		return errdefs.InvalidArgument("the upload of %d bytes exceeds the limit of %d bytes", total, m.opts.MaxSize)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.isClosed() {
		return errClosed
	}
	f, tmp, err := m.createTemp(fileName)
	if err != nil {
		return err
	}
	t := &transfer{name: name, fileName: fileName, id: id, total: total, tmp: tmp, f: f, token: make(chan struct{}, 1)}
	now := m.opts.Now()
	t.lastUse.Store(now.UnixNano())

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.discard(t)
		return errClosed
	}
	old := m.active[name]
	m.active[name] = t
	idle := m.takeIdleLocked(now)
	m.mu.Unlock()

	log := m.log.With().Str("container", name).Str("file", fileName).Str("id", id).Logger()
	if old != nil {
		m.discard(old)
		log.Info().Str("old_id", old.id).Msg("upload superseded by a new one")
	}
	for _, x := range idle {
		m.discard(x)
		m.dropped(x, errdefs.Unavailable("the upload of %s was idle for more than %s", x.fileName, m.opts.IdleTimeout))
	}
	if m.opts.ClearHistory != nil {
		m.opts.ClearHistory(name)
	}
	m.message(name, MsgFirstPackage)
	log.Info().Uint64("total", total).Msg("upload started")
	return nil
}

// Chunk appends hex-encoded data to the active transfer of name. A chunk
// of another id than the active one is ignored (the reference's rule: a
// late chunk of a superseded upload must not land in the new one).
func (m *Manager) Chunk(ctx context.Context, name, id, hexData string) error {
	if err := validate(name, id); err != nil {
		return err
	}
	t := m.lookup(name)
	if t == nil {
		return errdefs.Conflict(textNoTransfer)
	}
	if t.id != id {
		m.log.Debug().Str("container", name).Str("id", id).Str("active_id", t.id).Msg("chunk of another upload ignored")
		return nil
	}
	data, err := hex.DecodeString(hexData)
	if err != nil {
		return m.drop(t, errdefs.InvalidArgument("failed to decode chunk: %v", err))
	}
	if err := t.acquire(ctx); err != nil {
		return err
	}
	if t.f == nil {
		t.release()
		return errdefs.Conflict(textCanceled)
	}
	now := m.opts.Now()
	t.lastUse.Store(now.UnixNano())
	n := uint64(len(data))
	if n > t.total-t.written {
		return m.dropHeld(t, errdefs.InvalidArgument("the upload of %s is larger than its announced %d bytes", t.fileName, t.total))
	}
	if _, err := t.f.Write(data); err != nil {
		return m.dropHeld(t, fmt.Errorf("write the upload of %s: %w", t.fileName, err))
	}
	t.written += n
	pct, due := t.progressDue(now)
	t.release()
	if due {
		m.progress(t, pct)
	}
	return nil
}

// End finishes the active transfer of name: the data is synced and
// renamed over <Dir>/<fileName>, whose path is returned. An END of another
// id than the active one is ignored ("", nil).
func (m *Manager) End(ctx context.Context, name, id string) (string, error) {
	if err := validate(name, id); err != nil {
		return "", err
	}
	t := m.lookup(name)
	if t == nil {
		return "", errdefs.Conflict(textNoTransfer)
	}
	if t.id != id {
		m.log.Debug().Str("container", name).Str("id", id).Str("active_id", t.id).Msg("END of another upload ignored")
		return "", nil
	}
	if err := t.acquire(ctx); err != nil {
		return "", err
	}
	if t.f == nil {
		t.release()
		return "", errdefs.Conflict(textCanceled)
	}
	if t.written != t.total {
		return "", m.dropHeld(t, errdefs.InvalidArgument("the upload of %s is incomplete: %d of %d bytes arrived", t.fileName, t.written, t.total))
	}
	if err := m.commit(t); err != nil {
		return "", m.dropHeld(t, fmt.Errorf("store the upload of %s: %w", t.fileName, err))
	}
	m.detach(t)
	send100 := !t.sent100
	t.sent100 = true
	t.release()
	if send100 {
		m.progress(t, 100)
	}
	m.message(name, MsgFinished)
	m.log.Info().Str("container", name).Str("file", t.fileName).Uint64("bytes", t.written).Msg("upload finished")
	return filepath.Join(m.opts.Dir, t.fileName), nil
}

// commit makes the temporary file the final one: fsync, close, rename,
// fsync the directory so the rename survives a power cut. Holding t.token.
func (m *Manager) commit(t *transfer) error {
	f := t.f
	t.f = nil
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := m.root.Rename(t.tmp, t.fileName); err != nil {
		return err
	}
	d, err := m.root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Cancel discards the active transfer of name, if any: its temporary file
// is removed and the final path is left as it was. It reports whether
// there was one. The reconciler calls it when a state request supersedes
// the upload.
func (m *Manager) Cancel(name string) bool {
	m.mu.Lock()
	t := m.active[name]
	delete(m.active, name)
	m.mu.Unlock()
	if t == nil {
		return false
	}
	m.discard(t)
	m.log.Info().Str("container", name).Str("file", t.fileName).Msg("upload cancelled")
	return true
}

// Active reports whether container name has a transfer in progress.
func (m *Manager) Active(name string) bool {
	return m.lookup(name) != nil
}

// Close discards every active transfer and refuses new ones. An
// interrupted upload cannot be resumed, so its data is of no use.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	all := m.active
	m.active = map[string]*transfer{}
	m.mu.Unlock()
	for _, t := range all {
		m.discard(t)
	}
	return m.root.Close()
}

func (m *Manager) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

func (m *Manager) lookup(name string) *transfer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active[name]
}

// detach removes t from the table unless a newer transfer replaced it.
func (m *Manager) detach(t *transfer) {
	m.mu.Lock()
	if m.active[t.name] == t {
		delete(m.active, t.name)
	}
	m.mu.Unlock()
}

// takeIdleLocked removes and returns the transfers idle for longer than
// IdleTimeout.
func (m *Manager) takeIdleLocked(now time.Time) []*transfer {
	if m.opts.IdleTimeout < 0 {
		return nil
	}
	var idle []*transfer
	for name, t := range m.active {
		if now.Sub(time.Unix(0, t.lastUse.Load())) > m.opts.IdleTimeout {
			delete(m.active, name)
			idle = append(idle, t)
		}
	}
	return idle
}

// discard closes and removes t's temporary file once no chunk is being
// written to it. Idempotent.
func (m *Manager) discard(t *transfer) {
	t.token <- struct{}{} // waits for a chunk in progress: one bounded disk write
	m.discardHeld(t)
	t.release()
}

// discardHeld is discard for a caller holding t.token.
func (m *Manager) discardHeld(t *transfer) {
	if t.f == nil {
		return
	}
	t.f.Close()
	t.f = nil
	if err := m.root.Remove(t.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.Warn().Err(err).Str("file", t.tmp).Msg("remove an unfinished upload")
	}
}

// drop ends t because of err and returns err.
func (m *Manager) drop(t *transfer, err error) error {
	m.detach(t)
	m.discard(t)
	m.dropped(t, err)
	return err
}

// dropHeld is drop for a caller holding t.token; it releases it.
func (m *Manager) dropHeld(t *transfer, err error) error {
	m.detach(t)
	m.discardHeld(t)
	t.release()
	m.dropped(t, err)
	return err
}

func (m *Manager) dropped(t *transfer, err error) {
	m.log.Warn().Err(err).Str("container", t.name).Str("file", t.fileName).Str("id", t.id).Msg("upload dropped")
	if m.opts.Dropped != nil {
		m.opts.Dropped(t.name, err)
	}
}

func (m *Manager) progress(t *transfer, pct float64) {
	if m.opts.Progress != nil {
		m.opts.Progress(t.name, t.fileName, pct)
	}
}

func (m *Manager) message(name, text string) {
	if m.opts.Message != nil {
		m.opts.Message(name, text)
	}
}

// createTemp creates `.<fileName>.part-<random>` in Dir, 0600, exclusively.
func (m *Manager) createTemp(fileName string) (*os.File, string, error) {
	for range 16 {
		tmp := "." + fileName + ".part-" + strconv.FormatUint(rand.Uint64(), 10)
		f, err := m.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("create the upload file for %s: %w", fileName, err)
		}
		return f, tmp, nil
	}
	return nil, "", fmt.Errorf("create the upload file for %s: no free temporary name", fileName)
}

func validate(name, id string) error {
	if err := ValidateContainerName(name); err != nil {
		return err
	}
	return ValidateID(id)
}

func (t *transfer) acquire(ctx context.Context) error {
	select {
	case t.token <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *transfer) release() { <-t.token }

// progressDue says whether a progress message is due after a write and
// with which percentage. Holding t.token.
func (t *transfer) progressDue(now time.Time) (float64, bool) {
	if t.total == 0 || t.sent100 {
		return 0, false
	}
	if t.written == t.total {
		t.sent100 = true
		return 100, true
	}
	if now.Sub(t.lastProgress) < progressEvery {
		return 0, false
	}
	t.lastProgress = now
	return float64(t.written) / float64(t.total) * 100, true
}
