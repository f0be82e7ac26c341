package store

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"reagent/src/errdefs"
)

func TestPutActualRecordsTransitions(t *testing.T) {
	clk := newClock()
	s := openOpts(t, Options{Now: clk.Now})
	ctx := ctxT(t)
	k := Key{AppKey: 42, Stage: "PROD"}
	base := Actual{Key: k, AppName: "app", State: "DOWNLOADING", Version: "1.0", ReleaseKey: 1}

	steps := []struct {
		name        string
		mutate      func(*Actual)
		changed     bool
		transitions int
	}{
		{"first observation", func(a *Actual) {}, true, 1},
		{"same again", func(a *Actual) {}, false, 1},
		{"state", func(a *Actual) { a.State = "PRESENT" }, true, 2},
		{"update status only", func(a *Actual) { a.UpdateStatus = "pending_remote_confirmation" }, true, 2},
		{"name only", func(a *Actual) { a.AppName = "renamed" }, true, 2},
		{"failure with error", func(a *Actual) { a.State, a.LastError = "FAILED", "exit 3" }, true, 3},
		{"error text only", func(a *Actual) { a.LastError = "exit 4" }, true, 3},
		{"version", func(a *Actual) { a.Version = "1.1" }, true, 4},
		{"release", func(a *Actual) { a.ReleaseKey = 2 }, true, 5},
		{"same again at the end", func(a *Actual) {}, false, 5},
	}
	cur := base
	for _, st := range steps {
		clk.Advance(time.Second)
		st.mutate(&cur)
		changed, err := s.PutActual(ctx, cur)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if changed != st.changed {
			t.Fatalf("%s: changed = %v, want %v", st.name, changed, st.changed)
		}
		h, err := s.History(ctx, k, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != st.transitions {
			t.Fatalf("%s: %d transitions, want %d", st.name, len(h), st.transitions)
		}
		got, err := s.GetActual(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		want := cur
		want.UpdatedAt = got.UpdatedAt
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: stored %+v, want %+v", st.name, got, want)
		}
	}
	h, err := s.History(ctx, k, 0)
	if err != nil {
		t.Fatal(err)
	}
	var flow []string
	for _, tr := range h {
		flow = append(flow, fmt.Sprintf("%s>%s %s/%d %q", tr.From, tr.To, tr.Version, tr.ReleaseKey, tr.Reason))
	}
	want := []string{
		`>DOWNLOADING 1.0/1 ""`,
		`DOWNLOADING>PRESENT 1.0/1 ""`,
		`PRESENT>FAILED 1.0/1 "exit 3"`,
		`FAILED>FAILED 1.1/1 "exit 4"`,
		`FAILED>FAILED 1.1/2 "exit 4"`,
	}
	if !reflect.DeepEqual(flow, want) {
		t.Fatalf("history\n%v\nwant\n%v", flow, want)
	}
	if h[0].At.After(h[1].At) || h[0].Key != k {
		t.Fatalf("history times/keys wrong: %+v", h)
	}
	last2, err := s.History(ctx, k, 2)
	if err != nil || !reflect.DeepEqual(last2, h[3:]) {
		t.Fatalf("History(limit 2) = %+v, %v; want the newest two, newest last", last2, err)
	}
}

func TestHistoryIsBoundedPerApp(t *testing.T) {
	s := openOpts(t, Options{HistoryMax: 5})
	ctx := ctxT(t)
	a := Key{AppKey: 1, Stage: "PROD"}
	b := Key{AppKey: 2, Stage: "PROD"}
	states := []string{"RUNNING", "FAILED"}
	for i := range 23 {
		if _, err := s.PutActual(ctx, Actual{Key: a, AppName: "a", State: states[i%2], Version: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			if _, err := s.PutActual(ctx, Actual{Key: b, AppName: "b", State: states[i%2]}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ha, err := s.History(ctx, a, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ha) != 5 || ha[0].Version != "18" || ha[4].Version != "22" {
		t.Fatalf("app a history: %+v; want versions 18..22", ha)
	}
	hb, err := s.History(ctx, b, 0)
	if err != nil || len(hb) != 3 {
		t.Fatalf("app b history: %d rows, %v; bounding a must not touch b", len(hb), err)
	}
}

func TestDeleteActualForgetsStateAndHistory(t *testing.T) {
	s := openTest(t)
	ctx := ctxT(t)
	k := Key{AppKey: 5, Stage: "DEV"}
	other := Key{AppKey: 6, Stage: "DEV"}
	for _, key := range []Key{k, other} {
		if _, err := s.PutActual(ctx, Actual{Key: key, AppName: "x", State: "RUNNING"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // idempotent
		if err := s.DeleteActual(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GetActual(ctx, k); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetActual after delete: %v", err)
	}
	if h, err := s.History(ctx, k, 0); err != nil || len(h) != 0 {
		t.Fatalf("history after delete: %v %v", h, err)
	}
	list, err := s.ListActual(ctx)
	if err != nil || len(list) != 1 || list[0].Key != other {
		t.Fatalf("ListActual: %+v %v", list, err)
	}
	if h, err := s.History(ctx, other, 0); err != nil || len(h) != 1 {
		t.Fatalf("other app's history: %v %v", h, err)
	}
}

func TestPutActualValidates(t *testing.T) {
	s := openTest(t)
	ctx := ctxT(t)
	ok := Actual{Key: Key{AppKey: 1, Stage: "DEV"}, AppName: "a", State: "RUNNING"}
	cases := []struct {
		name   string
		mutate func(*Actual)
	}{
		{"stage", func(a *Actual) { a.Stage = "TEST" }},
		{"key", func(a *Actual) { a.AppKey = 0 }},
		{"name", func(a *Actual) { a.AppName = "" }},
		{"state", func(a *Actual) { a.State = "running" }},
		{"update status", func(a *Actual) { a.UpdateStatus = "done" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := ok
			c.mutate(&a)
			if _, err := s.PutActual(ctx, a); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err = %v, want invalid argument", err)
			}
		})
	}
	for _, k := range []Key{{0, "DEV"}, {1, ""}} {
		if _, err := s.GetActual(ctx, k); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("GetActual(%v): %v", k, err)
		}
		if _, err := s.History(ctx, k, 1); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("History(%v): %v", k, err)
		}
	}
}
