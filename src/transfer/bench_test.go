package transfer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkChunk measures one 64 KiB chunk as write_data delivers it:
// hex decode, append to the temporary file, progress bookkeeping.
func BenchmarkChunk(b *testing.B) {
	m, err := New(Options{Dir: filepath.Join(b.TempDir(), "build")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	raw := make([]byte, chunkSize)
	if _, err := rand.Read(raw); err != nil {
		b.Fatal(err)
	}
	chunk := hex.EncodeToString(raw)
	ctx := context.Background()
	if err := m.Begin(ctx, "dev_1_bench", "bench.tgz", "b", DefaultMaxSize); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(chunkSize)
	written := 0
	for b.Loop() {
		if written+chunkSize > DefaultMaxSize {
			b.StopTimer()
			if err := m.Begin(ctx, "dev_1_bench", "bench.tgz", "b", DefaultMaxSize); err != nil {
				b.Fatal(err)
			}
			written = 0
			b.StartTimer()
		}
		if err := m.Chunk(ctx, "dev_1_bench", "b", chunk); err != nil {
			b.Fatal(err)
		}
		written += chunkSize
	}
}

// BenchmarkInspectExtract measures both passes over a 500-file, 8 MiB
// source tgz.
func BenchmarkInspectExtract(b *testing.B) {
	base := b.TempDir()
	var entries []ent
	body := make([]byte, 16<<10)
	if _, err := rand.Read(body); err != nil {
		b.Fatal(err)
	}
	for i := range 500 {
		entries = append(entries, file(fmt.Sprintf("src/d%d/f%d.bin", i%20, i), string(body)))
	}
	arch := writeArchive(b, base, true, entries...)
	b.SetBytes(int64(len(entries) * len(body)))
	b.Run("Inspect", func(b *testing.B) {
		for b.Loop() {
			if _, err := Inspect(arch, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Extract", func(b *testing.B) {
		dest := filepath.Join(base, "out")
		for b.Loop() {
			if err := Extract(context.Background(), arch, dest, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
