package devcloud

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/rs/zerolog"
)

// registryServer is go-containerregistry's registry over plain HTTP. Blobs
// are files under the data dir; the registry keeps manifests in memory, so
// devcloud journals every manifest write in SQLite and replays the journal
// at start: images survive a devcloud restart.
type registryServer struct {
	srv   *http.Server
	shown string
}

// manifestPath matches /v2/<repo>/manifests/<ref>.
var manifestPath = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)

// maxManifest bounds a manifest body kept in memory for the journal.
const maxManifest = 4 << 20

func startRegistry(ctx context.Context, db *store, dir, addr string, lg zerolog.Logger) (*registryServer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devcloud: registry dir: %w", err)
	}
	rlog := lg.With().Str("part", "registry").Logger()
	reg := registry.New(
		registry.WithBlobHandler(registry.NewDiskBlobHandler(dir)),
		registry.Logger(log.New(zerologWriter{rlog}, "", 0)),
	)
	ops, err := db.manifestOps()
	if err != nil {
		return nil, err
	}
	for _, op := range ops {
		req := httptest.NewRequestWithContext(ctx, op.Method, "/v2/"+op.Repo+"/manifests/"+op.Ref, bytes.NewReader(op.Body))
		if op.MediaType != "" {
			req.Header.Set("Content-Type", op.MediaType)
		}
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)
		if rec.Code >= 300 {
			rlog.Warn().Str("repo", op.Repo).Str("ref", op.Ref).Int("status", rec.Code).Msg("manifest journal entry not restored")
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devcloud: registry listen on %s: %w", addr, err)
	}
	r := &registryServer{shown: displayHost(ln.Addr())}
	r.srv = &http.Server{Handler: journal(reg, db, rlog), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			rlog.Error().Err(err).Msg("registry stopped")
		}
	}()
	return r, nil
}

func (r *registryServer) hostPort() string { return r.shown }

func (r *registryServer) close() error { return r.srv.Close() }

// journal records successful manifest PUTs and DELETEs.
func journal(next http.Handler, db *store, lg zerolog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m := manifestPath.FindStringSubmatch(req.URL.Path)
		if m == nil || (req.Method != http.MethodPut && req.Method != http.MethodDelete) {
			next.ServeHTTP(w, req)
			return
		}
		var body []byte
		if req.Method == http.MethodPut {
			var err error
			body, err = io.ReadAll(io.LimitReader(req.Body, maxManifest+1))
			if err != nil || len(body) > maxManifest {
				http.Error(w, "manifest unreadable or too large", http.StatusBadRequest)
				return
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, req)
		if sw.code < 200 || sw.code >= 300 {
			return
		}
		op := manifestOp{Method: req.Method, Repo: m[1], Ref: m[2], MediaType: req.Header.Get("Content-Type"), Body: body}
		if err := db.addManifestOp(op); err != nil {
			lg.Error().Err(err).Msg("manifest not journalled; it is lost at the next start")
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// zerologWriter turns the registry's log.Logger lines into debug events.
type zerologWriter struct{ l zerolog.Logger }

func (z zerologWriter) Write(p []byte) (int, error) {
	z.l.Debug().Msg(string(bytes.TrimSpace(p)))
	return len(p), nil
}
