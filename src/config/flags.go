// Package config owns reagent's configuration: the command-line flags (names
// and defaults of the reference agent), the device's .flock file (strict
// parse, validation, atomic save) and the paths derived from both.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Flags are the command-line options. Names, types and defaults are the
// reference agent's (platform.md §1.2) except where DESIGN.md §4 fixes a
// defect: derived paths follow -agentDir, -env selects the update channel.
type Flags struct {
	AgentDir                 string
	AppsDir                  string
	Arch                     bool
	CompressedBuildExtension string
	Config                   string
	ConnTimeout              time.Duration
	DBFileName               string
	Debug                    bool
	DebugMessaging           bool
	Env                      string
	LogFile                  string
	NMW                      bool
	Offline                  bool
	PingPongTimeout          time.Duration
	PrettyLogging            bool
	Profiling                bool
	ProfilingPort            uint
	RemoteUpdateURL          string
	ResponseTimeout          time.Duration
	Update                   bool
	Version                  bool
}

// ErrUsage means the command line was wrong; the message was already
// printed. The process should exit 2.
var ErrUsage = errors.New("usage error")

// Environments are the values -env and the .flock "environment" accept.
var Environments = []string{"production", "test", "local"}

// DefaultAgentDir is /opt/reagent on Linux and $HOME/reagent elsewhere.
func DefaultAgentDir() string {
	if runtime.GOOS == "linux" {
		return "/opt/reagent"
	}
	return filepath.Join(homeDir(), "reagent")
}

// DefaultLogFile is /var/log/reagent.log on Linux and $HOME/reagent/reagent.log elsewhere.
func DefaultLogFile() string {
	if runtime.GOOS == "linux" {
		return "/var/log/reagent.log"
	}
	return filepath.Join(homeDir(), "reagent", "reagent.log")
}

func homeDir() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	return "."
}

// ParseFlags parses args (without the program name). -help prints the usage
// to out and returns flag.ErrHelp. A bad flag prints to out and returns
// ErrUsage. -version and -arch need no -config; anything else does.
func ParseFlags(args []string, out io.Writer) (*Flags, error) {
	f := &Flags{}
	fs := flag.NewFlagSet("reagent", flag.ContinueOnError)
	fs.SetOutput(out)
	var connMS, ppMS, respMS uint

	fs.StringVar(&f.AgentDir, "agentDir", DefaultAgentDir(), "location of the agent binary and its state")
	fs.StringVar(&f.AppsDir, "appsDir", "", "apps and app data (default <agentDir>/apps)")
	fs.BoolVar(&f.Arch, "arch", false, "print the architecture the binary was built for and exit")
	fs.StringVar(&f.CompressedBuildExtension, "compressedBuildExtension", "tgz", "extension of uploaded build archives")
	fs.StringVar(&f.Config, "config", "", "the device's .flock file (required to run)")
	fs.UintVar(&connMS, "connTimeout", 1250, "socket connection timeout in ms (0 = none)")
	fs.StringVar(&f.DBFileName, "dbFileName", "", "SQLite database file (default <agentDir>/reagent.db)")
	fs.BoolVar(&f.Debug, "debug", true, "debug log level (-debug=false for info)")
	fs.BoolVar(&f.DebugMessaging, "debugMessaging", false, "debug logs of the messaging layer")
	fs.StringVar(&f.Env, "env", "production", "environment: production, test or local; the update channel when the .flock names none")
	fs.StringVar(&f.LogFile, "logFile", DefaultLogFile(), "agent log file")
	fs.BoolVar(&f.NMW, "nmw", true, "use NetworkManager on Linux (-nmw=false to disable)")
	fs.BoolVar(&f.Offline, "offline", false, "run without a socket connection: keep apps at their last requested state")
	fs.UintVar(&ppMS, "ppTimeout", 0, "websocket ping-pong (keepalive) interval in ms (0 = none)")
	fs.BoolVar(&f.PrettyLogging, "prettyLogging", false, "human-readable logs on the console as well")
	fs.BoolVar(&f.Profiling, "profiling", false, "serve pprof on 127.0.0.1:<profilingPort>")
	fs.UintVar(&f.ProfilingPort, "profilingPort", 80, "pprof port")
	fs.StringVar(&f.RemoteUpdateURL, "remoteUpdateURL", "https://storage.googleapis.com", "bucket base URL for updates")
	fs.UintVar(&respMS, "respTimeout", 5000, "response timeout of the messaging client in ms")
	fs.BoolVar(&f.Update, "update", true, "update the agent on start (-update=false to disable)")
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")

	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "reagent — the IronFlock device agent\n\nUsage:\n  reagent -config device.flock [flags]\n  reagent -version | -arch\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, ErrUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(out, "reagent: unexpected argument %q; -help for usage\n", fs.Arg(0))
		return nil, ErrUsage
	}
	f.ConnTimeout = time.Duration(connMS) * time.Millisecond
	f.PingPongTimeout = time.Duration(ppMS) * time.Millisecond
	f.ResponseTimeout = time.Duration(respMS) * time.Millisecond
	if f.AppsDir == "" {
		f.AppsDir = filepath.Join(f.AgentDir, "apps")
	}
	if f.DBFileName == "" {
		f.DBFileName = filepath.Join(f.AgentDir, "reagent.db")
	}
	if f.ProfilingPort == 0 || f.ProfilingPort > 65535 {
		f.ProfilingPort = 80
	}
	if f.Version || f.Arch {
		return f, nil
	}
	if !validEnv(f.Env) {
		fmt.Fprintf(out, "reagent: -env must be one of production, test, local (got %q)\n", f.Env)
		return nil, ErrUsage
	}
	if f.Config == "" {
		fmt.Fprintln(out, "reagent: '-config' argument is required; -help for usage")
		return nil, ErrUsage
	}
	return f, nil
}

func validEnv(e string) bool {
	for _, v := range Environments {
		if e == v {
			return true
		}
	}
	return false
}

// Channel is the update channel: the .flock's environment when it names
// one, otherwise -env.
func Channel(f *Flags, flock *Flock) string {
	if flock != nil && flock.Environment != "" {
		return flock.Environment
	}
	return f.Env
}

// Paths are the directories and files derived from the flags.
type Paths struct {
	AgentDir  string
	AppsDir   string
	BuildDir  string // <appsDir>/build: uploaded sources and DEV build contexts
	SharedDir string // <appsDir>/shared: mounted at /shared in every app
	Downloads string // <agentDir>/downloads
	DBFile    string
	LockFile  string // <agentDir>/reagent.lock: one agent per agent dir
}

// Paths derives the agent's paths from the flags.
func (f *Flags) Paths() Paths {
	return Paths{
		AgentDir:  f.AgentDir,
		AppsDir:   f.AppsDir,
		BuildDir:  filepath.Join(f.AppsDir, "build"),
		SharedDir: filepath.Join(f.AppsDir, "shared"),
		Downloads: filepath.Join(f.AgentDir, "downloads"),
		DBFile:    f.DBFileName,
		LockFile:  filepath.Join(f.AgentDir, "reagent.lock"),
	}
}

// AppDataDir is the data directory of an app, mounted at /data:
// <appsDir>/<stage lower>/<name lower>.
func (p Paths) AppDataDir(stage, name string) string {
	return filepath.Join(p.AppsDir, strings.ToLower(stage), strings.ToLower(name))
}
