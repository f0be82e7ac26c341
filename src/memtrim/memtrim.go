// Package memtrim keeps the agent's resident memory close to its working
// set. Most of an idle agent's RSS is not its heap but pages of its own
// executable: the kernel maps the page-cache pages around every fault
// (fault-around), so code and tables touched once — package init, the
// store's migrations, the first connect and reconcile — stay mapped long
// after. The trimmer unmaps the executable's read-only pages (madvise
// MADV_DONTNEED) once the agent has been quiet for a while; what is used
// again comes back from the page cache with a minor fault. The pages stay
// in the page cache, unmapped, where the kernel reclaims them before the
// mapped pages of any process.
package memtrim

import (
	"context"
	"time"

	"github.com/rs/zerolog"
)

// DefaultQuiet is how long the agent must have been quiet (no poke)
// before a trim: long enough that a start or a burst of reconciles is over.
const DefaultQuiet = 5 * time.Second

// Trimmer trims once after every quiet period that follows a poke. It is
// an agent part (Run), and an apps hook (PostStart, Stop): app starts and
// stops are the bursts that fault pages in.
type Trimmer struct {
	quiet time.Duration
	poke  chan struct{} // cap 1
	log   zerolog.Logger
	trim  func() (Stats, error) // Trim, replaced in tests
}

// Stats is what one trim released.
type Stats struct {
	Mappings int   // read-only mappings of the executable trimmed
	Bytes    int64 // their total size (not all of it was resident)
}

// New returns a trimmer that trims quiet after the last poke (0:
// DefaultQuiet). It starts poked: the start-up is the first burst.
func New(quiet time.Duration, log zerolog.Logger) *Trimmer {
	if quiet <= 0 {
		quiet = DefaultQuiet
	}
	t := &Trimmer{quiet: quiet, poke: make(chan struct{}, 1), log: log, trim: Trim}
	t.Poke()
	return t
}

// Name names the trimmer as a part and as a hook.
func (t *Trimmer) Name() string { return "memtrim" }

// Poke says the agent is busy: the next trim comes quiet after the last
// poke. It never blocks.
func (t *Trimmer) Poke() {
	select {
	case t.poke <- struct{}{}:
	default:
	}
}

// PostStart pokes: an app started.
func (t *Trimmer) PostStart(context.Context, string, string) error { t.Poke(); return nil }

// Stop pokes: an app stopped.
func (t *Trimmer) Stop(context.Context, string) error { t.Poke(); return nil }

// Run trims after each quiet period until ctx ends. Between a trim and the
// next poke it only waits: no timer runs while the agent is idle.
func (t *Trimmer) Run(ctx context.Context) error {
	timer := time.NewTimer(t.quiet)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.poke:
			timer.Reset(t.quiet)
		case <-timer.C:
			st, err := t.trim()
			if err != nil {
				// Not worth more than a debug line: the agent works the
				// same, only its RSS stays higher.
				t.log.Debug().Err(err).Msg("trim executable pages")
				continue
			}
			t.log.Debug().Int("mappings", st.Mappings).Int64("bytes", st.Bytes).Msg("executable pages trimmed")
		}
	}
}
