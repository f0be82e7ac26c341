package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestJudge(t *testing.T) {
	tests := []struct {
		name  string
		f     Figure
		b     bound
		wants string
	}{
		{"at most, below", Figure{Value: 59, Limit: 60}, atMost, verdictWithin},
		{"at most, equal", Figure{Value: 60, Limit: 60}, atMost, verdictWithin},
		{"at most, above", Figure{Value: 60.1, Limit: 60}, atMost, verdictOver},
		{"at least, above", Figure{Value: 25000, Limit: 20000}, atLeast, verdictWithin},
		{"at least, below", Figure{Value: 19999, Limit: 20000}, atLeast, verdictOver},
		{"no budget", Figure{Value: 7}, noBudget, verdictNone},
		{"not measured", Figure{Value: 0, Limit: 60, Error: "no agent"}, atMost, verdictNA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f.judge(tt.b)
			if tt.f.Verdict != tt.wants {
				t.Fatalf("verdict %q, want %q", tt.f.Verdict, tt.wants)
			}
		})
	}
}

// A step's own verdict (drops) stays; everything else is judged by its
// bound; figures never reached are n/a with the reason.
func TestJudgeAll(t *testing.T) {
	r := &Report{Figures: newFigures(planFor(false))}
	r.set(figConnect, 45, "45 ms")
	r.set(figRSSIdle, 17<<20, "17.0 MiB")
	r.set(figReqAgent, 200, "200 ms")
	d := r.set(figLogDrops, 12, "12")
	d.Verdict = verdictOver
	r.fail(errors.New("agent has no apps"), figLogRate, figConnect)
	r.judgeAll()
	want := map[string]string{
		figConnect:  verdictWithin, // measured before the failure: fail leaves it alone
		figRSSIdle:  verdictOver,
		figReqAgent: verdictNone,
		figLogDrops: verdictOver,
		figLogRate:  verdictNA,
		figBinary:   verdictNA,
	}
	for id, v := range want {
		if got := r.figure(id).Verdict; got != v {
			t.Errorf("%s: verdict %q, want %q", id, got, v)
		}
	}
	if got := r.figure(figLogRate).Error; got != "agent has no apps" {
		t.Errorf("log rate error %q", got)
	}
	if got := r.figure(figBinary).Error; got != notReachedText {
		t.Errorf("binary error %q", got)
	}
	if n := len(r.missing()); n != len(r.Figures)-4 {
		t.Errorf("%d missing, want %d", n, len(r.Figures)-4)
	}
}

// The table is aligned in runes (the labels hold →, ≤, ×), lists every
// figure once, names the machine and says why a figure is missing.
func TestWriteTable(t *testing.T) {
	r := &Report{
		Date:         time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC),
		Machine:      Machine{Cores: 2, CPU: "Test CPU", MemoryBytes: 8 << 30, Kernel: "6.1.0", Docker: "20.10.24", DockerAPI: "1.41", StorageDriver: "overlay2", Go: "go1.26"},
		Agent:        "build/reagent",
		AgentVersion: "0.1.0",
		Duration:     "4m10s",
		Figures:      newFigures(planFor(false)),
	}
	r.set(figBinary, 20.96e6, formatMB(20_960_000))
	r.set(figConnect, 48.2, formatMs(48200*time.Microsecond))
	r.set(figReqRatio, 1.1, "1.10×")
	r.fail(errors.New("the agent does not register request_app_state"), figLogRate)
	r.judgeAll()

	var buf bytes.Buffer
	if err := r.writeTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(out, "\n")
	header := lines[0]
	col := strings.Index(header, "VALUE")
	budgetCol := utf8.RuneCountInString(header[:strings.Index(header, "BUDGET")])
	for i, f := range r.Figures {
		l := lines[i+1]
		if !strings.HasPrefix(l, f.Label) {
			t.Fatalf("line %d is %q, want figure %q", i+1, l, f.Label)
		}
		// Every row's value and budget start in the header's columns.
		rest := l[len(f.Label):]
		valueAt := len(f.Label) + len(rest) - len(strings.TrimLeft(rest, " "))
		if got := utf8.RuneCountInString(l[:valueAt]); got != col {
			t.Errorf("%s: value at column %d, want %d:\n%s", f.ID, got, col, out)
		}
		if f.Budget != "" {
			if got := utf8.RuneCountInString(l[:valueAt+strings.Index(l[valueAt:], f.Budget)]); got != budgetCol {
				t.Errorf("%s: budget at column %d, want %d:\n%s", f.ID, got, budgetCol, out)
			}
		}
	}
	for _, want := range []string{
		"20.96 MB (19.99 MiB)", "48.2 ms", "1.10×", "within", "over", "n/a", "not measured",
		"2 cores (Test CPU), 8.0 GiB memory, kernel 6.1.0, Docker 20.10.24 (API 1.41, overlay2)",
		"not measured: log relay, one app printing flat out, over 10s: the agent does not register request_app_state",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	r := &Report{Date: time.Now().UTC(), Machine: Machine{Cores: 2}, Figures: newFigures(planFor(true))}
	r.set(figConnect, 48.2, "48.2 ms").Samples = []float64{50, 48.2}
	r.judgeAll()
	path := filepath.Join(t.TempDir(), "sub", "bench.json")
	if err := r.writeJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	f := back.figure(figConnect)
	if f == nil || f.Value != 48.2 || f.Verdict != verdictWithin || len(f.Samples) != 2 || back.Machine.Cores != 2 {
		t.Fatalf("round trip: %+v", f)
	}
}

func TestFormatting(t *testing.T) {
	tests := []struct{ got, want string }{
		{formatCount(0), "0"},
		{formatCount(999), "999"},
		{formatCount(20000), "20 000"},
		{formatCount(1234567.4), "1 234 567"},
		{formatCount(-4500), "-4 500"},
		{formatMs(1500 * time.Microsecond), "1.50 ms"},
		{formatMs(48250 * time.Microsecond), "48.2 ms"},
		{formatMiB(20 << 20), "20.0 MiB"},
		{formatMB(25_000_000), "25.00 MB (23.84 MiB)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestMedianDuration(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name string
		in   []time.Duration
		want time.Duration
	}{
		{"empty", nil, 0},
		{"odd, unsorted", ms(90, 10, 50), 50 * time.Millisecond},
		{"even", ms(40, 10, 20, 30), 25 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]time.Duration(nil), tt.in...)
			if got := medianDuration(tt.in); got != tt.want {
				t.Fatalf("median %v, want %v", got, tt.want)
			}
			for i := range in {
				if in[i] != tt.in[i] {
					t.Fatal("median reordered its input")
				}
			}
		})
	}
}
