// Command mkdocs writes the docs generated from the daemons' flag tables
// (internal/flagtable): the flag tables of README.md and the man pages
// msprelay-node(8) and msprelay-relay(8) in deploy/man; then it has
// cmd/msp's test write msp(1) from the flag sets msp's commands parse with
// (they live in package main, which only its test can reach). Run it from
// the repository root after changing a flag:
//
//	go run ./internal/flagtable/mkdocs
//
// The test of internal/flagtable fails while the files disagree with the
// tables.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"

	"github.com/msprelay/msprelay/internal/flagtable"
)

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	files, err := flagtable.Generate(func(p string) ([]byte, error) { return os.ReadFile(filepath.Join(root, p)) })
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkdocs: %v\n", err)
		os.Exit(1)
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "mkdocs: %v\n", err)
			os.Exit(1)
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "mkdocs: %v\n", err)
			os.Exit(1)
		}
		fmt.Println("wrote", p)
	}
	msp := exec.Command("go", "test", "-count=1", "-run", "^TestManPageAgreesWithFlags$", "./cmd/msp", "-args", "-update-man")
	msp.Dir, msp.Stdout, msp.Stderr = root, os.Stderr, os.Stderr
	if err := msp.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "mkdocs: msp(1): %v\n", err)
		os.Exit(1)
	}
	fmt.Println("wrote deploy/man/msp.1")
}
