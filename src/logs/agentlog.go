// The agent's own log: zerolog JSON lines, rotated by lumberjack. The
// package doc is in doc.go.

package logs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"
	"gopkg.in/natefinch/lumberjack.v2"
)

// AgentLogOptions configure the agent's own log.
type AgentLogOptions struct {
	File    string    // JSON lines, rotated by size
	Debug   bool      // debug level, else info
	Pretty  bool      // also human-readable lines on Console
	Console io.Writer // os.Stdout when nil
}

// Rotation of the agent log: the reference's sizes (100 MB, two backups).
const (
	agentLogMaxSizeMB  = 100
	agentLogMaxBackups = 2
)

// NewAgentLogger opens the agent log. It fails early, with the path in the
// message, when the file cannot be written, instead of losing every line.
// Close the returned closer at exit.
func NewAgentLogger(opts AgentLogOptions) (zerolog.Logger, io.Closer, error) {
	if err := os.MkdirAll(filepath.Dir(opts.File), 0o755); err != nil {
		return zerolog.Nop(), nil, fmt.Errorf("log file %s: %w (choose another with -logFile)", opts.File, err)
	}
	f, err := os.OpenFile(opts.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return zerolog.Nop(), nil, fmt.Errorf("log file %s: %w (choose another with -logFile)", opts.File, err)
	}
	f.Close()
	rot := &lumberjack.Logger{Filename: opts.File, MaxSize: agentLogMaxSizeMB, MaxBackups: agentLogMaxBackups}

	var w io.Writer = rot
	if opts.Pretty {
		console := opts.Console
		if console == nil {
			console = os.Stdout
		}
		w = zerolog.MultiLevelWriter(zerolog.ConsoleWriter{Out: console, TimeFormat: "2006-01-02 15:04:05"}, rot)
	}
	level := zerolog.InfoLevel
	if opts.Debug {
		level = zerolog.DebugLevel
	}
	log := zerolog.New(w).Level(level).With().Timestamp().Logger()
	return log, rot, nil
}
