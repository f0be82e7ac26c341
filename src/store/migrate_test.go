package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"reagent/src/errdefs"
)

func latestVersion(t testing.TB) int {
	t.Helper()
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

func TestThereAreSeveralMigrations(t *testing.T) {
	// The "every earlier version" test below only means something with more
	// than one step.
	if n := latestVersion(t); n < 2 {
		t.Fatalf("%d migrations", n)
	}
}

// seeds are rows written with the schema of one version, before the
// database is brought up to date: data written by an older agent.
var seeds = map[int]string{
	1: `INSERT INTO requested (app_key, stage, app_name, target_state, version, release_key, environment,
	        docker_credentials, app_cred_epoch, instance_key, generation, created_at, updated_at)
	    VALUES (42, 'PROD', 'old', 'RUNNING', '1.0.0', 9, '{"A":{"value":"1"}}', '{"reg":{"username":"u"}}', 3, 77, 4, 1, 2);
	    INSERT INTO generations (app_key, stage, generation) VALUES (42, 'PROD', 4);
	    INSERT INTO actual (app_key, stage, app_name, state, version, release_key, updated_at, history_seq)
	    VALUES (42, 'PROD', 'old', 'RUNNING', '1.0.0', 9, 2, 1);
	    INSERT INTO history (app_key, stage, seq, from_state, to_state, version, release_key, reason, at)
	    VALUES (42, 'PROD', 1, 'PRESENT', 'RUNNING', '1.0.0', 9, '', 2);
	    INSERT INTO host_ports (protocol, host_port, app_key, stage, declared_port, service)
	    VALUES ('tcp', 40001, 42, 'PROD', 80, '');
	    INSERT INTO meta (key, value) VALUES ('docker.privilege_level', 'full');`,
	2: `INSERT INTO log_streams (id, name, app_key, stage, next_seq, first_seq, bytes) VALUES (5, 'prod_42_old', 42, 'PROD', 3, 1, 6);
	    INSERT INTO log_lines (key, size, at, kind, text) VALUES ((5 << 44) | 1, 3, 10, 'stdout', 'one'), ((5 << 44) | 2, 3, 11, 'stderr', 'two');`,
	3: `INSERT INTO outbox (procedure, payload, created_at) VALUES ('reswarm.containers.update_app_on_device', '{"x":1}', 5);`,
}

func TestMigrateFromEveryEarlierVersion(t *testing.T) {
	latest := latestVersion(t)
	for v := range seeds {
		if v > latest {
			t.Fatalf("seed for version %d beyond latest %d", v, latest)
		}
	}
	want := schemaOf(t, freshSchemaDB(t))
	for from := 0; from <= latest; from++ {
		t.Run(fmt.Sprintf("from_%d", from), func(t *testing.T) {
			ctx := ctxT(t)
			path := filepath.Join(t.TempDir(), "old.db")
			db := rawDB(t, path)
			if err := migrateTo(ctx, db, from); err != nil {
				t.Fatalf("migrateTo(%d): %v", from, err)
			}
			for v := 1; v <= from; v++ {
				if _, err := db.ExecContext(ctx, seeds[v]); err != nil {
					t.Fatalf("seed v%d: %v", v, err)
				}
			}
			if got := mustUserVersion(t, db); got != from {
				t.Fatalf("user_version %d, want %d", got, from)
			}
			_ = db.Close()

			s := openAt(t, path, Options{})
			if got := mustUserVersion(t, s.db); got != latest {
				t.Fatalf("after Open: user_version %d, want %d", got, latest)
			}
			if got := schemaOf(t, s.db); got != want {
				t.Fatalf("schema migrated from %d differs from a fresh one:\n%s\nwant:\n%s", from, got, want)
			}
			checkSeeds(t, s, from)
			exercise(t, s)
			integrityCheck(t, s.db)
		})
	}
}

// checkSeeds verifies that the rows of seeds up to version from read back
// through the API.
func checkSeeds(t *testing.T, s *Store, from int) {
	t.Helper()
	ctx := ctxT(t)
	k := Key{AppKey: 42, Stage: "PROD"}
	if from >= 1 {
		r, err := s.GetRequested(ctx, k)
		if err != nil || r.AppName != "old" || r.Generation != 4 || r.InstanceKey != 77 || r.AppCredEpoch != 3 ||
			string(r.DockerCredentials) != `{"reg":{"username":"u"}}` {
			t.Fatalf("requested seed: %+v, %v", r, err)
		}
		if r, err = s.PutRequested(ctx, r); err != nil || r.Generation != 5 {
			t.Fatalf("put after migration: generation %d, %v", r.Generation, err)
		}
		a, err := s.GetActual(ctx, k)
		if err != nil || a.State != "RUNNING" {
			t.Fatalf("actual seed: %+v, %v", a, err)
		}
		h, err := s.History(ctx, k, 0)
		if err != nil || len(h) != 1 || h[0].To != "RUNNING" {
			t.Fatalf("history seed: %+v, %v", h, err)
		}
		hp, err := s.HostPorts(ctx)
		if err != nil || len(hp) != 1 || hp[0].HostPort != 40001 {
			t.Fatalf("host port seed: %+v, %v", hp, err)
		}
		if v, ok, err := s.GetMeta(ctx, "docker.privilege_level"); err != nil || !ok || v != "full" {
			t.Fatalf("meta seed: %q %v %v", v, ok, err)
		}
	}
	if from >= 2 {
		res, err := s.QueryLogs(ctx, "prod_42_old", LogQuery{})
		if err != nil || len(res.Lines) != 2 || res.Lines[1].Text != "two" {
			t.Fatalf("log seed: %+v, %v", res, err)
		}
		got, err := s.AppendLogs(ctx, "prod_42_old", k, []LogLine{{Stream: "agent", Text: "three"}})
		if err != nil || got[0].Seq != 3 {
			t.Fatalf("append after migration: %+v, %v", got, err)
		}
	}
	if from >= 3 {
		out, err := s.PeekOutbox(ctx, 10)
		if err != nil || len(out) != 1 || string(out[0].Payload) != `{"x":1}` {
			t.Fatalf("outbox seed: %+v, %v", out, err)
		}
		if n, err := s.OutboxLen(ctx); err != nil || n != 1 {
			t.Fatalf("outbox length after migration: %d, %v", n, err)
		}
	}
}

// exercise uses every table once, so a migrated schema is known to work.
func exercise(t *testing.T, s *Store) {
	t.Helper()
	ctx := ctxT(t)
	k := Key{AppKey: 1000, Stage: "DEV"}
	if _, err := s.PutRequested(ctx, Requested{Key: k, AppName: "x", TargetState: "BUILT", Ports: []byte(`[]`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutActual(ctx, Actual{Key: k, AppName: "x", State: "BUILDING"}); err != nil {
		t.Fatal(err)
	}
	if err := s.ReserveHostPort(ctx, HostPort{Key: k, Protocol: "udp", DeclaredPort: 53, HostPort: 40053}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendLogs(ctx, "dev_1000_x", k, []LogLine{{Stream: "stdout", Text: "x"}}); err != nil {
		t.Fatal(err)
	}
	id, err := s.Enqueue(ctx, "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AckOutbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(ctx, "m", "v"); err != nil {
		t.Fatal(err)
	}
}

func freshSchemaDB(t *testing.T) *sql.DB {
	t.Helper()
	return openTest(t).db
}

// schemaOf lists the schema objects of db, comparable across databases.
func schemaOf(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT type, name, COALESCE(sql, '') FROM sqlite_schema ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var typ, name, sqlText string
		if err := rows.Scan(&typ, &name, &sqlText); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s: %s\n", typ, name, sqlText)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func mustUserVersion(t *testing.T, db *sql.DB) int {
	t.Helper()
	v, err := userVersion(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOpenRefusesADatabaseOfANewerAgent(t *testing.T) {
	ctx := ctxT(t)
	latest := latestVersion(t)
	path := filepath.Join(t.TempDir(), "new.db")
	db := rawDB(t, path)
	if err := migrateTo(ctx, db, latest); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", latest+1)); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	_, err := Open(ctx, path, Options{})
	if err == nil {
		t.Fatal("Open accepted a newer schema")
	}
	msg := err.Error()
	if !strings.Contains(msg, fmt.Sprintf("version %d", latest+1)) || !strings.Contains(msg, fmt.Sprintf("version %d", latest)) ||
		!strings.Contains(msg, "newer") {
		t.Fatalf("message %q should name both versions", msg)
	}
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("%v: want class conflict", err)
	}
	if got := mustUserVersion(t, rawDB(t, path)); got != latest+1 {
		t.Fatalf("refused database changed to version %d", got)
	}
}

func TestAFailedMigrationLeavesThePreviousVersion(t *testing.T) {
	ctx := ctxT(t)
	fsys := fstest.MapFS{
		"migrations/0001_a.sql": {Data: []byte(`CREATE TABLE a (x INTEGER);`)},
		"migrations/0002_b.sql": {Data: []byte(`CREATE TABLE b (x INTEGER); INSERT INTO missing VALUES (1);`)},
	}
	ms, err := loadMigrations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, filepath.Join(t.TempDir(), "m.db"))
	applied, err := migrate(ctx, db, ms, len(ms))
	if err == nil || !strings.Contains(err.Error(), "0002_b.sql") {
		t.Fatalf("migrate = %v, want an error naming 0002_b.sql", err)
	}
	if len(applied) != 1 || applied[0] != 1 {
		t.Fatalf("applied %v, want [1]", applied)
	}
	if v := mustUserVersion(t, db); v != 1 {
		t.Fatalf("user_version %d, want 1", v)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_schema WHERE name = 'b'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("table b of the failed step exists: %d %v", n, err)
	}
}

func TestLoadMigrationsChecksNumbering(t *testing.T) {
	ok := &fstest.MapFile{Data: []byte(`SELECT 1;`)}
	cases := []struct {
		name  string
		files []string
		err   string
	}{
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, "expected version 2"},
		{"duplicate", []string{"0001_a.sql", "0001_b.sql", "0002_c.sql"}, "expected version 2"},
		{"no number", []string{"schema.sql"}, "NNNN_name.sql"},
		{"zero", []string{"0000_a.sql"}, "NNNN_name.sql"},
		{"starts at 2", []string{"0002_a.sql"}, "expected version 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range c.files {
				fsys["migrations/"+f] = ok
			}
			if _, err := loadMigrations(fsys); err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err = %v, want %q", err, c.err)
			}
		})
	}
}

func TestConcurrentOpensMigrateOnce(t *testing.T) {
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "race.db")
	const n = 4
	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
		ss   = make([]*Store, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ss[i], errs[i] = Open(ctx, path, Options{})
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		defer ss[i].Close()
	}
	if v := mustUserVersion(t, ss[0].db); v != latestVersion(t) {
		t.Fatalf("user_version %d", v)
	}
	integrityCheck(t, ss[0].db)
}
