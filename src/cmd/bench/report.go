package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Verdicts of a figure against its budget.
const (
	verdictWithin = "within"
	verdictOver   = "over"
	verdictNone   = "-"   // no budget of its own (a part of another figure)
	verdictNA     = "n/a" // not measured; Figure.Error says why
)

// bound is how a value must relate to its limit.
type bound int

const (
	noBudget bound = iota
	atMost
	atLeast
)

// Figure is one line of the table.
type Figure struct {
	ID      string    `json:"id"`
	Label   string    `json:"label"`
	Value   float64   `json:"value"`
	Unit    string    `json:"unit"`
	Text    string    `json:"text"` // the value as printed
	Budget  string    `json:"budget"`
	Limit   float64   `json:"limit,omitempty"` // in Unit
	Verdict string    `json:"verdict"`
	Note    string    `json:"note,omitempty"`
	Samples []float64 `json:"samples,omitempty"` // in Unit, in the order measured
	Error   string    `json:"error,omitempty"`   // why it was not measured
	// Details are extra readings that explain the figure (RSS split,
	// tick rate, …); they are not judged.
	Details map[string]any `json:"details,omitempty"`
}

// judge sets the verdict from value, limit and bound.
func (f *Figure) judge(b bound) {
	switch {
	case f.Error != "":
		f.Verdict = verdictNA
	case b == atMost && f.Value <= f.Limit, b == atLeast && f.Value >= f.Limit:
		f.Verdict = verdictWithin
	case b == noBudget:
		f.Verdict = verdictNone
	default:
		f.Verdict = verdictOver
	}
}

// Machine is what the figures were measured on.
type Machine struct {
	Cores         int    `json:"cores"`
	CPU           string `json:"cpu,omitempty"`
	MemoryBytes   int64  `json:"memory_bytes"`
	Kernel        string `json:"kernel"`
	OS            string `json:"os,omitempty"`
	Docker        string `json:"docker"`
	DockerAPI     string `json:"docker_api"`
	StorageDriver string `json:"storage_driver,omitempty"`
	Go            string `json:"go"`
}

// Report is everything one run measured; build/bench.json holds it.
type Report struct {
	Date         time.Time `json:"date"`
	Machine      Machine   `json:"machine"`
	Agent        string    `json:"agent"`         // path of the binary measured
	AgentVersion string    `json:"agent_version"` // its -version
	Short        bool      `json:"short"`         // fewer repetitions: a smoke run, not a measurement
	Duration     string    `json:"duration"`
	// The machine's 1-minute load average when the run began and ended:
	// other work on the machine skews every figure.
	LoadBefore float64  `json:"load_before"`
	LoadAfter  float64  `json:"load_after"`
	Figures    []Figure `json:"figures"`
}

// figure returns the figure with id, nil if there is none.
func (r *Report) figure(id string) *Figure {
	for i := range r.Figures {
		if r.Figures[i].ID == id {
			return &r.Figures[i]
		}
	}
	return nil
}

// missing lists the figures that were not measured.
func (r *Report) missing() []Figure {
	var out []Figure
	for _, f := range r.Figures {
		if f.Verdict == verdictNA {
			out = append(out, f)
		}
	}
	return out
}

// writeTable prints the report as one aligned table, then the machine,
// then why any figure is missing.
func (r *Report) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tVALUE\tBUDGET\tVERDICT\tNOTE")
	for _, f := range r.Figures {
		text := f.Text
		if f.Error != "" {
			text = "not measured"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Label, text, orDash(f.Budget), f.Verdict, f.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	m := r.Machine
	fmt.Fprintf(w, "\nmachine: %d cores%s, %s memory, kernel %s, Docker %s (API %s, %s), %s\n",
		m.Cores, parenthesised(m.CPU), formatGiB(m.MemoryBytes), m.Kernel, m.Docker, m.DockerAPI, orDash(m.StorageDriver), m.Go)
	fmt.Fprintf(w, "agent: %s (%s); measured %s in %s; load average %.2f before, %.2f after",
		r.Agent, r.AgentVersion, r.Date.Format(time.RFC3339), r.Duration, r.LoadBefore, r.LoadAfter)
	if r.Short {
		fmt.Fprint(w, "; -short: fewer repetitions, not a measurement")
	}
	fmt.Fprintln(w)
	for _, f := range r.missing() {
		fmt.Fprintf(w, "not measured: %s: %s\n", f.Label, f.Error)
	}
	return nil
}

// writeJSON writes the report to path (creating its directory).
func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func parenthesised(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// Units and their formatting. Sizes: the binary budget is in MB (10^6
// bytes), memory budgets in MiB.

func formatMB(bytes int64) string {
	return fmt.Sprintf("%.2f MB (%.2f MiB)", float64(bytes)/1e6, float64(bytes)/(1<<20))
}

func formatMiB(bytes int64) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20)) }

func formatGiB(bytes int64) string { return fmt.Sprintf("%.1f GiB", float64(bytes)/(1<<30)) }

func formatMs(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.1f ms", ms)
}

// formatCount groups thousands with a thin space, as the budgets are
// written ("20 000").
func formatCount(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func msSamples(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = msOf(d)
	}
	return out
}
