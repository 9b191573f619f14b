package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/principal"

	"github.com/msprelay/msprelay/internal/syncbuf"

	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// Issue 10: "SIGHUP reloads what can change without a restart (session
// secrets file, ..., log level, the HTTP token) and logs what it reloaded;
// nothing else dies on it." Done when: "SIGHUP reloads a changed secrets
// file (the new secret works, the old one no longer does)".
func TestSIGHUPReloadsSecretsLevelAndTokenAndKeepsRunning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "node")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	secrets := filepath.Join(dir, "secrets")
	token := filepath.Join(dir, "token")
	level := filepath.Join(dir, "level")
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(secrets, "alice old-secret\n")
	write(token, "token-one\n")
	write(level, "info\n")
	cmd := exec.Command(bin, "--name", "hup1", "--msp", "127.0.0.1:0", "--session-socket", "",
		"--session", "127.0.0.1:0", "--session-auth", "secret", "--session-secrets", secrets,
		"--http", "127.0.0.1:0", "--http-token-file", token, "--log-level-file", level,
		"--data", filepath.Join(dir, "data"), "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var logs syncbuf.Buffer
	ready := make(chan [2]string, 1)
	lines := make(chan string, 1024)
	go func() {
		re := regexp.MustCompile(`"msg":"node ready".*"session":"([^"]+)".*"http":"([^"]+)"`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteLine(sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				ready <- [2]string{m[1], m[2]}
			}
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(ready)
		close(lines)
	}()
	var sessAddr, httpAddr string
	select {
	case a, ok := <-ready:
		if !ok {
			t.Fatalf("node exited before ready:\n%s", logs.String())
		}
		sessAddr, httpAddr = a[0], a[1]
	case <-time.After(30 * time.Second):
		t.Fatal("node not ready within 30s")
	}
	signIn := func(secret string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cl, err := sessionclient.Dial(ctx, sessAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		_, err = cl.SignIn(ctx, "alice", sessionproto.NoTerminal, principal.Offline, sessionclient.WithSecret(secret))
		return err
	}
	apiStatus := func(tok string) int {
		req, _ := http.NewRequest("GET", "http://"+httpAddr+"/api/v1/who", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if err := signIn("old-secret"); err != nil {
		t.Fatalf("old secret before reload: %v", err)
	}
	if c := apiStatus("token-one"); c != 200 {
		t.Fatalf("token-one before reload: HTTP %d", c)
	}
	write(secrets, "alice new-secret\n")
	write(token, "token-two\n")
	write(level, "debug\n")
	waitLog := func(what string) {
		t.Helper()
		waitfor.True(t, 10*time.Second, fmt.Sprintf("%q in the log", what), func() bool { return strings.Contains(logs.String(), what) })
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(`"msg":"reloaded","node":"hup1","what":["session secrets`)
	waitLog(`"msg":"reloaded log level"`)
	if err := signIn("new-secret"); err != nil {
		t.Fatalf("new secret after reload: %v", err)
	}
	if err := signIn("old-secret"); !sessionproto.IsCode(err, sessionproto.CodeAuthFailed) {
		t.Fatalf("old secret after reload: %v, want error %d", err, sessionproto.CodeAuthFailed)
	}
	if c := apiStatus("token-two"); c != 200 {
		t.Fatalf("token-two after reload: HTTP %d", c)
	}
	if c := apiStatus("token-one"); c != 401 {
		t.Fatalf("token-one after reload: HTTP %d, want 401", c)
	}
	// Debug now: a delivery refusal is at info anyway, but sign-ins of
	// lookups (no terminal) are logged at debug only.
	if err := signIn("new-secret"); err != nil {
		t.Fatal(err)
	}
	waitLog(`"level":"DEBUG"`)
	// A second SIGHUP with a broken secrets file keeps the new secret.
	write(secrets, "alice\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(`"msg":"reload incomplete`)
	if err := signIn("new-secret"); err != nil {
		t.Fatalf("new secret after a failed reload: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node exit after SIGHUPs and SIGTERM: %v\n%s", err, logs.String())
	}
	// Issue 10: "no duplicate keys in JSON or text".
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if err := uniqueKeys(l); err != nil {
			t.Errorf("log line %s: %v", l, err)
		}
	}
}

// uniqueKeys checks that no JSON object in line repeats a key.
func uniqueKeys(line string) error {
	dec := json.NewDecoder(strings.NewReader(line))
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if seen[key] {
					return fmt.Errorf("key %q twice", key)
				}
				seen[key] = true
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
