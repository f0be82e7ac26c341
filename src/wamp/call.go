package wamp

import "context"

// Privilege names what a caller must be allowed to do on the device for a
// procedure to run. The names are the cloud's (check_privilege's
// "privilege" field); Public means no check at all.
type Privilege string

// The privileges of the IronFlock cloud, plus Public for the procedures
// that reveal nothing and change nothing.
const (
	Public   Privilege = "PUBLIC"
	Read     Privilege = "READ"
	Network  Privilege = "NETWORK"
	Maintain Privilege = "MAINTAIN"
	Develop  Privilege = "DEVELOP"
	Install  Privilege = "INSTALL"
	Operate  Privilege = "OPERATE"
)

// Dynamic is how Procedures shows a procedure whose privilege depends on
// its arguments (RegisterDynamic).
const Dynamic Privilege = "DYNAMIC"

// Call is one invocation as a handler sees it.
type Call struct {
	Args    []any          // positional args as decoded by nexus
	Kwargs  map[string]any // keyword args; nil when none were sent
	Caller  string         // disclosed caller_authid ("system", "123", …)
	Account uint64         // the account the privilege was checked for (0 for system without delegation)
}

// Result is what a handler answers: RESULT positional and keyword args.
type Result struct {
	Args   []any
	Kwargs map[string]any
}

// Handler runs one invocation. An error goes out as a WAMP ERROR whose URI
// follows the error's errdefs class, with args [{"error": err.Error()}].
type Handler func(ctx context.Context, c *Call) (Result, error)

// PrivilegeFunc decides the privilege of one invocation from its
// arguments. c.Account is not set yet when it runs. An error is answered
// as is (use errdefs.InvalidArgument for bad input).
type PrivilegeFunc func(ctx context.Context, c *Call) (Privilege, error)

// ProcedureURI is the URI of a device procedure: "re.mgmt.<serial>.<name>".
func ProcedureURI(serial, name string) string {
	return "re.mgmt." + serial + "." + name
}
