package transfer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// cancelAfter ends a context after a number of reads, in the middle of
// the archive.
type cancelAfter struct {
	r      io.Reader
	reads  int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if len(p) > 1024 { // small reads: the walk is far from done when ctx ends
		p = p[:1024]
	}
	n, err := c.r.Read(p)
	if c.reads--; c.reads == 0 {
		c.cancel()
	}
	return n, err
}

// The walk under InspectContext and Extract skips a file's data by reading
// it: a context that ends meanwhile (shutdown, a newer request) stops it,
// as tar and as tgz, instead of reading the rest of the archive.
func TestWalkStopsWhenCancelled(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "tar", true: "tgz"}[gz], func(t *testing.T) {
			// The large file comes last: nothing but its own data is
			// read after the context ends.
			arch := tarBytes(t, gz, file("Dockerfile", "FROM scratch"), file("big", strings.Repeat("x", 8<<20)))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := walk(ctx, &cancelAfter{r: bytes.NewReader(arch), reads: 4, cancel: cancel}, Limits{}, nil)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("walk = %v, want context.Canceled", err)
			}
		})
	}
}
