package ops

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"time"

	"github.com/msprelay/msprelay/opsapi"
)

// static holds the status page: its template, style sheet and script. They
// are served from the binary; the page loads nothing from elsewhere.
//
//go:embed static
var static embed.FS

var pageTemplate = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"ago": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return time.Since(*t).Truncate(time.Second).String()
	},
}).ParseFS(static, "static/status.html"))

// pageData is what status.html renders; the script updates the who table
// and the rates from /api/v1/events afterwards.
type pageData struct {
	Node, Daemon, Version string
	Ready                 Readiness
	Nodes                 []opsapi.NodeStatus
	Who                   []opsapi.WhoEntry
	Rates                 opsapi.Rates
	Outcomes              []string
	Now                   time.Time
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	d := pageData{
		Node: s.cfg.Source.Self(), Daemon: s.cfg.Daemon, Version: s.cfg.Version,
		Ready: Ready(ctx, s.cfg.Checks), Nodes: s.cfg.Source.Nodes(ctx), Who: s.whoList(),
		Rates: s.cfg.Source.Rates(), Outcomes: slices.Clone(outcomes), Now: time.Now(),
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Everything the page needs comes from here; inline code is refused.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if err := pageTemplate.Execute(w, d); err != nil {
		s.log.Warn("status page", "err", err)
	}
}

// outcomes are the delivery outcomes the page shows rates for, in order.
var outcomes = []string{"delivered", "queued", "refused", "failed"}

func staticHandler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.StripPrefix("/static/", http.FileServerFS(sub))
}
