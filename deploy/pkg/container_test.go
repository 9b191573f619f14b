package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// containerTool finds podman, installing it from Debian when it is missing
// and this is a root shell with apt-get; "" means containers cannot be
// built here, with the reason.
func containerTool(t *testing.T) (string, string) {
	t.Helper()
	if p, err := exec.LookPath("podman"); err == nil {
		return p, ""
	}
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		return "", "podman is missing and cannot be installed (needs root and apt-get)"
	}
	t.Log("installing podman with apt-get")
	if out, err := exec.Command("apt-get", "install", "-y", "-qq", "podman").CombinedOutput(); err != nil {
		return "", fmt.Sprintf("apt-get install podman failed: %v\n%s", err, out)
	}
	p, err := exec.LookPath("podman")
	if err != nil {
		return "", "podman still missing after apt-get install"
	}
	return p, ""
}

// runtimeTrouble recognises errors of the container runtime itself (no user
// namespaces, no overlay, no cgroups), as opposed to errors of the image.
func runtimeTrouble(out string) bool {
	for _, s := range []string{"OCI runtime", "crun:", "runc:", "newuidmap", "cgroup", "overlay", "user namespace", "operation not permitted"} {
		if strings.Contains(strings.ToLower(out), strings.ToLower(s)) {
			return true
		}
	}
	return false
}

// "the test builds an image FROM scratch with buildah or podman (Debian
// packages) from the static binaries and runs a container, skipping with a
// clear message where containers cannot run."
func TestContainerImageFromScratch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a container image")
	}
	t.Parallel()
	podman, why := containerTool(t)
	if podman == "" {
		t.Skip(why)
	}
	if out, err := exec.Command(podman, "info").CombinedOutput(); err != nil {
		t.Skipf("containers cannot run here: podman info: %v\n%s", err, out)
	}

	ctx := t.TempDir()
	bin := staticBinaries(t)
	if err := os.Rename(bin, filepath.Join(ctx, "bin")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"rootfs/var/lib/msprelay", "rootfs/run/msprelay", "rootfs/tmp"} {
		if err := os.MkdirAll(filepath.Join(ctx, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, "/etc/ssl/certs/ca-certificates.crt", filepath.Join(ctx, "ca-certificates.crt"))

	tag := fmt.Sprintf("localhost/msprelay-test:%d-%d", os.Getpid(), time.Now().UnixNano())
	build := exec.Command(podman, "build", "--file", filepath.Join("..", "container", "Containerfile.binaries"), "--tag", tag, ctx)
	if out, err := build.CombinedOutput(); err != nil {
		if runtimeTrouble(string(out)) {
			t.Skipf("containers cannot be built here: %v\n%s", err, out)
		}
		t.Fatalf("podman build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(podman, "rmi", "--force", tag).Run() })

	user, err := exec.Command(podman, "image", "inspect", "--format", "{{.Config.User}}", tag).Output()
	if err != nil || strings.TrimSpace(string(user)) != "65532:65532" {
		t.Errorf("image user %q (%v), want the unprivileged 65532:65532", user, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "msprelay node " + testVersion}, // the entrypoint is the node
		{[]string{"--entrypoint", "/usr/bin/msprelay-relay"}, "msprelay relay " + testVersion},
		{[]string{"--entrypoint", "/usr/bin/msp"}, "msp " + testVersion},
	} {
		args := append([]string{"run", "--rm", "--network=none"}, c.args...)
		args = append(args, tag, "--version")
		out, err := exec.Command(podman, args...).CombinedOutput()
		if err != nil {
			if runtimeTrouble(string(out)) {
				t.Skipf("containers cannot run here: %v\n%s", err, out)
			}
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("podman %s printed %q, want %q", strings.Join(args, " "), out, c.want)
		}
	}
}

// The Dockerfile real users build and Containerfile.binaries the test
// builds end in the same image: their final stages differ only in where
// the files come from.
func TestDockerfileFinalStageMatches(t *testing.T) {
	t.Parallel()
	fromBuild := strings.NewReplacer(
		"COPY --from=build /etc/ssl/certs/ca-certificates.crt ", "COPY ca-certificates.crt ",
		"COPY --from=build /bin-out/ ", "COPY bin/ ",
		"COPY --from=build --chown=65532:65532 /rootfs/ ", "COPY --chown=65532:65532 rootfs/ ",
	)
	docker := finalStage(t, filepath.Join("..", "container", "Dockerfile"))
	for i := range docker {
		docker[i] = fromBuild.Replace(docker[i])
	}
	scratch := finalStage(t, filepath.Join("..", "container", "Containerfile.binaries"))
	if strings.Join(docker, "\n") != strings.Join(scratch, "\n") {
		t.Fatalf("final stages differ:\nDockerfile:\n%s\n\nContainerfile.binaries:\n%s", strings.Join(docker, "\n"), strings.Join(scratch, "\n"))
	}
	if docker[0] != "FROM scratch" {
		t.Fatalf("final stage starts %q, want FROM scratch", docker[0])
	}
}

// finalStage returns the instructions from the last FROM on, comments and
// blank lines left out.
func finalStage(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "FROM ") {
			lines = lines[:0]
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		t.Fatalf("%s has no FROM", path)
	}
	return lines
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		// No CA bundle on this machine: an empty one keeps the layout.
		if err := os.WriteFile(to, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
