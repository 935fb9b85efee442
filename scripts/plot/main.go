// Command plot turns the result files of scripts/report.sh into
// docs/report.md (the tables) and docs/latency-<major>.png (the plots),
// with one section and one figure per PostgreSQL major. For each major it
// reads -in/<major>/: the files test/results names (bench.json, load.json,
// soak.json, faults.json, hostile.json, leak.json). A missing file leaves
// its section out with a note.
//
//	go run ./scripts/plot -in build/report -majors "18 19" -out docs
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/oauth-jwt/oauth_jwt/test/results"
)

// run is what one major's report run left in its directory; nil (or
// haveFaults false) where a file is missing.
type run struct {
	Major      string
	Bench      *results.Bench
	Load       *results.Load
	Soak       *results.Soak
	Faults     []results.Outcome
	HaveFaults bool
	Hostile    *results.Hostile
	Leak       *results.Leak
}

func main() {
	in := flag.String("in", "build/report", "directory holding one directory of result files per major")
	majors := flag.String("majors", "", "the majors to report, in order (default: every numeric directory in -in)")
	out := flag.String("out", "docs", "directory for report.md and latency-<major>.png")
	cmd := flag.String("cmd", "scripts/report.sh", "the command that regenerates the report (named in it)")
	flag.Parse()
	written, err := generate(*in, strings.Fields(*majors), *out, *cmd)
	if err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", strings.Join(written, ", "))
}

// generate writes report.md and one figure per major into out and
// returns the paths it wrote.
func generate(in string, majors []string, out, cmd string) ([]string, error) {
	if len(majors) == 0 {
		entries, err := os.ReadDir(in)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() && regexp.MustCompile(`^[0-9]+$`).MatchString(e.Name()) {
				majors = append(majors, e.Name())
			}
		}
		sort.Strings(majors)
	}
	if len(majors) == 0 {
		return nil, fmt.Errorf("%s: no results of any major (run scripts/report.sh)", in)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	var runs []run
	var written []string
	for _, m := range majors {
		r, err := readRun(filepath.Join(in, m), m)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
		png := filepath.Join(out, figureName(m))
		if err := writeFigure(png, r); err != nil {
			return nil, fmt.Errorf("%s: %w", png, err)
		}
		written = append(written, png)
	}
	md := filepath.Join(out, "report.md")
	if err := os.WriteFile(md, []byte(report(cmd, runs)), 0o644); err != nil {
		return nil, err
	}
	return append(written, md), nil
}

func figureName(major string) string { return "latency-" + major + ".png" }

func readRun(dir, major string) (run, error) {
	r := run{Major: major}
	var err error
	if r.Bench, err = read[results.Bench](dir, results.BenchFile); err != nil {
		return r, err
	}
	if r.Load, err = read[results.Load](dir, results.LoadFile); err != nil {
		return r, err
	}
	if r.Soak, err = read[results.Soak](dir, results.SoakFile); err != nil {
		return r, err
	}
	faults, err := read[[]results.Outcome](dir, results.FaultsFile)
	if err != nil {
		return r, err
	}
	if faults != nil {
		r.Faults, r.HaveFaults = *faults, true
	}
	if r.Hostile, err = read[results.Hostile](dir, results.HostileFile); err != nil {
		return r, err
	}
	r.Leak, err = read[results.Leak](dir, results.LeakFile)
	return r, err
}

// read reads one result file; nil when it does not exist.
func read[T any](dir, name string) (*T, error) {
	var v T
	if err := results.Read(filepath.Join(dir, name), &v); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return &v, nil
}

// machine is the machine the run describes (from the load test, else the soak).
func (r run) machine() (results.Machine, bool) {
	switch {
	case r.Load != nil:
		return r.Load.Machine, true
	case r.Soak != nil:
		return r.Soak.Machine, true
	}
	return results.Machine{}, false
}
