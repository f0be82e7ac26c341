package devcloud

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Authroles the router assigns. Devices get "device", Studio users "user",
// and the trusted backend user "system".
const (
	RoleDevice = "device"
	RoleUser   = "user"
	RoleSystem = "system"
)

// SystemAuthID is the trusted Studio/backend identity the agent never asks
// check_privilege about.
const SystemAuthID = "system"

// Privileges a Studio user can hold; check_privilege answers from them.
var Privileges = []string{"READ", "NETWORK", "MAINTAIN", "DEVELOP", "INSTALL", "OPERATE"}

// User is a Studio user: a numeric account key as authid (or "system"), a
// wampcra secret and the privileges check_privilege grants.
type User struct {
	AuthID, Secret string
	Privileges     []string
}

// principal is one identity allowed to join the realm.
type principal struct {
	role       string
	secret     string
	serial     string   // devices only
	privileges []string // users only
}

// principals is the key store of the router: authid → principal. It is read
// on every HELLO and every message the authorizer sees, so it keeps its own
// lock and does no I/O.
type principals struct {
	mu      sync.RWMutex
	byID    map[string]principal
	devAuth map[string]string // serial → current authid, to drop the old one when swarm_key changes
}

func newPrincipals(users []User) *principals {
	p := &principals{byID: map[string]principal{}, devAuth: map[string]string{}}
	p.byID[SystemAuthID] = principal{role: RoleSystem, secret: DefaultSystemSecret, privileges: slices.Clone(Privileges)}
	for _, u := range users {
		p.setUser(u)
	}
	return p
}

func (p *principals) setUser(u User) {
	pr := principal{role: RoleUser, secret: u.Secret, privileges: normPrivileges(u.Privileges)}
	if u.AuthID == SystemAuthID {
		pr.role, pr.privileges = RoleSystem, slices.Clone(Privileges)
	}
	p.mu.Lock()
	p.byID[u.AuthID] = pr
	p.mu.Unlock()
}

func (p *principals) setDevice(d device) {
	authid := fmt.Sprintf("%d-%d", d.SwarmKey, d.DeviceKey)
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.devAuth[d.Serial]; ok && old != authid {
		delete(p.byID, old)
	}
	p.devAuth[d.Serial] = authid
	p.byID[authid] = principal{role: RoleDevice, secret: d.Secret, serial: d.Serial}
}

func (p *principals) get(authid string) (principal, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	pr, ok := p.byID[authid]
	return pr, ok
}

// allowed answers check_privilege: system holds everything, users what
// they were given, anyone else nothing.
func (p *principals) allowed(authid, privilege string) bool {
	pr, ok := p.get(authid)
	if !ok || pr.role == RoleDevice {
		return false
	}
	return slices.Contains(pr.privileges, strings.ToUpper(privilege))
}

func normPrivileges(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		s = strings.ToUpper(strings.TrimSpace(s))
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// AddUser adds or replaces a Studio user. Adding "system" changes its
// secret.
func (c *Cloud) AddUser(u User) { c.ids.setUser(u) }
