package cliflags

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Markdown renders rows as the flag table of the docs: flag, environment
// variable, default and meaning, one row each.
func Markdown(rows []Row) string {
	var b strings.Builder
	env := false
	for _, r := range rows {
		env = env || r.Env != ""
	}
	if env {
		b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
	} else {
		b.WriteString("| flag | default | meaning |\n|---|---|---|\n")
	}
	for _, r := range rows {
		flag := "`--" + r.Flag
		if r.Arg != "" {
			flag += " " + r.Arg
		}
		flag = strings.ReplaceAll(flag, "|", `\|`) + "`"
		def := r.Default
		if def != "" && !r.DefaultIsText {
			def = "`" + def + "`"
		}
		help := strings.ReplaceAll(r.Help, "|", `\|`)
		if env {
			envCell := ""
			if r.Env != "" {
				envCell = "`" + r.Env + "`"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", flag, envCell, def, help)
		} else {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", flag, def, help)
		}
	}
	return b.String()
}

// ManPage is what a man page says besides its flags.
type ManPage struct {
	Name    string // program, e.g. "msprelay-node"
	Section string // "8"
	Summary string // the NAME line's text after the dash
	// Synopsis lines, each an invocation ("[flags]" is added to the first).
	Synopsis []string
	// Description is paragraphs of plain text.
	Description []string
	// Commands are the subcommands of a program that has them (msp), each
	// with its own flags, listed under COMMANDS.
	Commands []ManCommand
	// Sections are further sections (ENVIRONMENT, SIGNALS, EXIT STATUS,
	// FILES, SEE ALSO) in order, each paragraphs of plain text.
	Sections []ManSection
}

// ManCommand is one subcommand in a man page.
type ManCommand struct {
	Name        string   // "send"
	Synopsis    string   // its arguments: "[flags] RECIPIENT [MESSAGE...]"
	Description []string // paragraphs
	Rows        []Row    // its flags
}

// ManSection is one further section of a man page.
type ManSection struct {
	Title      string
	Paragraphs []string
}

// Roff renders a man page for rows in man(7) roff. It carries no date, so
// that regenerating it from the same table gives the same bytes.
func Roff(p ManPage, rows []Row) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".\\\" Generated from the flag table by go run ./internal/flagtable/mkdocs; do not edit.\n")
	fmt.Fprintf(&b, ".TH %s %s \"\" \"msprelay\" \"msprelay manual\"\n", strings.ToUpper(roffEscape(p.Name)), p.Section)
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", roffEscape(p.Name), roffEscape(p.Summary))
	b.WriteString(".SH SYNOPSIS\n")
	for i, s := range p.Synopsis {
		if i > 0 {
			b.WriteString(".br\n")
		}
		fmt.Fprintf(&b, ".B %s\n", roffEscape(p.Name))
		if s != "" {
			fmt.Fprintf(&b, "%s\n", roffLine(s))
		}
	}
	for _, c := range p.Commands {
		if len(p.Synopsis) > 0 || c.Name != p.Commands[0].Name {
			b.WriteString(".br\n")
		}
		fmt.Fprintf(&b, ".B %s %s\n%s\n", roffEscape(p.Name), roffEscape(c.Name), roffLine(c.Synopsis))
	}
	b.WriteString(".SH DESCRIPTION\n")
	paragraphs(&b, p.Description)
	if len(rows) > 0 {
		b.WriteString(".SH OPTIONS\n")
		options(&b, rows)
	}
	if len(p.Commands) > 0 {
		b.WriteString(".SH COMMANDS\n")
		for _, c := range p.Commands {
			fmt.Fprintf(&b, ".SS %s %s\n", roffEscape(p.Name), roffEscape(c.Name))
			paragraphs(&b, c.Description)
			options(&b, c.Rows)
		}
	}
	for _, s := range p.Sections {
		fmt.Fprintf(&b, ".SH %s\n", roffEscape(strings.ToUpper(s.Title)))
		paragraphs(&b, s.Paragraphs)
	}
	return b.String()
}

// options renders flags as a tagged list.
func options(b *strings.Builder, rows []Row) {
	for _, r := range rows {
		b.WriteString(".TP\n")
		dashes := `\-\-`
		if len(r.Flag) == 1 {
			dashes = `\-` // -q, as single letters are written
		}
		fmt.Fprintf(b, ".B %s%s", dashes, roffEscape(r.Flag))
		switch {
		case r.Arg == "on|off":
			b.WriteString("\\fR[=\\fIon\\fR|\\fIoff\\fR]")
		case r.Arg != "":
			fmt.Fprintf(b, " \\fI%s\\fR", roffEscape(r.Arg))
		}
		b.WriteString("\n")
		b.WriteString(roffLine(r.Help))
		var extra []string
		if r.Default != "" {
			extra = append(extra, "Default: "+r.Default+".")
		}
		if r.Env != "" {
			extra = append(extra, "Environment: "+r.Env+".")
		}
		if len(extra) > 0 {
			b.WriteString(".\n.br\n" + roffLine(strings.Join(extra, " ")))
		}
		b.WriteString("\n")
	}
}

func paragraphs(b *strings.Builder, ps []string) {
	for i, p := range ps {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		b.WriteString(roffLine(p) + "\n")
	}
}

// roffEscape escapes text for roff: backslashes, and dashes as \- so that
// flags are typed as ASCII minus signs when copied.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// roffLine is roffEscape for running text: a line may not start with a
// control character, a dot or an apostrophe.
func roffLine(s string) string {
	s = roffEscape(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// BeginMarker opens a generated section of a Markdown file: the text
// between BeginMarker(name) and EndMarker(name) belongs to the generator.
func BeginMarker(name string) string {
	return "<!-- BEGIN GENERATED " + name + ": go run ./internal/flagtable/mkdocs -->"
}

// EndMarker closes the section BeginMarker opens.
func EndMarker(name string) string { return "<!-- END GENERATED " + name + " -->" }

// ErrNoMarkers is returned by Splice for a file without the section.
var ErrNoMarkers = errors.New("cliflags: generated-section markers missing")

// Splice replaces the text between the markers of section name in doc
// with body.
func Splice(doc []byte, name, body string) ([]byte, error) {
	begin, end := []byte(BeginMarker(name)+"\n"), []byte(EndMarker(name))
	i := bytes.Index(doc, begin)
	j := bytes.Index(doc, end)
	if i < 0 || j < i {
		return nil, fmt.Errorf("%w: %s", ErrNoMarkers, name)
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(begin)])
	out.WriteString(body)
	out.Write(doc[j:])
	return out.Bytes(), nil
}
