package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"reagent/src/devcloud"
	"reagent/src/release"
	"reagent/src/testimage"
)

// busyboxLoop is the default command of --busybox images: a line a second,
// so a running app shows live logs, and a clean exit on SIGTERM.
const busyboxLoop = `trap 'echo "stopping"; exit 0' TERM INT
i=0
while true; do
  i=$((i+1))
  echo "hello from $APP_NAME (line $i, $(date))"
  sleep 1
done`

func pushImageCmd() *studioCmd {
	var (
		key              uint64
		name, version    string
		dir, cmd         string
		busybox, verbose bool
	)
	return &studioCmd{
		name: "push-image", args: "--key K --name N --version V [--dir DIR [--cmd CMD] | --busybox]",
		help: "build a small image and push it as prod_<arch>_<key>_<name>:<version>",
		flags: func(fs *flag.FlagSet) {
			fs.Uint64Var(&key, "key", 0, "app key")
			fs.StringVar(&name, "name", "", "app name")
			fs.StringVar(&version, "version", "", "image tag (the app version)")
			fs.StringVar(&dir, "dir", "", "add the files under DIR to the image at /app")
			fs.StringVar(&cmd, "cmd", "", "with --dir: the command, run with sh -c (default: sh /app/run.sh)")
			fs.BoolVar(&busybox, "busybox", false, "a busybox image that prints a line every second")
			fs.BoolVar(&verbose, "v", false, "print the image's files")
		},
		run: func(ctx context.Context, st *studioRun, pos []string) error {
			if err := wantArgs(pos, 0, 0); err != nil {
				return err
			}
			if key == 0 || name == "" || version == "" || (dir == "") == !busybox {
				fmt.Fprintln(st.stderr, "push-image needs --key, --name, --version and exactly one of --dir or --busybox")
				return errUsage
			}
			opts := testimage.Options{
				Env:    []string{"APP_NAME=" + name},
				Labels: map[string]string{"io.ironflock.devcloud": "push-image"},
			}
			if busybox {
				opts.Cmd = []string{"sh", "-c", busyboxLoop}
			} else {
				files, err := readTree(dir)
				if err != nil {
					return err
				}
				opts.Files, opts.WorkingDir = files, "/app"
				switch {
				case cmd != "":
					opts.Cmd = []string{"sh", "-c", cmd}
				case files["/app/run.sh"] != "":
					opts.Cmd = []string{"sh", "/app/run.sh"}
				default:
					return fmt.Errorf("%s has no run.sh; say what to run with --cmd", dir)
				}
				if verbose {
					for p := range files {
						fmt.Fprintln(st.stdout, "  "+p)
					}
				}
			}
			ref := devcloud.ProdImageRef(st.flags.registry, release.Arch(), key, name, version)
			if err := testimage.PushBusybox(ctx, ref, opts); err != nil {
				return err
			}
			fmt.Fprintf(st.stdout, "pushed %s\n", ref)
			return nil
		},
	}
}

// readTree reads every regular file under dir as /app/<relative path>.
func readTree(dir string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[path.Join("/app", filepath.ToSlash(rel))] = string(data)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, errors.New(dir + " has no files")
	}
	return files, nil
}
