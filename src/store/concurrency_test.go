package store

import (
	"fmt"
	"sync"
	"testing"
)

func TestConcurrentWritersAndReaders(t *testing.T) {
	s := openTest(t)
	c := ctxT(t)
	const (
		writers = 8
		rounds  = 60
		readers = 4
	)
	shared := Key{AppKey: 1, Stage: "PROD"}
	var (
		wg      sync.WaitGroup
		errs    = make(chan error, writers+readers)
		stop    = make(chan struct{})
		readerW sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := Key{AppKey: uint64(10 + w), Stage: "DEV"}
			states := []string{"STARTING", "RUNNING"}
			for i := range rounds {
				if _, err := s.PutRequested(c, Requested{Key: shared, AppName: "s", TargetState: "RUNNING"}); err != nil {
					errs <- err
					return
				}
				if _, err := s.PutActual(c, Actual{Key: own, AppName: "o", State: states[i%2]}); err != nil {
					errs <- err
					return
				}
				lines := []LogLine{{Stream: "stdout", Text: "a"}, {Stream: "stderr", Text: "b"}, {Stream: "agent", Text: "c"}}
				if _, err := s.AppendLogs(c, "prod_1_s", shared, lines); err != nil {
					errs <- err
					return
				}
				if _, err := s.Enqueue(c, "p", []byte(fmt.Sprint(i))); err != nil {
					errs <- err
					return
				}
				if err := s.SetMeta(c, fmt.Sprintf("w%d", w), fmt.Sprint(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range readers {
		readerW.Add(1)
		go func() {
			defer readerW.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.QueryLogs(c, "prod_1_s", LogQuery{Tail: 50}); err != nil {
					errs <- err
					return
				}
				if _, err := s.ListRequested(c); err != nil {
					errs <- err
					return
				}
				if _, err := s.PeekOutbox(c, 20); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readerW.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent use: %v", err)
	}

	r, err := s.GetRequested(c, shared)
	if err != nil || r.Generation != writers*rounds {
		t.Fatalf("generation %d, want %d (%v)", r.Generation, writers*rounds, err)
	}
	last, ok, err := s.LastLog(c, "prod_1_s")
	if err != nil || !ok || last.Seq != 3*writers*rounds {
		t.Fatalf("last seq %d, want %d (%v)", last.Seq, 3*writers*rounds, err)
	}
	if n, err := s.OutboxLen(c); err != nil || n != writers*rounds {
		t.Fatalf("outbox %d, want %d (%v)", n, writers*rounds, err)
	}
	for w := range writers {
		h, err := s.History(c, Key{AppKey: uint64(10 + w), Stage: "DEV"}, 0)
		if err != nil || len(h) != rounds {
			t.Fatalf("writer %d: %d transitions, want %d (%v)", w, len(h), rounds, err)
		}
	}
	checkStreamAccounting(t, s, "prod_1_s")
	integrityCheck(t, s.db)
}
