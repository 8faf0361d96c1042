// Package deploy_test checks the deployment files that this machine cannot
// run (there is no Docker engine here): the Dockerfile is read and the binary
// it builds is built the same way and run; the compose file is loaded and
// validated with compose-go. The load balancer's configuration is run for real
// in integration/lb_test.go, the Helm chart in deploy/helm.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// parseDockerfile reads instructions: comments and blank lines skipped,
// backslash continuations joined (comment lines inside a continuation are
// dropped, as Docker does).
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: the last instruction ends with a continuation", path)
	}
	return out
}

// stage is the instructions of one build stage.
type stage struct {
	from, name string
	ins        []instruction
}

func stages(ins []instruction) (global []instruction, out []stage) {
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			out = append(out, s)
			continue
		}
		if len(out) == 0 {
			global = append(global, in)
			continue
		}
		out[len(out)-1].ins = append(out[len(out)-1].ins, in)
	}
	return global, out
}

func find(ins []instruction, cmd string) []instruction {
	var out []instruction
	for _, in := range ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm decodes a JSON exec-form argument list, failing on shell form.
func execForm(t *testing.T, in instruction, args string) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		t.Fatalf("Dockerfile:%d: %s must use the exec form (a JSON list; the image has no shell): %q", in.line, in.cmd, args)
	}
	return v
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// goVersion is the major.minor of go.mod's go line.
func goVersion(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return string(m[1])
}

// TestDockerfile checks the image's shape: a Go build stage that runs
// scripts/build.sh with the Go of go.mod, and a final stage from scratch with
// only the binary (and CA certificates), a non-root user, an exec-form
// entry point and a health check that the binary answers itself.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	global, st := stages(parseDockerfile(t, filepath.Join(root, "Dockerfile")))
	if len(st) != 2 {
		t.Fatalf("Dockerfile has %d stages, want 2 (build, final)", len(st))
	}
	build, final := st[0], st[1]

	// The build stage: the Go of go.mod, and scripts/build.sh.
	wantGo := goVersion(t, root)
	args := map[string]string{}
	for _, in := range find(global, "ARG") {
		k, v, _ := strings.Cut(in.args, "=")
		args[k] = v
	}
	from := os.Expand(build.from, func(k string) string { return args[k] })
	if !strings.HasPrefix(from, "golang:"+wantGo+"-") && from != "golang:"+wantGo {
		t.Errorf("build stage FROM %s (%s), want golang:%s as go.mod says", build.from, from, wantGo)
	}
	if build.name == "" {
		t.Fatal("the build stage has no name")
	}
	var runsScript bool
	for _, in := range find(build.ins, "RUN") {
		if regexp.MustCompile(`(^|\s)sh scripts/build\.sh /out/eventserver$`).MatchString(in.args) {
			runsScript = true
		}
		if strings.Contains(in.args, "go build") {
			t.Errorf("Dockerfile:%d: runs go build itself; it must run scripts/build.sh so that the tests build the same binary", in.line)
		}
	}
	if !runsScript {
		t.Error("the build stage does not run `sh scripts/build.sh /out/eventserver`")
	}

	// The final stage: nothing but the binary.
	if final.from != "scratch" {
		t.Errorf("final stage FROM %s, want scratch (no shell, nothing but the binary)", final.from)
	}
	var copiesBinary bool
	for _, in := range find(final.ins, "COPY") {
		f := strings.Fields(in.args)
		if len(f) != 3 || f[0] != "--from="+build.name {
			t.Errorf("Dockerfile:%d: COPY %s: the final stage may copy only from the build stage", in.line, in.args)
			continue
		}
		switch f[1] {
		case "/out/eventserver":
			copiesBinary = f[2] == "/eventserver"
		case "/etc/ssl/certs/ca-certificates.crt":
		default:
			t.Errorf("Dockerfile:%d: the final stage copies %s; only the binary and CA certificates belong there", in.line, f[1])
		}
	}
	if !copiesBinary {
		t.Error("the final stage does not copy /out/eventserver to /eventserver")
	}
	if r := find(final.ins, "RUN"); len(r) > 0 {
		t.Errorf("Dockerfile:%d: RUN in the final stage: it has no shell", r[0].line)
	}
	users := find(final.ins, "USER")
	if len(users) != 1 || !regexp.MustCompile(`^[1-9][0-9]*:[1-9][0-9]*$`).MatchString(users[0].args) {
		t.Errorf("final stage USER %v, want one numeric non-root uid:gid (Kubernetes runAsNonRoot needs numbers)", users)
	}
	ep := find(final.ins, "ENTRYPOINT")
	if len(ep) != 1 || fmt.Sprint(execForm(t, ep[0], ep[0].args)) != "[/eventserver]" {
		t.Errorf("final stage ENTRYPOINT %v, want [\"/eventserver\"]", ep)
	}
	hc := find(final.ins, "HEALTHCHECK")
	if len(hc) != 1 {
		t.Fatal("the final stage has no HEALTHCHECK")
	}
	_, cmd, ok := strings.Cut(hc[0].args, "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %q has no CMD", hc[0].args)
	}
	hcArgs := execForm(t, hc[0], strings.TrimSpace(cmd))
	if len(hcArgs) < 2 || hcArgs[0] != "/eventserver" || hcArgs[1] != "healthcheck" {
		t.Errorf("HEALTHCHECK runs %v, want /eventserver healthcheck", hcArgs)
	}
	env := map[string]string{}
	for _, in := range find(final.ins, "ENV") {
		k, v, _ := strings.Cut(in.args, "=")
		env[k] = v
	}
	exposed := find(final.ins, "EXPOSE")
	if len(exposed) != 1 || ":"+exposed[0].args != env["EVENTSERVER_LISTEN"] {
		t.Errorf("EXPOSE %v and EVENTSERVER_LISTEN %q disagree", exposed, env["EVENTSERVER_LISTEN"])
	}

	// What the build needs must not be excluded by .dockerignore.
	checkDockerignore(t, root)

	// The binary the image would hold, built the same way, is static and
	// answers its own health check.
	bin := buildShipped(t, root)
	checkStatic(t, bin)
	checkHealthcheck(t, bin, hcArgs[1:])
}

// checkDockerignore fails when a file that building ./cmd/eventserver reads
// (Go files, embedded files, go.mod, go.sum, scripts/build.sh) matches a
// .dockerignore pattern.
func checkDockerignore(t *testing.T, root string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: exceptions (%q) are not understood by this test; keep the file simple", l)
		}
		patterns = append(patterns, strings.Trim(l, "/"))
	}
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}{{end}}`,
		"./cmd/eventserver")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := []string{"go.mod", "go.sum", "scripts/build.sh"}
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	if len(files) < 10 {
		t.Fatalf("go list found only %v", files)
	}
	for _, f := range files {
		for _, p := range patterns {
			// A pattern excludes a path when it matches the path or one of
			// its parent directories.
			parts := strings.Split(f, "/")
			for i := 1; i <= len(parts); i++ {
				if ok, _ := filepath.Match(p, strings.Join(parts[:i], "/")); ok {
					t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", p, f)
				}
			}
		}
	}
}

func buildShipped(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "eventserver")
	cmd := exec.Command("sh", "scripts/build.sh", bin)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "VERSION=image-test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build.sh: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	for _, want := range []string{"\tbuild\tCGO_ENABLED=0\n", "\tbuild\t-trimpath=true\n"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("the binary's build settings lack %q:\n%s", strings.TrimSpace(want), out)
		}
	}
	v, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(v)) != "eventserver image-test" {
		t.Errorf("version: %q, %v; want the VERSION the build was given", v, err)
	}
	return bin
}

// checkStatic: a binary for an image from scratch must not need a dynamic
// loader (no PT_INTERP, no DT_NEEDED libraries).
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("ELF check on Linux only")
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader (PT_INTERP): it would not run in an image from scratch")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
}

// checkHealthcheck runs the binary as the image would and its HEALTHCHECK
// command against it: 1 while nothing listens, 0 once it serves.
func checkHealthcheck(t *testing.T, bin string, hcArgs []string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	env := []string{"EVENTSERVER_LISTEN=:" + port, "EVENTSERVER_JWT_SECRET=image-test-secret", "EVENTSERVER_SHUTDOWN_DELAY=0s", "EVENTSERVER_DRAIN_TIMEOUT=0s"}

	health := func() (int, string) {
		cmd := exec.Command(bin, hcArgs...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := health(); code != 1 {
		t.Fatalf("health check with no server: exit %d (%s), want 1", code, out)
	}

	srv := exec.Command(bin)
	srv.Env = env
	var logs bytes.Buffer
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	defer func() {
		_ = srv.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if code, _ := health(); code == 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the server exited: %v\n%s", err, logs.String())
		case <-ctx.Done():
			t.Fatalf("the health check never passed\n%s", logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("readyz %d after the health check passed", resp.StatusCode)
	}
}
