package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeFile is the part of the Compose specification compose.yaml uses;
// decoding with KnownFields makes anything else (a typo) an error.
type composeFile struct {
	Name     string                    `yaml:"name"`
	XNode    composeService            `yaml:"x-node"`
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]struct{} `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Restart     string            `yaml:"restart"`
	DependsOn   []string          `yaml:"depends_on"`
	Hostname    string            `yaml:"hostname"`
	Ports       []string          `yaml:"ports"`
	Sysctls     map[string]string `yaml:"sysctls"`
	Secrets     []string          `yaml:"secrets"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
}

// "a compose file for one relay plus three nodes": decoded strictly, every
// service runs a program of the image with flags and MSPRELAY_* variables
// that program really has, and every reference resolves.
func TestComposeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the programs")
	}
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "container", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var cf composeFile
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	bin := staticBinaries(t)
	flags := map[string][]string{
		"/usr/bin/msprelay-node":  flagsOf(t, filepath.Join(bin, "msprelay-node")),
		"/usr/bin/msprelay-relay": flagsOf(t, filepath.Join(bin, "msprelay-relay")),
	}
	roles := map[string]int{}
	for name, s := range cf.Services {
		if s.Image != "msprelay:latest" {
			t.Errorf("service %s runs image %q, want the image Dockerfile builds (msprelay:latest)", name, s.Image)
		}
		if len(s.Entrypoint) != 1 || flags[s.Entrypoint[0]] == nil {
			t.Errorf("service %s: entrypoint %v is not an msprelay daemon", name, s.Entrypoint)
			continue
		}
		prog := s.Entrypoint[0]
		roles[prog]++
		for i := 0; i < len(s.Command); i++ {
			a := s.Command[i]
			if !strings.HasPrefix(a, "-") {
				continue // a value of the previous flag
			}
			f, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !slices.Contains(flags[prog], f) {
				t.Errorf("service %s: %s has no flag %q", name, prog, a)
			}
		}
		prefix := "MSPRELAY_"
		if strings.HasSuffix(prog, "relay") {
			prefix = "MSPRELAY_RELAY_"
		}
		for k := range s.Environment {
			rest, ok := strings.CutPrefix(k, prefix)
			f := strings.ToLower(strings.ReplaceAll(rest, "_", "-"))
			if !ok || !slices.Contains(flags[prog], f) {
				t.Errorf("service %s: %s sets no flag of %s", name, k, prog)
			}
		}
		for _, d := range s.DependsOn {
			if _, ok := cf.Services[d]; !ok {
				t.Errorf("service %s depends on unknown service %s", name, d)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := cf.Secrets[sec]; !ok {
				t.Errorf("service %s uses undefined secret %s", name, sec)
			}
		}
		for _, v := range s.Volumes {
			if vol, _, _ := strings.Cut(v, ":"); !strings.HasPrefix(vol, "/") && !strings.HasPrefix(vol, ".") {
				if _, ok := cf.Volumes[vol]; !ok {
					t.Errorf("service %s uses undefined volume %s", name, vol)
				}
			}
		}
	}
	if roles["/usr/bin/msprelay-relay"] != 1 || roles["/usr/bin/msprelay-node"] != 3 {
		t.Errorf("services: %v, want one relay and three nodes", roles)
	}
	// Credentials are placeholders the operator must set, never values.
	for _, s := range cf.Services {
		for k, v := range s.Environment {
			if strings.Contains(k, "PASSWORD") && !strings.HasPrefix(v, "${") {
				t.Errorf("%s has a literal value; it must come from the environment", k)
			}
		}
	}
	for _, placeholder := range []string{"NATS_PASSWORD", "GOSSIP_KEY_FILE"} {
		if !strings.Contains(string(b), "#   "+placeholder+"=") {
			t.Errorf("compose.yaml does not document %s in its header", placeholder)
		}
	}
}
