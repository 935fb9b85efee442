//go:build docker

package dockere2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oauth-jwt/oauth_jwt/test/keycloak"
)

// The suite's resources carry this label (value: the run id) so that they are removed
// whatever happens, Ryuk or not: at the end of the run, and at the start of the next
// run if a killed test binary left them behind.
const runLabel = "org.oauth-jwt.e2e"

// majorImages are docker/Dockerfile's images for one PostgreSQL major (build argument
// PG_MAJOR).
type majorImages struct {
	major   string
	port    string // the module image's server port in the suite's pod
	pgImage string // the server image the module image builds on (official or stand-in)
	module  string // docker/Dockerfile, default target
	builder string // its builder stage, tagged to stay the next build's cache
	cnpg    string // docker/Dockerfile --target cnpg-extension
}

// majors the module image is built and tested for. The first is docker/Dockerfile's
// default and runs every scenario (TestDockerImages, TestComposeDemo); each other one runs
// TestDockerImages/PostgreSQL<major> in the same pod, against the same Keycloak.
var majors = []*majorImages{
	{major: "18", port: "5432", module: "oauth_jwt-postgres:e2e", builder: "oauth_jwt-postgres:e2e-builder", cnpg: "oauth_jwt-cnpg:e2e"},
	{major: "19", port: "5419", module: "oauth_jwt-postgres:e2e-19", builder: "oauth_jwt-postgres:e2e-builder-19", cnpg: "oauth_jwt-cnpg:e2e-19"},
}

// Images and the run, set by TestMain. pgImage, moduleTag and cnpgTag are the default
// major's (majors[0]).
var (
	repoRoot  string
	runID     string
	pgImage   string
	goImage   string
	kcImage   string
	moduleTag = majors[0].module
	cnpgTag   = majors[0].cnpg
	timings   []string
)

// TestMain finds the engine, resolves the images (official or stand-ins), builds the
// module images, runs the tests and removes everything the run created.
//
// Nothing skips: without an engine, every test fails with how to get one.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	if repoRoot, err = keycloak.RepoRoot(); err != nil {
		return setupFailed(err)
	}
	runID = strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().Unix(), 36)
	if err := findEngine(); err != nil {
		return setupFailed(err)
	}
	removeLabelled("") // leftovers of killed runs
	defer removeLabelled(runID)
	if err := configureTestcontainers(); err != nil {
		return setupFailed(err)
	}
	if err := resolveImages(); err != nil {
		return setupFailed(err)
	}
	if err := buildModuleImages(); err != nil {
		return setupFailed(err)
	}
	code := m.Run()
	for _, s := range timings {
		fmt.Println("timing:", s)
	}
	return code
}

func setupFailed(err error) int {
	fmt.Fprintf(os.Stderr, "FAIL: container suite setup: %v\n", err)
	return 1
}

func timed(what string, start time.Time) {
	timings = append(timings, fmt.Sprintf("%-34s %6.1fs", what, time.Since(start).Seconds()))
}

// docker runs the docker CLI and returns its standard output.
func docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, tail(stderr.String(), 20))
	}
	return stdout.String(), nil
}

// findEngine: DOCKER_HOST, else the private engine scripts/docker.sh runs, else the
// default socket. None answering is a failure that says how to get one.
func findEngine() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("no docker CLI: run `scripts/docker.sh start` as root (installs Debian's docker.io) or install Docker; `make test-containers` does it")
	}
	if os.Getenv("DOCKER_HOST") == "" {
		out, err := exec.Command(filepath.Join(repoRoot, "scripts/docker.sh"), "env").Output()
		if err == nil {
			if v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "export DOCKER_HOST="); ok {
				os.Setenv("DOCKER_HOST", strings.Trim(v, "'"))
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := docker(ctx, "version", "--format", "{{.Server.Version}}")
	if err != nil {
		return fmt.Errorf("no Docker engine reachable (DOCKER_HOST=%q): run `make test-containers`, or "+
			"`export DOCKER_HOST=$(sudo scripts/docker.sh start)` first (it starts a private dockerd when "+
			"there is none; README \"Containers\"): %v", os.Getenv("DOCKER_HOST"), err)
	}
	fmt.Printf("container suite: Docker engine %s at %s\n", strings.TrimSpace(v), os.Getenv("DOCKER_HOST"))
	return nil
}

// configureTestcontainers sets what testcontainers must know about this machine, unless
// the environment already says it:
//   - the engine is local (a unix socket), so published ports are on localhost; the
//     /.dockerenv of our machines would otherwise make testcontainers look for a gateway;
//   - Ryuk (its reaper container) only when its image is there or can be pulled; the
//     suite removes its own containers, networks and volumes either way.
func configureTestcontainers() error {
	host := os.Getenv("DOCKER_HOST")
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" && (host == "" || strings.HasPrefix(host, "unix://")) {
		os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "localhost")
	}
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		const ryuk = "testcontainers/ryuk:0.14.0" // testcontainers-go v0.45.0's reaper
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := docker(ctx, "image", "inspect", ryuk); err != nil {
			if _, err := docker(ctx, "pull", "-q", ryuk); err != nil {
				fmt.Printf("container suite: Ryuk disabled (its image %s cannot be pulled); the suite removes what it creates\n", ryuk)
				os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
			}
		}
	}
	return nil
}

// resolveImages runs scripts/images.sh resolve for each major: the official images, or
// stand-ins (cached: an unchanged stand-in is reused). Go and Keycloak are the same for
// every major.
func resolveImages() error {
	start := time.Now()
	defer timed("images (official or stand-ins)", start)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	for _, m := range majors {
		cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "scripts/images.sh"), "resolve")
		cmd.Env = append(os.Environ(), "PG_MAJOR="+m.major)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("PG_MAJOR=%s scripts/images.sh resolve: %v", m.major, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), "=")
			switch k {
			case "OJW_PG_IMAGE":
				m.pgImage = v
			case "OJW_GO_IMAGE":
				goImage = v
			case "OJW_KEYCLOAK_IMAGE":
				kcImage = v
			}
		}
		if m.pgImage == "" || goImage == "" || kcImage == "" {
			return fmt.Errorf("PG_MAJOR=%s scripts/images.sh resolve printed %q", m.major, out)
		}
		fmt.Printf("container suite: images for PostgreSQL %s: %s, %s, %s\n", m.major, m.pgImage, goImage, kcImage)
	}
	pgImage = majors[0].pgImage
	return nil
}

// buildArgs are docker/Dockerfile's build arguments for major m and the resolved images.
func buildArgs(m *majorImages) []string {
	args := []string{"--build-arg", "PG_MAJOR=" + m.major, "--build-arg", "PG_IMAGE=" + m.pgImage, "--build-arg", "GO_IMAGE=" + goImage}
	for _, name := range []string{"GOPROXY", "GOFLAGS"} {
		if v := os.Getenv(name); v != "" {
			args = append(args, "--build-arg", name+"="+v)
		}
	}
	return args
}

// buildModuleImages builds, for each major, docker/Dockerfile's builder stage, the
// CloudNativePG extension image and the server image, then removes the layers earlier
// builds left dangling (each source change leaves a ~230 MB builder layer per major
// behind otherwise). The builder stages are tagged so that their layers stay the cache
// of the next build.
func buildModuleImages() error {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	logPath := filepath.Join(os.TempDir(), "oauth_jwt-e2e-build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	for _, m := range majors {
		for _, b := range []struct{ tag, target string }{
			{m.builder, "builder"}, {m.cnpg, "cnpg-extension"}, {m.module, ""},
		} {
			start := time.Now()
			args := append([]string{"build", "-f", "docker/Dockerfile", "-t", b.tag, "--label", runLabel + ".image=1"}, buildArgs(m)...)
			if b.target != "" {
				args = append(args, "--target", b.target)
			}
			args = append(args, ".")
			cmd := exec.CommandContext(ctx, "docker", args...)
			cmd.Dir = repoRoot
			cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Run(); err != nil {
				out, _ := os.ReadFile(logPath)
				return fmt.Errorf("building %s (PostgreSQL %s): %v; build log (%s) tail:\n%s", b.tag, m.major, err, logPath, tail(string(out), 40))
			}
			timed("build "+b.tag, start)
		}
	}
	if _, err := docker(ctx, "image", "prune", "-f", "--filter", "label="+runLabel+".image"); err != nil {
		return err
	}
	for _, m := range majors {
		for _, img := range []string{m.module, m.cnpg, m.pgImage} {
			if out, err := docker(ctx, "image", "inspect", "--format", "{{.Size}}", img); err == nil {
				n, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
				fmt.Printf("container suite: image %-40s %6.1f MB\n", img, float64(n)/1e6)
			}
		}
	}
	return nil
}

// removeLabelled removes the containers, networks and volumes of run id ("" = of every
// run), compose's demo project of this suite included.
func removeLabelled(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	filter := "label=" + runLabel
	if id != "" {
		filter += "=" + id
	}
	if out, _ := docker(ctx, "ps", "-aq", "--filter", filter); strings.TrimSpace(out) != "" {
		docker(ctx, append([]string{"rm", "-f", "-v"}, strings.Fields(out)...)...)
	}
	if out, _ := docker(ctx, "ps", "-aq", "--filter", "label=com.docker.compose.project="+composeProject); strings.TrimSpace(out) != "" {
		docker(ctx, append([]string{"rm", "-f", "-v"}, strings.Fields(out)...)...)
	}
	for _, kind := range []string{"network", "volume"} {
		for _, f := range []string{filter, "label=com.docker.compose.project=" + composeProject} {
			if out, _ := docker(ctx, kind, "ls", "-q", "--filter", f); strings.TrimSpace(out) != "" {
				docker(ctx, append([]string{kind, "rm"}, strings.Fields(out)...)...)
			}
		}
	}
}

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
