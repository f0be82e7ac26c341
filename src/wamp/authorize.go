package wamp

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"reagent/src/errdefs"
)

// Callers the router discloses.
const (
	callerSystem   = "system" // the cloud's backend: trusted
	kwDelegatedKey = "requestor_account_key"
)

type privKey struct {
	account uint64
	priv    Privilege
}

type privEntry struct {
	allowed bool
	until   time.Time
}

// authorize decides whether c may run p, deny by default:
//   - Public procedures run for anyone;
//   - "system" is trusted, unless it names the account it acts for with
//     the kwarg requestor_account_key, which is then checked (the
//     reference's delegation, wamp-contract §3.1);
//   - a numeric caller_authid is a Studio account, checked with
//     reswarm.devices.check_privilege;
//   - anything else (no disclosure, a device's authid, …) is refused.
//
// It sets c.Account to the account checked.
func (s *Session) authorize(ctx context.Context, p *procedure, c *Call) error {
	priv := p.priv
	if p.dyn != nil {
		var err error
		if priv, err = p.dyn(ctx, c); err != nil {
			return err
		}
	}
	if priv == Public {
		return nil
	}
	var account uint64
	switch {
	case c.Caller == callerSystem:
		v, ok := c.Kwargs[kwDelegatedKey]
		if !ok || v == nil {
			return nil
		}
		n, ok := ToUint64(v, true)
		if !ok {
			return errdefs.InvalidArgument("invalid %s: %v", kwDelegatedKey, v)
		}
		if n == 0 { // "nobody in particular": the backend acts for itself
			return nil
		}
		account = n
	case isDecimal(c.Caller):
		n, err := strconv.ParseUint(c.Caller, 10, 64)
		if err != nil {
			return errdefs.NotAuthorized("insufficient privileges to %s: unknown caller %q", p.name, c.Caller)
		}
		account = n
	case c.Caller == "":
		return errdefs.NotAuthorized("insufficient privileges to %s: the caller is not disclosed", p.name)
	default:
		return errdefs.NotAuthorized("insufficient privileges to %s: caller %q is not an account", p.name, c.Caller)
	}
	c.Account = account
	allowed, err := s.checkPrivilege(ctx, account, priv)
	if err != nil {
		return fmt.Errorf("could not verify privileges: %w", err)
	}
	if !allowed {
		return errdefs.NotAuthorized("insufficient privileges to %s (%s required)", p.name, priv)
	}
	return nil
}

func isDecimal(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// checkPrivilege asks the cloud, with a deadline, and caches definite
// answers for PrivilegeCacheTTL so that a burst of Studio calls costs one
// backend round trip.
func (s *Session) checkPrivilege(ctx context.Context, account uint64, priv Privilege) (bool, error) {
	key := privKey{account, priv}
	now := s.opts.Now()
	s.mu.Lock()
	be := s.backend
	if e, ok := s.privCache[key]; ok && now.Before(e.until) {
		s.mu.Unlock()
		return e.allowed, nil
	}
	s.mu.Unlock()
	if be == nil {
		return false, errNotConnected()
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
	defer cancel()
	allowed, err := be.CheckPrivilege(ctx, account, priv)
	if err != nil {
		return false, err
	}
	if s.opts.PrivilegeCacheTTL > 0 {
		s.mu.Lock()
		if len(s.privCache) > 1024 { // bounded: drop everything rather than track ages
			s.privCache = map[privKey]privEntry{}
		}
		s.privCache[key] = privEntry{allowed: allowed, until: now.Add(s.opts.PrivilegeCacheTTL)}
		s.mu.Unlock()
	}
	return allowed, nil
}
