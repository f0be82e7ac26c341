package main

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    memInfo
		wantErr bool
	}{
		{
			name: "agent",
			text: "Name:\treagent\nVmPeak:\t 1271220 kB\nVmHWM:\t   21012 kB\nVmRSS:\t   20580 kB\n" +
				"RssAnon:\t    4916 kB\nRssFile:\t   15664 kB\nRssShmem:\t       0 kB\nThreads:\t9\n",
			want: memInfo{RSS: 20580 << 10, RSSAnon: 4916 << 10, RSSFile: 15664 << 10, HWM: 21012 << 10},
		},
		{
			name: "old kernel without the split",
			text: "Name:\tx\nVmRSS:\t 100 kB\n",
			want: memInfo{RSS: 100 << 10},
		},
		{name: "kernel thread", text: "Name:\tkthreadd\nState:\tS (sleeping)\n", wantErr: true},
		{name: "unit other than kB", text: "VmRSS:\t 100 MB\n", wantErr: true},
		{name: "not a number", text: "VmRSS:\t many kB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus(strings.NewReader(tt.text))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseCPUTicks(t *testing.T) {
	// Fields 14 and 15 are utime and stime; the command name may hold
	// spaces and parentheses.
	rest := " S 1 2 3 0 -1 4194560 100 0 0 0 %s %s 0 0 20 0 9 0 123 456 789"
	tests := []struct {
		name    string
		stat    string
		want    uint64
		wantErr bool
	}{
		{name: "plain", stat: "4242 (reagent)" + fmtRest(rest, "150", "27"), want: 177},
		{name: "name with spaces and parentheses", stat: "4242 (re (a) gent) x)" + fmtRest(rest, "5", "6"), want: 11},
		{name: "truncated", stat: "4242 (reagent) S 1 2 3", wantErr: true},
		{name: "no command", stat: "4242 reagent S", wantErr: true},
		{name: "garbage in utime", stat: "4242 (reagent)" + fmtRest(rest, "x", "6"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPUTicks([]byte(tt.stat))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func fmtRest(rest, utime, stime string) string {
	return strings.Replace(strings.Replace(rest, "%s", utime, 1), "%s", stime, 1)
}

// The process's own /proc files parse: the format is the kernel's, not
// only the fixtures'.
func TestReadSelf(t *testing.T) {
	m, err := readMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.HWM < m.RSS {
		t.Fatalf("implausible memory of this test: %+v", m)
	}
	if _, err := readCPUTicks(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if hz, ok := clockTicks(); !ok || hz <= 0 {
		t.Fatalf("clock ticks %d from the auxiliary vector: %v", hz, ok)
	}
}

func TestParseAuxvClockTicks(t *testing.T) {
	vec := func(order binary.AppendByteOrder, size int, pairs ...uint64) []byte {
		var b []byte
		for _, v := range pairs {
			if size == 4 {
				b = order.AppendUint32(b, uint32(v))
			} else {
				b = order.AppendUint64(b, v)
			}
		}
		return b
	}
	tests := []struct {
		name   string
		auxv   []byte
		size   int
		order  binary.ByteOrder
		want   int
		wantOK bool
	}{
		{"64-bit", vec(binary.LittleEndian, 8, 33, 0x7ffd, atClkTck, 250, 0, 0), 8, binary.LittleEndian, 250, true},
		{"32-bit big endian", vec(binary.BigEndian, 4, 6, 4096, atClkTck, 100, 0, 0), 4, binary.BigEndian, 100, true},
		{"missing", vec(binary.LittleEndian, 8, 6, 4096, 0, 0), 8, binary.LittleEndian, defaultClockTicks, false},
		{"after AT_NULL", vec(binary.LittleEndian, 8, 0, 0, atClkTck, 300), 8, binary.LittleEndian, defaultClockTicks, false},
		{"truncated", vec(binary.LittleEndian, 8, atClkTck, 100)[:12], 8, binary.LittleEndian, defaultClockTicks, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseAuxvClockTicks(tt.auxv, tt.size, tt.order)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("got %d, %v; want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseMachineCPU(t *testing.T) {
	m0, err := parseMachineCPU("cpu  100 5 50 1000 20 1 2 3 7 0\ncpu0 50 2 25 500 10 0 1 1 3 0\n")
	if err != nil {
		t.Fatal(err)
	}
	if m0.total != 100+5+50+1000+20+1+2+3 || m0.idle != 1020 {
		t.Fatalf("got %+v", m0)
	}
	m1 := machineCPU{idle: m0.idle + 50, total: m0.total + 200}
	if got := m1.idlePercent(m0); got != 25 {
		t.Fatalf("idle %v %%, want 25", got)
	}
	if got := m0.idlePercent(m0); got != -1 {
		t.Fatalf("no time passed: %v, want -1", got)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu 1 2 x 4 5\n"} {
		if _, err := parseMachineCPU(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
