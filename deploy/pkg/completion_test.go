package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 20: "bash and zsh completion shipped". The bash completion the
// package installs, sourced by bash with the built programs on PATH,
// completes msp's commands, both programs' flags and the on/off values.
func TestBashCompletionCompletes(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the built programs")
	}
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skipf("no bash: %v", err)
	}
	script, err := filepath.Abs(filepath.Join(repoRoot, "deploy", "pkg", "files", "completion", "msprelay.bash"))
	if err != nil {
		t.Fatal(err)
	}
	bin := staticBinaries(t)
	cases := []struct {
		name, words, cword, fn string
		want, not              []string
	}{
		{"msp commands", "msp s", "1", "_msp", []string{"send", "status"}, []string{"who"}},
		{"msp send flags", "msp send --", "2", "_msp", []string{"--server"}, nil},
		{"node flags", "msprelay-node --ter", "1", "_msprelay_node", []string{"--terminals"}, []string{"--data"}},
		{"node on/off values", "msprelay-node --terminals o", "2", "_msprelay_node", []string{"on", "off"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(bash, "--norc", "-c", `source "$1" && COMP_WORDS=($2) && COMP_CWORD=$3 && `+tc.fn+` && printf '%s\n' "${COMPREPLY[@]}"`,
				"bash", script, tc.words, tc.cword)
			cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			for _, w := range tc.want {
				if !strings.Contains(" "+strings.Join(got, " ")+" ", " "+w+" ") {
					t.Errorf("completing %q gave %q, want %q among them", tc.words, got, w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(" "+strings.Join(got, " ")+" ", " "+w+" ") {
					t.Errorf("completing %q gave %q, which should not hold %q", tc.words, got, w)
				}
			}
		})
	}
}
