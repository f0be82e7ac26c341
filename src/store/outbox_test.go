package store

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"reagent/src/errdefs"
)

func TestOutboxDeliversInOrder(t *testing.T) {
	clk := newClock()
	s := openOpts(t, Options{Now: clk.Now})
	c := ctxT(t)
	payloads := []string{`{"n":1}`, `[1,2]`, ``, `"s"`}
	var ids []uint64
	for _, p := range payloads {
		clk.Advance(time.Millisecond)
		id, err := s.Enqueue(c, "reswarm.containers.update_app_on_device", json.RawMessage(p))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("ids not increasing: %v", ids)
		}
	}
	got, err := s.PeekOutbox(c, 10)
	if err != nil || len(got) != 4 {
		t.Fatalf("peek: %+v %v", got, err)
	}
	if got[0].Payload == nil || string(got[0].Payload) != payloads[0] || got[2].Payload != nil || got[0].Attempts != 0 ||
		!got[3].CreatedAt.Equal(clk.Now()) || got[1].Procedure != "reswarm.containers.update_app_on_device" {
		t.Fatalf("peek: %+v", got)
	}
	if first2, err := s.PeekOutbox(c, 2); err != nil || !reflect.DeepEqual(first2, got[:2]) {
		t.Fatalf("peek 2: %+v %v", first2, err)
	}

	for range 2 {
		if err := s.MarkAttempt(c, ids[0]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AckOutbox(c, ids[1]); err != nil { // out of order
		t.Fatal(err)
	}
	if err := s.AckOutbox(c, ids[1]); err != nil { // again
		t.Fatal(err)
	}
	if err := s.MarkAttempt(c, ids[1]); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("MarkAttempt of an acked entry: %v", err)
	}
	got, err = s.PeekOutbox(c, 10)
	if err != nil || len(got) != 3 || got[0].ID != ids[0] || got[0].Attempts != 2 || got[1].ID != ids[2] {
		t.Fatalf("after ack: %+v %v", got, err)
	}
	if n, err := s.OutboxLen(c); err != nil || n != 3 {
		t.Fatalf("len %d %v", n, err)
	}
	for _, id := range ids {
		if err := s.AckOutbox(c, id); err != nil {
			t.Fatal(err)
		}
	}
	// An emptied outbox never hands out an old id again: a late ack of an
	// old report cannot delete a new one.
	id, err := s.Enqueue(c, "p", nil)
	if err != nil || id <= ids[3] {
		t.Fatalf("id after emptying: %d (last %d), %v", id, ids[3], err)
	}
	if n, err := s.OutboxLen(c); err != nil || n != 1 {
		t.Fatalf("len %d %v", n, err)
	}
}

func TestOutboxValidates(t *testing.T) {
	s := openTest(t)
	c := ctxT(t)
	if _, err := s.Enqueue(c, "", nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(c, "p", json.RawMessage(`{"a":`)); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatal(err)
	}
	for _, limit := range []int{0, -1} {
		if _, err := s.PeekOutbox(c, limit); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatal(err)
		}
	}
	if n, err := s.OutboxLen(c); err != nil || n != 0 {
		t.Fatalf("len %d %v", n, err)
	}
}

func TestOutboxDropsOldestBeyondItsBoundAndCountsAcrossRestarts(t *testing.T) {
	c := ctxT(t)
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(c, path, Options{OutboxMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for range 5 {
		id, err := s.Enqueue(c, "p", nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	got, err := s.PeekOutbox(c, 10)
	if err != nil || len(got) != 3 || got[0].ID != ids[2] || got[2].ID != ids[4] {
		t.Fatalf("kept %+v %v; want the newest three", got, err)
	}
	if s.OutboxDropped() != 2 {
		t.Fatalf("dropped %d, want 2", s.OutboxDropped())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, Options{OutboxMax: 3})
	if s.OutboxDropped() != 2 {
		t.Fatalf("dropped after reopen %d, want 2", s.OutboxDropped())
	}
	if _, err := s.Enqueue(c, "p", nil); err != nil {
		t.Fatal(err)
	}
	if n, err := s.OutboxLen(c); err != nil || n != 3 || s.OutboxDropped() != 3 {
		t.Fatalf("len %d dropped %d %v", n, s.OutboxDropped(), err)
	}
}
