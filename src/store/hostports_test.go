package store

import (
	"errors"
	"reflect"
	"testing"

	"reagent/src/errdefs"
)

func TestHostPortReservations(t *testing.T) {
	s := openTest(t)
	ctx := ctxT(t)
	a := Key{AppKey: 1, Stage: "PROD"}
	b := Key{AppKey: 2, Stage: "DEV"}
	steps := []struct {
		name string
		hp   HostPort
		err  error
	}{
		{"a reserves 40000 for 80", HostPort{Key: a, Protocol: "tcp", DeclaredPort: 80, HostPort: 40000}, nil},
		{"a again, same row", HostPort{Key: a, Protocol: "tcp", DeclaredPort: 80, HostPort: 40000}, nil},
		{"b wants the same tcp port", HostPort{Key: b, Protocol: "tcp", DeclaredPort: 8080, HostPort: 40000}, errdefs.ErrConflict},
		{"b takes it for udp", HostPort{Key: b, Protocol: "udp", DeclaredPort: 8080, HostPort: 40000}, nil},
		{"a uses 40000 for another port", HostPort{Key: a, Protocol: "tcp", DeclaredPort: 81, HostPort: 40000}, errdefs.ErrConflict},
		{"a, compose service web", HostPort{Key: a, Protocol: "tcp", DeclaredPort: 80, Service: "web", HostPort: 40001}, nil},
		{"a moves port 80 to 40002", HostPort{Key: a, Protocol: "tcp", DeclaredPort: 80, HostPort: 40002}, nil},
		{"b takes the freed 40000", HostPort{Key: b, Protocol: "tcp", DeclaredPort: 9000, HostPort: 40000}, nil},
		{"DEV stage of a is another app", HostPort{Key: Key{AppKey: 1, Stage: "DEV"}, Protocol: "tcp", DeclaredPort: 80, HostPort: 40002}, errdefs.ErrConflict},
		{"protocol http", HostPort{Key: a, Protocol: "http", DeclaredPort: 80, HostPort: 40003}, errdefs.ErrInvalidArgument},
		{"host port 0", HostPort{Key: a, Protocol: "tcp", DeclaredPort: 80, HostPort: 0}, errdefs.ErrInvalidArgument},
		{"declared port 0", HostPort{Key: a, Protocol: "tcp", DeclaredPort: 0, HostPort: 40003}, errdefs.ErrInvalidArgument},
		{"bad stage", HostPort{Key: Key{AppKey: 1}, Protocol: "tcp", DeclaredPort: 1, HostPort: 40003}, errdefs.ErrInvalidArgument},
	}
	for _, st := range steps {
		err := s.ReserveHostPort(ctx, st.hp)
		if (st.err == nil) != (err == nil) || (st.err != nil && !errors.Is(err, st.err)) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.err)
		}
	}
	got, err := s.HostPorts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []HostPort{
		{Key: a, Protocol: "tcp", DeclaredPort: 80, HostPort: 40002},
		{Key: a, Protocol: "tcp", DeclaredPort: 80, Service: "web", HostPort: 40001},
		{Key: b, Protocol: "tcp", DeclaredPort: 9000, HostPort: 40000},
		{Key: b, Protocol: "udp", DeclaredPort: 8080, HostPort: 40000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reservations\n%+v\nwant\n%+v", got, want)
	}

	if err := s.ReleaseHostPorts(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseHostPorts(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err = s.HostPorts(ctx)
	if err != nil || !reflect.DeepEqual(got, want[2:]) {
		t.Fatalf("after release: %+v %v", got, err)
	}
	if err := s.ReserveHostPort(ctx, HostPort{Key: b, Protocol: "tcp", DeclaredPort: 1, HostPort: 40002}); err != nil {
		t.Fatalf("released port not free: %v", err)
	}
}
