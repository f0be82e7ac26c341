package api

import (
	"context"
	"time"

	"reagent/src/wamp"
)

// Handshake is the answer of device_handshake. It is the one procedure
// that answers in kwargs (the reference's shape).
//
//	{"utp": "2024-03-01T10:15:00+01:00", "id": "c6aa09d3-…-bf75cdd7f149"}
type Handshake struct {
	UTP string `json:"utp"` // the device clock, RFC 3339
	ID  string `json:"id"`  // the serial number
}

func (h *handlers) deviceHandshake(context.Context, *wamp.Call) (wamp.Result, error) {
	hs := Handshake{UTP: h.now().Format(time.RFC3339), ID: h.serial}
	return wamp.Result{Kwargs: map[string]any{"utp": hs.UTP, "id": hs.ID}}, nil
}
