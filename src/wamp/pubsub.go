package wamp

import (
	"runtime/debug"
	"sort"

	"github.com/gammazero/nexus/v3/client"
	nx "github.com/gammazero/nexus/v3/wamp"
)

// Subscribe adds a persistent subscription: it is made on the current
// connection (if any) and again after every WELCOME. A second Subscribe
// to the same topic replaces the function. fn runs under recover.
func (s *Session) Subscribe(topic string, fn EventFunc) {
	s.mu.Lock()
	_, existed := s.subs[topic]
	s.subs[topic] = fn
	var l *link
	if s.link != nil && s.link.subDone && !existed && s.link.useLocked() {
		l = s.link
	}
	s.mu.Unlock()
	if l != nil {
		err := s.subscribeOn(l.cli, topic)
		s.release(l)
		if err != nil {
			s.log.Warn().Err(err).Str("topic", topic).Msg("subscribe")
		}
	}
}

// Unsubscribe ends a subscription made with Subscribe.
func (s *Session) Unsubscribe(topic string) {
	s.mu.Lock()
	delete(s.subs, topic)
	var l *link
	if s.link != nil && s.link.useLocked() {
		l = s.link
	}
	s.mu.Unlock()
	if l != nil {
		err := l.cli.Unsubscribe(topic)
		s.release(l)
		if err != nil && err != client.ErrNotSubscribed {
			s.log.Debug().Err(err).Str("topic", topic).Msg("unsubscribe")
		}
	}
}

func (s *Session) topics() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.subs))
	for t := range s.subs {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func (s *Session) subscribeOn(cli *client.Client, topic string) error {
	return cli.Subscribe(topic, s.eventHandler(topic), nil)
}

// eventHandler looks the function up on every event, so Subscribe can
// replace it without a new SUBSCRIBE.
func (s *Session) eventHandler(topic string) client.EventHandler {
	return func(ev *nx.Event) {
		s.mu.Lock()
		fn := s.subs[topic]
		s.mu.Unlock()
		if fn == nil {
			return
		}
		s.safeEvent(topic, fn, ev)
	}
}

// safeEvent runs fn under recover: nexus calls event handlers without one,
// and a panic there would kill the process.
func (s *Session) safeEvent(topic string, fn EventFunc, ev *nx.Event) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Str("topic", topic).Interface("panic", r).Str("stack", string(debug.Stack())).
				Msg("event handler panicked")
		}
	}()
	fn([]any(ev.Arguments), map[string]any(ev.ArgumentsKw), map[string]any(ev.Details))
}
