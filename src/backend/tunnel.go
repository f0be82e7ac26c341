package backend

import (
	"context"
	"errors"
	"strings"

	"reagent/src/errdefs"
	"reagent/src/wamp"
)

// PortRequest asks the tunnel service for a remote port.
//
//	{"port": 20001, "protocol": "tcp"}
type PortRequest struct {
	Port     uint64 `json:"port"`
	Protocol string `json:"protocol"`
}

// ExposedPort is the tunnel service's answer to expose_port.
//
//	{"remote_port": 20001}
type ExposedPort struct {
	RemotePort uint64 `json:"remote_port"`
}

// ExposePort reserves a remote port for a tcp/udp tunnel: re.tunnel.expose_port
// [PortRequest], kwargs {}. A "Duplicate value" error means the device
// holds the port already, which the reference treats as success with the
// requested port.
func (c *Client) ExposePort(ctx context.Context, port uint64, protocol string) (uint64, error) {
	p, err := payload(PortRequest{Port: port, Protocol: protocol})
	if err != nil {
		return 0, err
	}
	res, err := c.call(ctx, 0, ProcExposePort, []any{p}, map[string]any{})
	if err != nil {
		var re *wamp.RemoteError
		if errors.As(err, &re) && strings.Contains(re.Error(), "Duplicate value") {
			return port, nil
		}
		return 0, err
	}
	a, err := firstArg(ProcExposePort, res)
	if err != nil {
		return 0, err
	}
	d, ok := wamp.AsDict(a)
	if !ok {
		return 0, errdefs.InvalidArgument("%s: expected a dict, got %T", ProcExposePort, a)
	}
	rp, ok := wamp.ToUint64(d["remote_port"], false)
	if !ok {
		return 0, errdefs.InvalidArgument("%s: remote_port is not a port number: %v", ProcExposePort, d["remote_port"])
	}
	return rp, nil
}

// ClosePort releases a remote port: re.tunnel.close_port [PortRequest]
// (declared, never called by the reference; the shape mirrors expose_port).
func (c *Client) ClosePort(ctx context.Context, port uint64, protocol string) error {
	p, err := payload(PortRequest{Port: port, Protocol: protocol})
	if err != nil {
		return err
	}
	_, err = c.call(ctx, 0, ProcClosePort, []any{p}, map[string]any{})
	return err
}
