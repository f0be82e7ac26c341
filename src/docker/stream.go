package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"reagent/src/errdefs"
)

// streamMessage is the part of a daemon JSON progress message we look at;
// the message itself goes to the progress callback verbatim.
type streamMessage struct {
	Stream      string `json:"stream"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// tailLines keeps the last few lines of build output for error messages.
type tailLines struct {
	max   int
	lines []string
}

func (t *tailLines) add(text string) {
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.TrimSpace(l) == "" {
			continue
		}
		t.lines = append(t.lines, l)
		if len(t.lines) > t.max {
			t.lines = t.lines[1:]
		}
	}
}

// readStream relays every JSON message of a pull/push/build response to
// progress and returns the first errorDetail/error in it. Cancelling ctx
// closes the body so a blocked read returns at once. tail, if non-nil,
// collects the "stream" output for the error message.
func readStream(ctx context.Context, body io.ReadCloser, progress func([]byte), tail *tailLines) error {
	stop := context.AfterFunc(ctx, func() { body.Close() })
	defer stop()
	defer body.Close()

	dec := json.NewDecoder(body)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return errdefs.Unavailable("reading engine progress stream: %v", err)
		}
		if progress != nil {
			progress(raw)
		}
		var m streamMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			continue // not ours to judge; the caller saw the line
		}
		if tail != nil && m.Stream != "" {
			tail.add(m.Stream)
		}
		msg := m.Error
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			msg = m.ErrorDetail.Message
		}
		if msg != "" {
			// Drain nothing more: the daemon ends the stream after an error.
			if tail != nil && len(tail.lines) > 0 {
				return fmt.Errorf("%w\n%s", classifyMessage(msg), strings.Join(tail.lines, "\n"))
			}
			return classifyMessage(msg)
		}
	}
}
