package devcloud

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"reagent/src/config"
	"reagent/src/errdefs"
)

var errUnknownDevice = errdefs.NotFound("unknown device")

// StatusRecord is one device status: an update_device_status call, or
// DISCONNECTED when the device's testament fired.
type StatusRecord struct {
	Status        string
	Stats         map[string]any
	TunnelCapable *bool
	SessionID     uint64
	At            time.Time
}

// AddDevice lets the device of a .flock file connect (authid
// <swarm_key>-<device_key>, its secret) and stores it. Adding a serial again
// updates it.
func (c *Cloud) AddDevice(f *config.Flock) error {
	if f == nil || f.SerialNumber == "" || f.DeviceKey <= 0 || f.Secret == "" {
		return errdefs.InvalidArgument("device needs serial_number, device_key and secret")
	}
	if other, ok, err := c.db.deviceByKey(f.DeviceKey); err != nil {
		return err
	} else if ok && other.Serial != f.SerialNumber {
		return errdefs.Conflict("device_key %d already belongs to device %s", f.DeviceKey, other.Serial)
	}
	d := device{
		Serial: f.SerialNumber, DeviceKey: f.DeviceKey, SwarmKey: f.SwarmKey, Secret: f.Secret.Reveal(),
		Name: f.Name, SwarmName: f.SwarmName, Owner: f.SwarmOwnerName, AppCredKey: randomHex(32),
	}
	if err := c.db.upsertDevice(d); err != nil {
		return err
	}
	c.ids.setDevice(d)
	c.chg.notify()
	return nil
}

// NewDevice creates a fresh device pointing at this cloud (random
// serial/secret, unique device_key, swarm_key 1, endpoint RouterURL,
// docker_registry_url RegistryHost()+"/", repository "apps/", environment
// "local"), registers it and writes dir/device.flock (0600). It returns the
// device and the file's path.
func (c *Cloud) NewDevice(dir string) (*config.Flock, string, error) {
	c.newDev.Lock()
	defer c.newDev.Unlock()
	devices, err := c.db.devices()
	if err != nil {
		return nil, "", err
	}
	key := int64(1000)
	for _, d := range devices {
		key = max(key, d.DeviceKey+1)
	}
	serial := uuid.NewString()
	raw, err := json.Marshal(map[string]any{
		"name":                   fmt.Sprintf("devcloud-device-%d", key),
		"secret":                 randomHex(24),
		"swarm_key":              1,
		"device_key":             key,
		"swarm_name":             "devcloud",
		"swarm_owner_name":       "developer",
		"serial_number":          serial,
		"device_endpoint_url":    c.RouterURL(),
		"docker_registry_url":    c.RegistryHost() + "/",
		"docker_main_repository": "apps/",
		"environment":            "local",
	})
	if err != nil {
		return nil, "", err
	}
	f, err := config.ParseFlock(raw)
	if err != nil {
		return nil, "", fmt.Errorf("new device: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("new device: %w", err)
	}
	path := filepath.Join(dir, "device.flock")
	if err := f.Save(path); err != nil {
		return nil, "", fmt.Errorf("new device: %w", err)
	}
	if err := c.AddDevice(f); err != nil {
		return nil, "", err
	}
	return f, path, nil
}

// SetDeviceMetadata changes what read_device_metadata answers for the
// device. A new swarm_key also changes the authid the device must use.
func (c *Cloud) SetDeviceMetadata(serial string, name, swarmName, owner string, swarmKey int64) error {
	if err := c.db.setMetadata(serial, name, swarmName, owner, swarmKey); err != nil {
		return err
	}
	d, ok, err := c.db.device(serial)
	if err != nil || !ok {
		return fmt.Errorf("set metadata of %s: %w", serial, errors.Join(err, errUnknownDevice))
	}
	c.ids.setDevice(d)
	c.chg.notify()
	return nil
}

// AppCredKey is the per-device key get_app_cred_key returns ("" for an
// unknown device).
func (c *Cloud) AppCredKey(serial string) string {
	d, ok, err := c.db.device(serial)
	if err != nil || !ok {
		return ""
	}
	return d.AppCredKey
}

// RegistryToken is the token get_registry_token answers for callerID.
func (c *Cloud) RegistryToken(callerID uint64) string {
	return fmt.Sprintf("devcloud-token-%d", callerID)
}

// DeviceArchitecture is the last update_device_architecture payload of the
// device, nil before the first.
func (c *Cloud) DeviceArchitecture(serial string) map[string]any {
	d, ok, err := c.db.device(serial)
	if err != nil || !ok {
		return nil
	}
	m, _ := decodeJSON(d.Arch).(map[string]any)
	return m
}

// StatusHistory returns every update_device_status of the device and every
// DISCONNECTED its testament caused, in order.
func (c *Cloud) StatusHistory(serial string) []StatusRecord {
	out, err := c.db.statuses(serial, false)
	if err != nil {
		c.log.Error().Err(err).Msg("status history")
	}
	return out
}

// DeviceStatus is the latest status of the device.
func (c *Cloud) DeviceStatus(serial string) (StatusRecord, bool) {
	out, err := c.db.statuses(serial, true)
	if err != nil {
		c.log.Error().Err(err).Msg("device status")
	}
	if len(out) == 0 {
		return StatusRecord{}, false
	}
	return out[0], true
}

// AwaitDeviceStatus waits until the latest status of the device is status.
func (c *Cloud) AwaitDeviceStatus(ctx context.Context, serial, status string) error {
	return c.await(ctx, func() bool {
		r, ok := c.DeviceStatus(serial)
		return ok && r.Status == status
	}, func() string {
		r, _ := c.DeviceStatus(serial)
		return fmt.Sprintf("device %s status %s (latest %q)", serial, status, r.Status)
	})
}

// await blocks until cond holds, re-checking after every stored change.
func (c *Cloud) await(ctx context.Context, cond func() bool, what func() string) error {
	for {
		wake := c.chg.wait()
		if cond() {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("await %s: %w", what(), ctx.Err())
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return hex.EncodeToString(b)
}
