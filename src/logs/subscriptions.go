package logs

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"reagent/src/wamp"
)

// WAMP meta API of the router's broker.
const (
	metaOnCreate = "wamp.subscription.on_create"
	metaOnDelete = "wamp.subscription.on_delete"
	metaMatch    = "wamp.subscription.match"
)

// maxSubscriptions bounds the subscriptions to this device's log topics
// the relay keeps track of; more are ignored (and logged once).
const maxSubscriptions = 4096

// subscription is one router subscription that covers log topics of this
// device: known by its URI and match policy (from on_create), or only by
// the topics wamp.subscription.match said it covers.
type subscription struct {
	uri    string // "" when only match told us about it
	policy string // "exact", "prefix" or "wildcard"
	topics map[string]struct{}
}

// subscriptions is the relay's view of the router's subscriptions to this
// device's log topics, keyed by subscription ID (the reference kept the
// wrong ID, so on_delete never matched). Guarded by Relay.mu.
type subscriptions struct {
	byID map[uint64]*subscription
	// deleted are IDs whose on_delete came before anything else told us
	// about them, so a late match answer does not bring them back.
	deleted  map[uint64]struct{}
	overflow bool
}

func newSubscriptions() subscriptions {
	return subscriptions{byID: map[uint64]*subscription{}, deleted: map[uint64]struct{}{}}
}

// reset forgets everything: IDs are the router's, so a new connection (or
// a restarted router) starts from scratch.
func (ss *subscriptions) reset() { *ss = newSubscriptions() }

func (ss *subscriptions) covers(topic string) bool {
	for _, sub := range ss.byID {
		if sub.covers(topic) {
			return true
		}
	}
	return false
}

func (sub *subscription) covers(topic string) bool {
	if _, ok := sub.topics[topic]; ok {
		return true
	}
	return sub.uri != "" && uriMatches(sub.policy, sub.uri, topic)
}

// uriMatches applies a WAMP match policy: exact, prefix, or wildcard
// (empty URI components match any component).
func uriMatches(policy, uri, topic string) bool {
	switch policy {
	case "prefix":
		return strings.HasPrefix(topic, uri)
	case "wildcard":
		us, ts := strings.Split(uri, "."), strings.Split(topic, ".")
		if len(us) != len(ts) {
			return false
		}
		for i := range us {
			if us[i] != "" && us[i] != ts[i] {
				return false
			}
		}
		return true
	default:
		return uri == topic
	}
}

// relevant reports whether a subscription could cover a log topic of this
// device; the meta events are realm-wide and the rest is not our business.
func (r *Relay) relevant(policy, uri string) bool {
	switch policy {
	case "prefix":
		return strings.HasPrefix(uri, r.topicPrefix) || strings.HasPrefix(r.topicPrefix, uri)
	case "wildcard":
		// The container component may be anything, the rest must fit.
		us := strings.Split(uri, ".")
		return len(us) == 4 && uriMatches("wildcard", strings.Join(us[:3], ".")+".x", r.topicPrefix+"x")
	default:
		return strings.HasPrefix(uri, r.topicPrefix)
	}
}

// onCreate handles wamp.subscription.on_create: args [session, {id, uri,
// match, …}]. Runs on the link's receive goroutine: bookkeeping only.
func (r *Relay) onCreate(args []any, _ map[string]any, _ map[string]any) {
	if len(args) < 2 {
		return
	}
	d, ok := wamp.AsDict(args[1])
	if !ok {
		return
	}
	id, ok := toID(d["id"])
	uri, _ := d["uri"].(string)
	if !ok || uri == "" {
		return
	}
	policy, _ := d["match"].(string)
	if policy == "" {
		policy = "exact"
	}
	if !r.relevant(policy, uri) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, gone := r.subs.deleted[id]; gone {
		return
	}
	sub := r.subs.byID[id]
	if sub == nil {
		if !r.addSubLocked(id) {
			return
		}
		sub = r.subs.byID[id]
	}
	sub.uri, sub.policy = uri, policy
	for _, s := range r.streams {
		if sub.covers(s.topic) {
			r.setLiveLocked(s, true, false)
		}
	}
}

// onDelete handles wamp.subscription.on_delete: args [session, id].
func (r *Relay) onDelete(args []any, _ map[string]any, _ map[string]any) {
	if len(args) < 2 {
		return
	}
	id, ok := toID(args[1])
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, known := r.subs.byID[id]; !known {
		if len(r.subs.deleted) < maxSubscriptions {
			r.subs.deleted[id] = struct{}{}
		}
		return
	}
	delete(r.subs.byID, id)
	for _, s := range r.streams {
		r.setLiveLocked(s, r.subs.covers(s.topic), false)
	}
}

// addSubLocked adds an empty entry for id; false when the table is full.
func (r *Relay) addSubLocked(id uint64) bool {
	if len(r.subs.byID) >= maxSubscriptions {
		if !r.subs.overflow {
			r.subs.overflow = true
			r.log.Warn().Int("max", maxSubscriptions).Msg("too many subscriptions to this device's logs; ignoring more")
		}
		return false
	}
	r.subs.byID[id] = &subscription{topics: map[string]struct{}{}}
	return true
}

// setLiveLocked switches publishing for s on or off. Switched off, the
// queue goes: discarded when the subscriber left, counted as dropped
// (lost) when the link was down in between and the subscriber did not come
// back with it, so that the next one hears about the gap.
func (r *Relay) setLiveLocked(s *stream, live, lost bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live == live {
		return
	}
	s.live = live
	if live {
		if !s.pub.empty() { // drops to announce
			r.pubSig.markDirty()
		}
		return
	}
	if lost {
		s.pub.lose()
	} else {
		s.pub.discard()
	}
}

// onConnect runs in the on-connect sequence of every connection, after the
// meta events are subscribed: it starts the subscription view afresh and
// asks the router about the topic of every log.
func (r *Relay) onConnect(ctx context.Context) error {
	r.mu.Lock()
	r.subs.reset()
	clear(r.matchq)
	topics := make([]string, 0, len(r.streams))
	for _, s := range r.streams {
		topics = append(topics, s.topic)
	}
	r.mu.Unlock()
	failed := 0
	var firstErr error
	for _, t := range topics {
		if err := r.matchTopic(ctx, t, true); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failed++
			if firstErr == nil {
				firstErr = err
			}
			r.mu.Lock()
			r.matchq[t] = struct{}{} // the matcher tries again
			r.mu.Unlock()
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d log topics not matched: %w", failed, len(topics), firstErr)
	}
	return nil
}

// onStateChange wakes the publisher and the matcher when the link is up.
// A drop changes nothing: the last known subscribers are assumed to come
// back, so their lines queue (bounded) until the next connection says.
func (r *Relay) onStateChange(connected bool) {
	if connected {
		r.pubSig.markFull()
		poke(r.matchWake)
	}
}

// queueMatchLocked asks the matcher to look up topic once connected.
func (r *Relay) queueMatchLocked(topic string) {
	if r.link == nil {
		return
	}
	r.matchq[topic] = struct{}{}
	poke(r.matchWake)
}

// matchLoop asks the router about topics of new logs while connected.
func (r *Relay) matchLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.matchWake:
		}
		if !r.link.Connected() {
			continue // the on-connect step matches every topic
		}
		r.mu.Lock()
		topics := make([]string, 0, len(r.matchq))
		for t := range r.matchq {
			topics = append(topics, t)
		}
		clear(r.matchq)
		r.mu.Unlock()
		for _, t := range topics {
			if err := r.matchTopic(ctx, t, false); err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Debug().Err(err).Str("topic", t).Msg("subscription match")
			}
		}
	}
}

// matchTopic asks wamp.subscription.match who subscribes to topic and
// sets the log's publishing accordingly. afterReconnect: a log that was
// live before the connection and has no subscriber now lost its queue.
func (r *Relay) matchTopic(ctx context.Context, topic string, afterReconnect bool) error {
	cctx, cancel := context.WithTimeout(ctx, matchTimeout)
	defer cancel()
	res, err := r.link.Call(cctx, metaMatch, []any{topic}, nil)
	if err != nil {
		return fmt.Errorf("match %s: %w", topic, err)
	}
	var ids []uint64
	if len(res.Args) > 0 && res.Args[0] != nil {
		// A list in whatever shape the codec produced ([]any, wamp.List,
		// []wamp.ID in-process); null when nobody subscribes.
		list := reflect.ValueOf(res.Args[0])
		if list.Kind() != reflect.Slice {
			return fmt.Errorf("match %s: unexpected answer %T", topic, res.Args[0])
		}
		for i := range list.Len() {
			if id, ok := toID(list.Index(i).Interface()); ok {
				ids = append(ids, id)
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if _, gone := r.subs.deleted[id]; gone {
			continue
		}
		if r.subs.byID[id] == nil && !r.addSubLocked(id) {
			continue
		}
		r.subs.byID[id].topics[topic] = struct{}{}
	}
	name := strings.TrimPrefix(topic, r.topicPrefix)
	if s := r.streams[name]; s != nil {
		r.setLiveLocked(s, r.subs.covers(topic), afterReconnect)
	}
	return nil
}

// toID reads a WAMP ID in any numeric encoding, named integer types (such
// as nexus's wamp.ID in-process) included.
func toID(v any) (uint64, bool) {
	if id, ok := wamp.ToUint64(v, false); ok {
		return id, true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return rv.Uint(), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return uint64(rv.Int()), rv.Int() >= 0
	}
	return 0, false
}
