package logs

import (
	"bytes"
	"fmt"

	"reagent/src/store"
)

// Agent message shapes on a log topic (apps-lifecycle §5).
const (
	msgTypeBuild     = "build"
	clearMarker      = "LOGGER_CLEAR"
	transferStatus   = "Transfer Progress:"
	agentStream      = "agent"
	agentMsgOverhead = 32 // queue bytes of a message besides its text
)

// Write sends an agent message about an app to its log:
// [{"type":"build","chunk":text}] to subscribers, and into the history as
// an "agent" line. name is the log (prod_42_app, dev_42_app, pub_42_app).
// It never blocks.
func (r *Relay) Write(name, text string) {
	s := r.streamFor(name)
	if s == nil {
		return
	}
	s.mu.Lock()
	r.storeAgentLocked(s, text)
	pub := s.live && s.pub.addMsg(map[string]any{"type": msgTypeBuild, "chunk": text}, len(text)+agentMsgOverhead)
	s.mu.Unlock()
	if pub {
		r.pubSig.markFull() // agent messages go out at once
	}
}

// Progress sends one raw docker JSON progress line of a build, pull or
// push to the app's log: batched with its neighbours as plain text for
// subscribers, and stored as an "agent" line. It never blocks.
func (r *Relay) Progress(name string, line []byte) {
	s := r.streamFor(name)
	if s == nil {
		return
	}
	text := string(bytes.TrimRight(line, "\r\n"))
	s.mu.Lock()
	r.storeAgentLocked(s, text)
	first, full := false, false
	if s.live {
		first = s.pub.size() == 0
		s.pub.addLine(text)
		full = s.pub.size() >= r.flushBytes
	}
	s.mu.Unlock()
	signal(r.pubSig, first, full)
}

// TransferProgress tells subscribers how far an upload of fileName is:
// [{"id":fileName,"status":"Transfer Progress:","progress":"12.345%"}].
// It is not stored. It never blocks.
func (r *Relay) TransferProgress(name, fileName string, pct float64) {
	s := r.streamFor(name)
	if s == nil {
		return
	}
	msg := map[string]any{"id": fileName, "status": transferStatus, "progress": fmt.Sprintf("%.3f%%", pct)}
	s.mu.Lock()
	pub := s.live && s.pub.addMsg(msg, len(fileName)+agentMsgOverhead+32)
	s.mu.Unlock()
	if pub {
		r.pubSig.markFull() // agent messages go out at once
	}
}

// Clear tells subscribers to clear their view of the app's log
// ([{"type":"build","chunk":"LOGGER_CLEAR"}]). The history stays: queries
// still show what happened before.
func (r *Relay) Clear(name string) {
	s := r.streamFor(name)
	if s == nil {
		return
	}
	s.mu.Lock()
	pub := s.live && s.pub.addMsg(map[string]any{"type": msgTypeBuild, "chunk": clearMarker}, len(clearMarker)+agentMsgOverhead)
	s.mu.Unlock()
	if pub {
		r.pubSig.markFull() // agent messages go out at once
	}
}

// storeAgentLocked buffers an agent line for the store. Agent lines never
// wait for the store; past a generous bound they are counted instead.
func (r *Relay) storeAgentLocked(s *stream, text string) {
	if s.forgotten {
		return
	}
	c := len(text) + lineOverhead
	if s.pendCost+c > agentBufferFactor*r.storeCap {
		s.agentDropped++
		return
	}
	first := len(s.pend) == 0
	s.pend = append(s.pend, store.LogLine{Time: r.now().UTC(), Stream: agentStream, Text: text})
	s.pendCost += c
	signal(r.storeSig, first, s.pendCost >= r.flushBytes)
}
