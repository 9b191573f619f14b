package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/opsapi"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionproto"
)

func cmdWho(ctx context.Context, args []string, e env) int {
	fs := newFlags("who", "[flags] [USER]\n\nLists where USER (or everyone) is signed in: node, terminal, state.", e)
	var sf sessionFlags
	addSessionFlags(fs, &sf, e)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 1 {
		return fail(e, exitUsage, "who takes at most one USER")
	}
	if err := sf.toLatin1(); err != nil {
		return fail(e, exitUsage, "%v", err)
	}
	name, err := toLatin1("USER", fs.Arg(0))
	if err != nil {
		return fail(e, exitUsage, "%v", err)
	}
	c, _, err := sf.connect(ctx, sessionproto.NoTerminal, principal.Offline)
	if err != nil {
		return fail(e, exitUsage, "%v", err)
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, sf.timeout)
	defer cancel()
	es, err := c.Who(cctx, name)
	if err != nil {
		return fail(e, exitUsage, "who: %v", err)
	}
	if *asJSON {
		out := make([]opsapi.WhoEntry, 0, len(es))
		for _, w := range es {
			aliases := make([]string, 0, len(w.Aliases))
			for _, a := range w.Aliases {
				aliases = append(aliases, msp.Latin1ToUTF8(a))
			}
			j := opsapi.WhoEntry{User: msp.Latin1ToUTF8(w.User), Node: w.Node, Term: msp.Latin1ToUTF8(w.Term),
				State: w.State.String(), Aliases: aliases}
			if w.State == principal.Offline {
				j.LastSeen = &w.LastActive
			} else {
				j.Since, j.LastActive = &w.Since, &w.LastActive
				j.Kind = w.Kind.String()
			}
			if w.Kind == principal.KindTTY {
				idle := int64(max(time.Since(w.LastActive), 0) / time.Second)
				j.Idle = &idle
			}
			out = append(out, j)
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err == nil {
			_, err = e.stdout.Write(safeJSON(append(b, '\n')))
		}
		if err != nil {
			return fail(e, exitUsage, "writing output: %v", err)
		}
		if len(es) == 0 && name != "" && !strings.HasPrefix(name, "#") {
			return exitNack // the same verdict as the text form: unknown user
		}
		return exitOK
	}
	switch {
	case len(es) == 0 && name == "":
		fmt.Fprintln(e.stdout, "nobody is signed in")
		return exitOK
	case len(es) == 0 && strings.HasPrefix(name, "#"):
		fmt.Fprintf(e.stdout, "%s has no members\n", show(name))
		return exitOK
	case len(es) == 0:
		// The directory keeps a record of everyone who ever signed in (see
		// the offline case below), so no entry at all means a name the
		// cluster has never seen: what `msp send` calls an unknown user.
		return fail(e, exitNack, "%s: unknown user", show(name))
	case len(es) == 1 && es[0].State == principal.Offline:
		w := es[0]
		fmt.Fprintf(e.stdout, "%s is not signed in; last seen on %s at %s, %s (%s ago)\n", show(w.User), safeUTF8(w.Node),
			show(w.Term), w.LastActive.Local().Format("Jan 02 15:04"), time.Since(w.LastActive).Truncate(time.Second))
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tNODE\tTERM\tSTATE\tSINCE\tIDLE\tKIND")
	now := time.Now()
	for _, w := range es {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", show(w.User), safeUTF8(w.Node), show(w.Term), w.State,
			w.Since.Local().Format("Jan 02 15:04"), max(now.Sub(w.LastActive), 0).Truncate(time.Second), w.Kind)
	}
	tw.Flush()
	return exitOK
}
