package wamp

import (
	"context"
	"fmt"
	"runtime/debug"
	"sort"

	"github.com/gammazero/nexus/v3/client"
	nx "github.com/gammazero/nexus/v3/wamp"
)

// procEstablished is registered first on every connection, without
// force_reregister: the router refusing it means another session holds
// this serial.
const procEstablished = "wamp_connection_established"

// procedure is one entry of the table: a name under re.mgmt.<serial>.,
// how its privilege is decided and its handler.
type procedure struct {
	name    string
	priv    Privilege     // static privilege; "" when dyn decides
	dyn     PrivilegeFunc // non-nil for RegisterDynamic
	handler Handler
}

// panicError turns a recovered value into an error.
func panicError(r any) error { return fmt.Errorf("panic: %v", r) }

func helloHandler(context.Context, *Call) (Result, error) {
	return Result{Args: []any{"Hello :-)"}}, nil
}

// Register adds (or replaces) the device procedure re.mgmt.<serial>.<name>
// with a fixed privilege. It may be called before Run or any time after:
// the table is registered on every WELCOME, and a procedure added while
// connected is registered at once.
func (s *Session) Register(name string, p Privilege, h Handler) {
	s.register(&procedure{name: name, priv: p, handler: h})
}

// RegisterDynamic is Register for a procedure whose privilege depends on
// the call (request_app_state: INSTALL or OPERATE).
func (s *Session) RegisterDynamic(name string, p PrivilegeFunc, h Handler) {
	s.register(&procedure{name: name, dyn: p, handler: h})
}

func (s *Session) register(p *procedure) {
	if p.name == "" || p.handler == nil || (p.priv == "" && p.dyn == nil) {
		panic(fmt.Sprintf("wamp: Register(%q) needs a name, a privilege and a handler", p.name))
	}
	s.mu.Lock()
	_, existed := s.procs[p.name]
	s.procs[p.name] = p
	var l *link
	// A replaced procedure keeps its registration: the nexus handler looks
	// the procedure up by name on every call.
	if s.link != nil && s.link.regDone && !existed && s.link.useLocked() {
		l = s.link
	}
	s.mu.Unlock()
	if l != nil {
		err := s.registerOn(l, p.name)
		s.release(l)
		if err != nil {
			s.log.Warn().Err(err).Str("procedure", p.name).Msg("register")
		}
	}
}

// Procedures returns the table: name → privilege (Dynamic for
// RegisterDynamic entries).
func (s *Session) Procedures() map[string]Privilege {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Privilege, len(s.procs))
	for n, p := range s.procs {
		if p.dyn != nil {
			out[n] = Dynamic
		} else {
			out[n] = p.priv
		}
	}
	return out
}

// procedureNames lists the table except wamp_connection_established,
// sorted so registration order is stable in logs.
func (s *Session) procedureNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.procs))
	for n := range s.procs {
		if n != procEstablished {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// registerOn registers one device procedure on cli with
// force_reregister, as the reference does.
func (s *Session) registerOn(l *link, name string) error {
	return l.cli.Register(ProcedureURI(s.serial, name), s.invocationHandler(l, name), nx.Dict{"force_reregister": true})
}

// invocationHandler adapts nexus's invocation to our Handler: decode the
// caller, check the privilege, run the handler under recover, map errors
// to the reference shape.
func (s *Session) invocationHandler(l *link, name string) client.InvocationHandler {
	return func(ctx context.Context, inv *nx.Invocation) (res client.InvokeResult) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error().Str("procedure", name).Interface("panic", r).Str("stack", string(debug.Stack())).
					Msg("procedure handler panicked")
				res = errorResult(fmt.Errorf("internal error in %s", name))
			}
		}()
		// nexus ends the context on CANCEL or the caller's timeout; it
		// also has to end with the connection, so shutdown never waits
		// for a handler that would otherwise run on.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(l.ctx, cancel)
		defer stop()
		s.mu.Lock()
		p := s.procs[name]
		s.mu.Unlock()
		if p == nil {
			return errorResult(fmt.Errorf("procedure %s is no longer available", name))
		}
		caller, _ := inv.Details["caller_authid"].(string)
		c := &Call{Args: []any(inv.Arguments), Kwargs: map[string]any(inv.ArgumentsKw), Caller: caller}
		if err := s.authorize(ctx, p, c); err != nil {
			s.log.Info().Str("procedure", name).Str("caller", caller).Err(err).Msg("call refused")
			return errorResult(err)
		}
		s.log.Debug().Str("procedure", name).Str("caller", caller).Uint64("account", c.Account).Msg("call")
		r, err := p.handler(ctx, c)
		if err != nil {
			s.log.Debug().Str("procedure", name).Err(err).Msg("call failed")
			return errorResult(err)
		}
		return client.InvokeResult{Args: r.Args, Kwargs: r.Kwargs}
	}
}
