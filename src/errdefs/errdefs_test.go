package errdefs

import (
	"errors"
	"fmt"
	"testing"
)

func TestClassesSurviveWrapping(t *testing.T) {
	cases := []struct {
		name  string
		err   error
		class error
	}{
		{"invalid", InvalidArgument("bad %s", "x"), ErrInvalidArgument},
		{"denied", NotAuthorized("no"), ErrNotAuthorized},
		{"missing", NotFound("gone"), ErrNotFound},
		{"conflict", Conflict("busy"), ErrConflict},
		{"unavailable", Unavailable("down"), ErrUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wrapped := fmt.Errorf("doing it: %w", c.err)
			if !errors.Is(wrapped, c.class) {
				t.Fatalf("%v is not %v", wrapped, c.class)
			}
			for _, other := range []error{ErrInvalidArgument, ErrNotAuthorized, ErrNotFound, ErrConflict, ErrUnavailable} {
				if other != c.class && errors.Is(wrapped, other) {
					t.Fatalf("%v also matches %v", wrapped, other)
				}
			}
		})
	}
	if got := InvalidArgument("failed to parse %s", "app_key").Error(); got != "failed to parse app_key" {
		t.Fatalf("message changed: %q", got)
	}
}
