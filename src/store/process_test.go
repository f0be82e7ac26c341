package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"reagent/src/errdefs"
)

// These tests run the test binary itself as a child process (helperMain,
// selected by the STORE_HELPER environment variable). A child prints one
// line per committed write, after the commit returned:
//
//	C outbox <id>          an Enqueue
//	C req <app_key> <gen>  a PutRequested
//	C log <name> <seq>     an AppendLogs batch whose last line has seq
//	E <class> <message>    a failed write; the child stops (exit code 3)
//
// A writer first prints "R" and waits for a line on stdin, so that both
// writers open the new database and write at the same moment.

const (
	envHelper = "STORE_HELPER" // "crash" or "writer"
	envDB     = "STORE_HELPER_DB"
	envID     = "STORE_HELPER_ID"
	envN      = "STORE_HELPER_N"

	sharedApp = 100 // both writers put the requested state of this app
)

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(envHelper)
	if mode == "" {
		t.Skip("only runs as a child of the process tests")
	}
	os.Exit(helperMain(mode))
}

func helperMain(mode string) int {
	id, _ := strconv.Atoi(os.Getenv(envID))
	n, _ := strconv.Atoi(os.Getenv(envN))
	ctx := context.Background()
	if mode == "writer" {
		fmt.Println("R")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			fmt.Printf("E other start signal: %v\n", err)
			return 3
		}
	}
	s, err := Open(ctx, os.Getenv(envDB), Options{LogMaxLines: 1 << 30, LogMaxBytes: 1 << 40, OutboxMax: 1 << 30})
	if err != nil {
		fmt.Printf("E %s open: %v\n", errClass(err), err)
		return 3
	}
	var (
		mu  sync.Mutex // one line at a time on stdout
		say = func(format string, args ...any) {
			mu.Lock()
			fmt.Printf(format+"\n", args...)
			mu.Unlock()
		}
		failed = make(chan struct{})
		once   sync.Once
		fail   = func(err error) {
			say("E %s %v", errClass(err), err)
			once.Do(func() { close(failed) })
		}
	)
	switch mode {
	case "crash":
		// Three goroutines write until the parent kills the process.
		for g := range 3 {
			go func() {
				for i := 0; ; i++ {
					if err := writeOnce(ctx, s, g, i, say); err != nil {
						fail(err)
						return
					}
				}
			}()
		}
		<-failed
		return 3
	case "writer":
		for i := range n {
			if err := writeOnce(ctx, s, id, i, say); err != nil {
				fail(err)
				_ = s.Close()
				return 3
			}
		}
		if err := s.Close(); err != nil {
			fmt.Printf("E %s close: %v\n", errClass(err), err)
			return 3
		}
		return 0
	}
	return 4
}

// writeOnce does one round of writes of worker w: an outbox entry, a put of
// the shared app's requested state, 20 lines to a log of its own and 20 to a
// shared one.
func writeOnce(ctx context.Context, s *Store, w, i int, say func(string, ...any)) error {
	id, err := s.Enqueue(ctx, "reswarm.containers.update_app_on_device", []byte(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)))
	if err != nil {
		return err
	}
	say("C outbox %d", id)
	r, err := s.PutRequested(ctx, Requested{
		Key: Key{AppKey: sharedApp, Stage: "PROD"}, AppName: "shared", TargetState: "RUNNING",
		Version: fmt.Sprintf("%d.%d", w, i), Environment: []byte(`{"A":{"value":"x"}}`),
	})
	if err != nil {
		return err
	}
	say("C req %d %d", sharedApp, r.Generation)
	for _, name := range []string{fmt.Sprintf("prod_%d_w", w+1), "prod_100_shared"} {
		lines := make([]LogLine, 20)
		for j := range lines {
			lines[j] = LogLine{Stream: "stdout", Text: fmt.Sprintf("worker %d round %d line %d %s", w, i, j, strings.Repeat("x", j*7))}
		}
		out, err := s.AppendLogs(ctx, name, Key{AppKey: uint64(w + 1), Stage: "PROD"}, lines)
		if err != nil {
			return err
		}
		say("C log %s %d", name, out[len(out)-1].Seq)
	}
	return nil
}

func errClass(err error) string {
	switch {
	case errors.Is(err, errdefs.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, errdefs.ErrConflict):
		return "conflict"
	}
	return "other"
}

// child is a running helper process and the lines it printed.
type child struct {
	cmd   *exec.Cmd
	lines chan string    // C and E lines; closed at EOF
	ready chan struct{}  // closed when the child printed R
	start io.WriteCloser // a line here lets a writer go
}

func startChild(t *testing.T, mode, db string, id, n int) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envHelper+"="+mode, envDB+"="+db, envID+"="+strconv.Itoa(id), envN+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan string, 1024), ready: make(chan struct{}), start: start}
	t.Cleanup(func() {
		// A child still running at the end of a failed test is ours to stop.
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			switch l := sc.Text(); {
			case l == "R":
				close(c.ready)
			case strings.HasPrefix(l, "C "), strings.HasPrefix(l, "E "):
				c.lines <- l
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	return c
}

// commits collects what children reported committed.
type commits struct {
	outbox map[uint64]bool
	gens   map[uint64]int      // generation → how many times reported
	logs   map[string][]uint64 // log name → last seqs of batches
	errors []string
	n      int // commit lines
}

func newCommits() *commits {
	return &commits{outbox: map[uint64]bool{}, gens: map[uint64]int{}, logs: map[string][]uint64{}}
}

func (c *commits) add(t *testing.T, line string) {
	t.Helper()
	f := strings.Fields(line)
	if f[0] == "E" {
		c.errors = append(c.errors, line)
		return
	}
	c.n++
	num := func(s string) uint64 {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("bad child line %q", line)
		}
		return v
	}
	switch f[1] {
	case "outbox":
		c.outbox[num(f[2])] = true
	case "req":
		c.gens[num(f[3])]++
	case "log":
		c.logs[f[2]] = append(c.logs[f[2]], num(f[3]))
	default:
		t.Fatalf("bad child line %q", line)
	}
}

func (c *commits) count() int { return c.n }

func (c *commits) merge(o *commits) {
	for id := range o.outbox {
		c.outbox[id] = true
	}
	for g, n := range o.gens {
		c.gens[g] += n
	}
	for name, seqs := range o.logs {
		c.logs[name] = append(c.logs[name], seqs...)
	}
	c.errors = append(c.errors, o.errors...)
	c.n += o.n
}

// genRange returns the lowest and highest generation reported.
func (c *commits) genRange() (lo, hi uint64) {
	lo = ^uint64(0)
	for g := range c.gens {
		lo, hi = min(lo, g), max(hi, g)
	}
	return lo, hi
}

// verify checks that everything reported committed is in the store at path.
func (c *commits) verify(t *testing.T, path string) *Store {
	t.Helper()
	ctx := ctxT(t)
	s := openAt(t, path, Options{LogMaxLines: 1 << 30, LogMaxBytes: 1 << 40, OutboxMax: 1 << 30})
	integrityCheck(t, s.db)
	for id := range c.outbox {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE id = ?`, id).Scan(&n); err != nil || n != 1 {
			t.Fatalf("committed outbox entry %d missing (%v)", id, err)
		}
	}
	if len(c.gens) > 0 {
		r, err := s.GetRequested(ctx, Key{AppKey: sharedApp, Stage: "PROD"})
		if err != nil {
			t.Fatal(err)
		}
		for g, times := range c.gens {
			if times != 1 {
				t.Fatalf("generation %d reported %d times", g, times)
			}
			if g > r.Generation {
				t.Fatalf("committed generation %d lost: stored generation is %d", g, r.Generation)
			}
		}
	}
	for name, seqs := range c.logs {
		for _, seq := range seqs {
			var n int
			if err := s.db.QueryRowContext(ctx, `
				SELECT COUNT(*) FROM log_lines WHERE key = ((SELECT id FROM log_streams WHERE name = ?) << ?) | ?`,
				name, seqBits, seq).Scan(&n); err != nil || n != 1 {
				t.Fatalf("committed line %s/%d missing (%v)", name, seq, err)
			}
		}
		checkStreamAccounting(t, s, name)
	}
	return s
}

func TestCrashDuringWritesLosesNothingCommitted(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	all := newCommits()
	const rounds = 3
	for round := range rounds {
		got := newCommits()
		c := startChild(t, "crash", path, 0, 0)
		deadline := time.After(60 * time.Second)
		killAt := []int{200, 1500, 4000}[round]
	read:
		for got.count() < killAt {
			select {
			case l, ok := <-c.lines:
				if !ok {
					break read
				}
				got.add(t, l)
			case <-deadline:
				t.Fatalf("round %d: only %d commits before the deadline", round, got.count())
			}
		}
		if err := c.cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		for l := range c.lines { // what was printed before the kill
			got.add(t, l)
		}
		err := c.cmd.Wait()
		if len(got.errors) > 0 {
			t.Fatalf("round %d: child failed: %v", round, got.errors)
		}
		if got.count() < killAt {
			t.Fatalf("round %d: child exited early (%v) after %d commits", round, err, got.count())
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("round %d: child was not killed: %v", round, err)
		}
		// A clean close would have checkpointed and removed the WAL.
		if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
			t.Fatalf("round %d: no WAL left behind by the killed child (%v)", round, err)
		}
		all.merge(got)
		s := all.verify(t, path)
		t.Logf("round %d: %d commits reported before SIGKILL, all present", round, got.count())
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTwoProcessesWritingOneDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "shared.db") // new: both also race to create and migrate it
	const rounds = 150
	children := []*child{startChild(t, "writer", path, 0, rounds), startChild(t, "writer", path, 1, rounds)}
	for i, c := range children {
		select {
		case <-c.ready:
		case <-time.After(60 * time.Second):
			t.Fatalf("child %d did not start", i)
		}
	}
	for _, c := range children {
		if _, err := io.WriteString(c.start, "go\n"); err != nil {
			t.Fatal(err)
		}
	}
	// Both children are read at once, so neither stalls on a full pipe.
	raw := make([][]string, len(children))
	var wg sync.WaitGroup
	for i, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range c.lines {
				raw[i] = append(raw[i], l)
			}
		}()
	}
	wg.Wait()
	got := newCommits()
	perChild := make([]*commits, len(children))
	for i, c := range children {
		perChild[i] = newCommits()
		for _, l := range raw[i] {
			perChild[i].add(t, l)
		}
		err := c.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee) && ee.ExitCode() == 3:
			// A clean failure: the child reported an error of class
			// unavailable (lock held beyond the busy timeout) and exited.
		default:
			t.Fatalf("child %d: %v", i, err)
		}
		got.merge(perChild[i])
	}
	for _, e := range got.errors {
		if !strings.HasPrefix(e, "E unavailable ") {
			t.Fatalf("child failed with something other than a clean busy error: %s", e)
		}
	}
	s := got.verify(t, path)
	ctx := ctxT(t)

	// Nothing beyond what was reported either: every put got its own
	// generation, every enqueue its own id, every line its own seq.
	r, err := s.GetRequested(ctx, Key{AppKey: sharedApp, Stage: "PROD"})
	if err != nil {
		t.Fatal(err)
	}
	if int(r.Generation) != len(got.gens) {
		t.Fatalf("generation %d after %d reported puts", r.Generation, len(got.gens))
	}
	if n, err := s.OutboxLen(ctx); err != nil || n != len(got.outbox) {
		t.Fatalf("outbox holds %d, %d reported (%v)", n, len(got.outbox), err)
	}
	shared, err := s.QueryLogs(ctx, "prod_100_shared", LogQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if want := 20 * len(got.logs["prod_100_shared"]); len(shared.Lines) != want {
		t.Fatalf("shared log holds %d lines, %d reported", len(shared.Lines), want)
	}
	// Both were released at once (the start barrier), but SQLite's lock
	// is not fair between processes: the loser sleeps in its busy handler
	// and may only get in when the other is done. Usually the generations
	// interleave; the log shows how it went.
	lo0, hi0 := perChild[0].genRange()
	lo1, hi1 := perChild[1].genRange()
	t.Logf("generations child 0: %d..%d, child 1: %d..%d; errors %d", lo0, hi0, lo1, hi1, len(got.errors))
	if len(got.errors) == 0 && len(got.outbox) != 2*rounds {
		t.Fatalf("both children finished but %d of %d enqueues were reported", len(got.outbox), 2*rounds)
	}
}

func TestALockHeldElsewhereFailsCleanly(t *testing.T) {
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "locked.db")
	s := openAt(t, path, Options{BusyTimeout: 100 * time.Millisecond})
	k := Key{AppKey: 1, Stage: "PROD"}
	if _, err := s.PutRequested(ctx, Requested{Key: k, AppName: "a", TargetState: "RUNNING"}); err != nil {
		t.Fatal(err)
	}

	// Another "process": its own connection holding the write lock.
	other := rawDB(t, path)
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}

	_, err = s.PutRequested(ctx, Requested{Key: k, AppName: "a", TargetState: "PRESENT"})
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("write under a foreign lock: %v, want class unavailable", err)
	}
	// Readers are not blocked by a writer in WAL mode, and the failed write
	// changed nothing.
	r, err := s.GetRequested(ctx, k)
	if err != nil || r.TargetState != "RUNNING" || r.Generation != 1 {
		t.Fatalf("read under a foreign lock: %+v %v", r, err)
	}
	// Opening a second store on the same migrated file needs no write lock.
	second := openAt(t, path, Options{BusyTimeout: 100 * time.Millisecond})
	if _, err := second.ListRequested(ctx); err != nil {
		t.Fatal(err)
	}
	// A new file that must be migrated cannot be, and says so.
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	freshOther := rawDB(t, fresh)
	fconn, err := freshOther.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer fconn.Close()
	if _, err := fconn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, fresh, Options{BusyTimeout: 100 * time.Millisecond}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Open of a locked new file: %v, want class unavailable", err)
	}

	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if r, err = s.PutRequested(ctx, Requested{Key: k, AppName: "a", TargetState: "PRESENT"}); err != nil || r.Generation != 2 {
		t.Fatalf("after the lock is gone: %+v %v", r, err)
	}
}
