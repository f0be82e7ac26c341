package logs

import (
	"context"
	"errors"
	"strings"
	"testing"

	"reagent/src/errdefs"
	"reagent/src/store"
	"reagent/src/store/storetest"
)

func TestNames(t *testing.T) {
	tests := []struct {
		name string
		key  store.Key
		ok   bool
	}{
		{"prod_42_app", store.Key{AppKey: 42, Stage: "PROD"}, true},
		{"dev_42_my-app", store.Key{AppKey: 42, Stage: "DEV"}, true},
		{"pub_7_app_with_underscores", store.Key{AppKey: 7, Stage: "DEV"}, true},
		{"prod_42_app_compose-web-1", store.Key{AppKey: 42, Stage: "PROD"}, true},
		{"", store.Key{}, false},
		{"prod_0_app", store.Key{}, false},
		{"prod_42_", store.Key{}, false},
		{"prod_42", store.Key{}, false},
		{"test_42_app", store.Key{}, false},
		{"prod_x_app", store.Key{}, false},
		{"Prod_42_app", store.Key{}, false},
		{"prod_42_App", store.Key{}, false},
		{"prod_42_app.other", store.Key{}, false},
		{"prod_42_app/../x", store.Key{}, false},
		{"prod_42_a pp", store.Key{}, false},
		{"prod_99999999999999999999_app", store.Key{}, false},
		{"prod_42_" + strings.Repeat("a", maxNameLen), store.Key{}, false},
		{"portainer", store.Key{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := KeyOf(tc.name)
			if !tc.ok {
				if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("KeyOf(%q) = %v, %v; want invalid argument", tc.name, k, err)
				}
				if ValidName(tc.name) == nil {
					t.Fatal("ValidName accepted it")
				}
				return
			}
			if err != nil || k != tc.key {
				t.Fatalf("KeyOf(%q) = %v, %v; want %v", tc.name, k, err, tc.key)
			}
		})
	}
}

func TestManagedFromStore(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	if _, err := st.PutRequested(ctx, store.Requested{Key: store.Key{AppKey: 42, Stage: "PROD"}, AppName: "MyApp", TargetState: "RUNNING"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutActual(ctx, store.Actual{Key: store.Key{AppKey: 7, Stage: "DEV"}, AppName: "devapp", State: "RUNNING"}); err != nil {
		t.Fatal(err)
	}
	managed := ManagedFromStore(st)
	tests := []struct {
		name string
		want bool
	}{
		{"prod_42_myapp", true},               // requested row, name lower-cased
		{"prod_42_myapp_compose-web-1", true}, // one of its compose containers
		{"dev_7_devapp", true},                // actual row only
		{"pub_7_devapp", true},                // the publish stream of the DEV app
		{"dev_42_myapp", false},               // other stage
		{"prod_42_other", false},              // other name
		{"prod_42_myapp2", false},             // not a prefix match
		{"prod_43_myapp", false},              // other key
		{"prod_42_MyApp", false},              // not a valid name
		{"xyz", false},
	}
	for _, tc := range tests {
		if got := managed(ctx, tc.name); got != tc.want {
			t.Errorf("managed(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
