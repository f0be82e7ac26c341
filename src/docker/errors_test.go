package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"

	"reagent/src/errdefs"
)

// Unit test of the message classification. The integration tests provoke
// the same messages from the real engine (privileged start, port clash,
// unknown runtime, missing image and container).
func TestClassify(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		want     []error
		not      []error
		hostPort int
	}{
		{"caps refused", errors.New("failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: unable to apply caps: operation not permitted: unknown"),
			[]error{ErrPrivilegeRefused}, []error{ErrPortInUse, errdefs.ErrInvalidArgument}, 0},
		{"device cgroup refused", errors.New("error gathering device information while adding custom device \"/dev/x\": operation not permitted"),
			[]error{ErrPrivilegeRefused}, nil, 0},
		{"plain permission problem is no privilege refusal", errors.New("open /etc/x: operation not permitted"),
			nil, []error{ErrPrivilegeRefused}, 0},
		{"port allocated", errors.New("driver failed programming external connectivity on endpoint x (abc): Bind for 127.0.0.1:45678 failed: port is already allocated"),
			[]error{ErrPortInUse, errdefs.ErrConflict}, nil, 45678},
		{"address in use", errors.New("driver failed programming external connectivity on endpoint y: Error starting userland proxy: listen tcp4 0.0.0.0:45679: bind: address already in use"),
			[]error{ErrPortInUse}, nil, 45679},
		{"udp in use", errors.New("Error starting userland proxy: listen udp6 [::]:5353: bind: address already in use"),
			[]error{ErrPortInUse}, nil, 5353},
		{"runtime 20.10", errors.New("Unknown runtime specified nvidia"), []error{ErrRuntimeUnavailable, errdefs.ErrInvalidArgument}, nil, 0},
		{"runtime newer", errors.New("unknown or invalid runtime name: nvidia"), []error{ErrRuntimeUnavailable}, nil, 0},
		{"context", fmt.Errorf("x: %w", context.Canceled), []error{context.Canceled}, []error{errdefs.ErrUnavailable}, 0},
		{"sdk not found", cerrdefs.ErrNotFound.WithMessage("No such container: x"), []error{errdefs.ErrNotFound}, nil, 0},
		{"sdk conflict", cerrdefs.ErrConflict.WithMessage("name in use"), []error{errdefs.ErrConflict}, nil, 0},
		{"sdk invalid", cerrdefs.ErrInvalidArgument.WithMessage("bad"), []error{errdefs.ErrInvalidArgument}, nil, 0},
		{"engine could not reach a registry", cerrdefs.ErrInternal.WithMessage(`Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused`), []error{errdefs.ErrUnavailable}, nil, 0},
		{"unclassified stays", errors.New("something else"), nil, []error{errdefs.ErrNotFound, errdefs.ErrConflict, errdefs.ErrUnavailable, errdefs.ErrInvalidArgument}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := wrapf(c.err, "doing %s", "it")
			for _, w := range c.want {
				if !errors.Is(got, w) {
					t.Errorf("%v is not %v", got, w)
				}
			}
			for _, n := range c.not {
				if errors.Is(got, n) {
					t.Errorf("%v is %v", got, n)
				}
			}
			if got.Error() != "doing it: "+c.err.Error() {
				t.Errorf("message changed: %q", got)
			}
			var pe *PortInUseError
			if errors.As(got, &pe) != (c.hostPort != 0) || (pe != nil && pe.HostPort != c.hostPort) {
				t.Errorf("port error %+v, want port %d", pe, c.hostPort)
			}
			again := wrapf(got, "outer")
			for _, w := range c.want {
				if !errors.Is(again, w) {
					t.Errorf("rewrapping lost %v: %v", w, again)
				}
			}
		})
	}
	if classify(nil) != nil {
		t.Fatal("nil classified")
	}
}

func TestClassifyMessage(t *testing.T) {
	cases := []struct {
		msg  string
		want error
	}{
		{"manifest for 127.0.0.1:5000/x:nope not found: manifest unknown: manifest unknown", errdefs.ErrNotFound},
		{"pull access denied for x, repository does not exist or may require 'docker login'", errdefs.ErrNotFound},
		{"Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused", errdefs.ErrUnavailable},
		{"The command '/bin/sh -c exit 3' returned a non-zero code: 3", nil},
	}
	for _, c := range cases {
		err := classifyMessage(c.msg)
		if err.Error() != c.msg {
			t.Errorf("message changed: %q", err)
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%q is not %v", c.msg, c.want)
		}
		if c.want == nil && isClassified(err) {
			t.Errorf("%q classified", c.msg)
		}
	}
}

func TestBackoffGrowsJittersAndCaps(t *testing.T) {
	cases := []struct {
		name   string
		rand   float64
		expect []int64 // milliseconds
	}{
		{"no jitter", 0, []int64{50, 100, 200, 400, 500, 500}},
		{"full jitter", 0.999999, []int64{99, 199, 399, 799, 999, 999}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBackoff(100e6, 1000e6)
			b.rand = func() float64 { return c.rand }
			for i, w := range c.expect {
				if got := b.next().Milliseconds(); got != w {
					t.Fatalf("step %d: %d ms, want %d", i, got, w)
				}
			}
			b.reset()
			if got := b.next().Milliseconds(); got != c.expect[0] {
				t.Fatalf("after reset: %d", got)
			}
		})
	}
}

func TestAuthNeverPrintsPassword(t *testing.T) {
	a := RegistryAuth{Username: "u", Password: "hunter2", ServerAddress: "r"}
	for _, s := range []string{fmt.Sprint(a), fmt.Sprintf("%v %+v %#v", a, a, &a)} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("password printed: %s", s)
		}
	}
}
