package devcloud

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gammazero/nexus/v3/router"
	"github.com/gammazero/nexus/v3/router/auth"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/gammazero/nexus/v3/wamp/crsign"
	"github.com/rs/zerolog"
)

// craTimeout bounds the wait for AUTHENTICATE after CHALLENGE.
const craTimeout = 10 * time.Second

// Rejection texts of the real cloud's router (Crossbar's wampcra), which the
// agent recognises: a wrong secret must read exactly like this.
const (
	errBadSignature = "WAMP-CRA client signature is invalid"
	errNoPrincipal  = "no user with authid %q in user database"
)

func newRouter(ids *principals, ev *events, log zerolog.Logger) (router.Router, error) {
	cfg := &router.Config{
		RealmConfigs: []*router.RealmConfig{{
			URI:            Realm,
			StrictURI:      false, // the wire has URIs with '/' (tunnel_state_update/onreload)
			AllowDisclose:  true,
			Authenticators: []auth.Authenticator{&craAuth{ids: ids}},
			Authorizer:     &authorizer{ids: ids, ev: ev},
		}},
	}
	r, err := router.NewRouter(cfg, stdLogger{log.With().Str("part", "router").Logger()})
	if err != nil {
		return nil, fmt.Errorf("devcloud: start router: %w", err)
	}
	return r, nil
}

// craAuth is wampcra with unsalted secrets (the raw .flock secret is the
// HMAC key). It is nexus's CRAuthenticator except for the rejection texts,
// which are the real cloud's: the agent exits on a bad signature and keeps
// retrying on anything else, so the difference is observable.
type craAuth struct{ ids *principals }

var _ auth.Authenticator = (*craAuth)(nil)

func (a *craAuth) AuthMethod() string { return "wampcra" }

func (a *craAuth) Authenticate(sid wamp.ID, details wamp.Dict, peer wamp.Peer) (*wamp.Welcome, error) {
	authid, _ := wamp.AsString(details["authid"])
	if authid == "" {
		return nil, errors.New("missing authid")
	}
	pr, ok := a.ids.get(authid)
	if !ok {
		return nil, fmt.Errorf(errNoPrincipal, authid)
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("challenge nonce: %w", err)
	}
	ch, err := json.Marshal(map[string]any{
		"authid":       authid,
		"authrole":     pr.role,
		"authmethod":   a.AuthMethod(),
		"authprovider": "devcloud",
		"nonce":        base64.StdEncoding.EncodeToString(nonce),
		"timestamp":    wamp.NowISO8601(),
		"session":      sid,
	})
	if err != nil {
		return nil, err
	}
	select {
	case peer.Send() <- &wamp.Challenge{AuthMethod: a.AuthMethod(), Extra: wamp.Dict{"challenge": string(ch)}}:
	default:
		return nil, errors.New("cannot send challenge to client: blocked")
	}
	msg, err := wamp.RecvTimeout(peer, craTimeout)
	if err != nil {
		return nil, err
	}
	rsp, ok := msg.(*wamp.Authenticate)
	if !ok {
		return nil, fmt.Errorf("unexpected %v message in response to CHALLENGE", msg.MessageType())
	}
	if !crsign.VerifySignature(rsp.Signature, string(ch), []byte(pr.secret)) {
		return nil, errors.New(errBadSignature)
	}
	return &wamp.Welcome{Details: wamp.Dict{
		"authid":       authid,
		"authrole":     pr.role,
		"authmethod":   a.AuthMethod(),
		"authprovider": "devcloud",
	}}, nil
}

// authorizer sees every message a remote session sends. It counts
// publications per topic (PublishCount) and keeps the ACLs a real cloud
// has: a device registers only its own re.mgmt.<serial>. procedures and
// cannot call devcloud's Studio procedures; a Studio user cannot register
// device procedures.
type authorizer struct {
	ids *principals
	ev  *events
}

var _ router.Authorizer = (*authorizer)(nil)

func (a *authorizer) Authorize(sess *wamp.Session, msg wamp.Message) (bool, error) {
	authid, _ := wamp.AsString(sess.Details["authid"])
	role, _ := wamp.AsString(sess.Details["authrole"])
	switch m := msg.(type) {
	case *wamp.Publish:
		a.ev.countPublish(string(m.Topic))
	case *wamp.Register:
		proc := string(m.Procedure)
		switch role {
		case RoleDevice:
			pr, _ := a.ids.get(authid)
			if !strings.HasPrefix(proc, "re.mgmt."+pr.serial+".") {
				return false, nil
			}
		case RoleUser:
			if strings.HasPrefix(proc, "re.mgmt.") || strings.HasPrefix(proc, "reswarm.") || strings.HasPrefix(proc, "re.tunnel.") {
				return false, nil
			}
		}
	case *wamp.Call:
		if role == RoleDevice && strings.HasPrefix(string(m.Procedure), studioPrefix) {
			return false, nil
		}
	}
	return true, nil
}

// stdLogger lets nexus log through zerolog, at debug level: the router is
// chatty about every client that comes and goes.
type stdLogger struct{ l zerolog.Logger }

func (s stdLogger) Print(v ...any)                 { s.l.Debug().Msg(strings.TrimSpace(fmt.Sprint(v...))) }
func (s stdLogger) Println(v ...any)               { s.l.Debug().Msg(strings.TrimSpace(fmt.Sprintln(v...))) }
func (s stdLogger) Printf(format string, v ...any) { s.l.Debug().Msgf(format, v...) }
