package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"reagent/src/errdefs"
)

func TestPragmasAreAppliedOnEveryConnection(t *testing.T) {
	cases := []struct {
		name string
		busy time.Duration
		want int
	}{
		{"default", 0, 5000},
		{"custom", 1234 * time.Millisecond, 1234},
		{"sub-millisecond rounds up", time.Microsecond, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openOpts(t, Options{BusyTimeout: c.busy})
			ctx := ctxT(t)
			// Hold every connection of the pool at once, so each one is
			// checked, not the same one again.
			for i := 0; i < maxConns; i++ {
				conn, err := s.db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				var (
					mode                 string
					busy, fk, syn, cache int
				)
				for _, q := range []struct {
					pragma string
					dest   any
				}{
					{"journal_mode", &mode}, {"busy_timeout", &busy}, {"foreign_keys", &fk}, {"synchronous", &syn},
					{"cache_size", &cache},
				} {
					if err := conn.QueryRowContext(ctx, "PRAGMA "+q.pragma).Scan(q.dest); err != nil {
						t.Fatalf("PRAGMA %s: %v", q.pragma, err)
					}
				}
				if mode != "wal" || busy != c.want || fk != 1 || syn != 1 || cache != -cacheKiB {
					t.Fatalf("connection %d: journal_mode=%s busy_timeout=%d foreign_keys=%d synchronous=%d cache_size=%d; "+
						"want wal %d 1 1 (NORMAL) %d", i, mode, busy, fk, syn, cache, c.want, -cacheKiB)
				}
			}
		})
	}
}

func TestForeignKeysAreEnforced(t *testing.T) {
	s := openTest(t)
	_, err := s.db.Exec(`INSERT INTO history (app_key, stage, seq, from_state, to_state, version, release_key, reason, at)
		VALUES (999, 'PROD', 1, '', 'RUNNING', '', 0, '', 0)`)
	if err == nil || !strings.Contains(err.Error(), "FOREIGN KEY") {
		t.Fatalf("history of an app without actual state: err = %v, want a FOREIGN KEY failure", err)
	}
}

func TestFileAndDirectoryPermissions(t *testing.T) {
	ctx := ctxT(t)
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "reagent.db")
	s := openAt(t, path, Options{})
	if err := s.SetMeta(ctx, "k", "v"); err != nil { // makes SQLite create -wal and -shm
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{filepath.Dir(dir), 0o700}, {dir, 0o700}, {path, 0o600}, {path + "-wal", 0o600}, {path + "-shm", 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != c.want {
			t.Errorf("%s: mode %o, want %o", c.path, got, c.want)
		}
	}
}

func TestOpenNarrowsAnExistingWideFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	openAt(t, path, Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o, want 600", fi.Mode().Perm())
	}
}

func TestOpenRejectsAmbiguousPaths(t *testing.T) {
	for _, p := range []string{"", "/tmp/x.db?mode=ro", "/tmp/x#y.db"} {
		_, err := Open(context.Background(), p, Options{})
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Open(%q) = %v, want invalid argument", p, err)
		}
	}
}

func TestOpenFailsOnANonDatabaseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database ", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), path, Options{})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open on junk = %v, want an error naming the file", err)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	k := Key{AppKey: 7, Stage: "PROD"}
	if _, err := s.PutRequested(ctx, Requested{Key: k, AppName: "app", TargetState: "RUNNING"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendLogs(ctx, "prod_7_app", k, []LogLine{{Stream: "stdout", Text: "hello"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(ctx, "reswarm.containers.update_app_on_device", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, Options{})
	if r, err := s.GetRequested(ctx, k); err != nil || r.TargetState != "RUNNING" || r.Generation != 1 {
		t.Fatalf("requested after reopen: %+v, %v", r, err)
	}
	if l, ok, err := s.LastLog(ctx, "prod_7_app"); err != nil || !ok || l.Text != "hello" || l.Seq != 1 {
		t.Fatalf("last log after reopen: %+v %v %v", l, ok, err)
	}
	if n, err := s.OutboxLen(ctx); err != nil || n != 1 {
		t.Fatalf("outbox after reopen: %d, %v", n, err)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	s := openTest(t)
	ctx := ctxT(t)
	if _, ok, err := s.GetMeta(ctx, "docker.privilege_level"); err != nil || ok {
		t.Fatalf("missing key: ok=%v err=%v", ok, err)
	}
	for _, v := range []string{"full", "", "restricted"} {
		if err := s.SetMeta(ctx, "docker.privilege_level", v); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.GetMeta(ctx, "docker.privilege_level")
		if err != nil || !ok || got != v {
			t.Fatalf("after SetMeta(%q): %q %v %v", v, got, ok, err)
		}
	}
	if err := s.SetMeta(ctx, "", "x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("empty key: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	s := openOpts(t, Options{})
	o := s.opts
	if o.LogMaxLines != 20000 || o.LogMaxBytes != 8<<20 || o.HistoryMax != 200 || o.OutboxMax != 100000 ||
		o.BusyTimeout != 5*time.Second || o.Now == nil {
		t.Fatalf("defaults: %+v", o)
	}
}

func TestACancelledContextWritesNothing(t *testing.T) {
	s := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k := Key{AppKey: 1, Stage: "DEV"}
	if _, err := s.PutRequested(ctx, Requested{Key: k, AppName: "a", TargetState: "RUNNING"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutRequested with a cancelled context: %v", err)
	}
	if _, err := s.AppendLogs(ctx, "dev_1_a", k, []LogLine{{Stream: "stdout", Text: "x"}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("AppendLogs with a cancelled context: %v", err)
	}
	c := ctxT(t)
	if _, err := s.GetRequested(c, k); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a cancelled put was stored: %v", err)
	}
	if _, ok, err := s.LastLog(c, "dev_1_a"); ok || err != nil {
		t.Fatalf("a cancelled append was stored: %v %v", ok, err)
	}
}
