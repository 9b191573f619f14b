package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/internal/buildinfo"
	"github.com/msprelay/msprelay/ops"
)

// newOps builds the relay's HTTP endpoint: metrics (the nats-server's own
// counters and the Go runtime) and probes; a relay has no API or page.
func newOps(addr, tokenFile string, b *broker.Broker, jetStream bool, log *slog.Logger) (*ops.Server, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&varzCollector{srv: b.Server()})
	checks := []ops.Check{{Name: "nats", Fn: func(context.Context) error {
		if !b.Server().Running() {
			return errors.New("not running")
		}
		if b.ClientURL() == "" && b.Addrs().Client == "" {
			return errors.New("not accepting clients yet")
		}
		return nil
	}}}
	if jetStream {
		checks = append(checks, ops.Check{Name: "jetstream", Fn: func(context.Context) error {
			if !b.Server().JetStreamEnabled() {
				return errors.New("not enabled (yet)")
			}
			return nil
		}})
	}
	return ops.New(ops.Config{Addr: addr, Registry: reg, Checks: checks, TokenFile: tokenFile,
		Daemon: "msprelay relay", Version: buildinfo.Version(), Logger: log.With("component", "http")})
}

// varzCollector reports the nats-server's counters from Varz at scrape
// time.
type varzCollector struct{ srv *server.Server }

func relayDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("msprelay_relay_"+name, help, nil, nil)
}

var (
	descConns     = relayDesc("connections", "Client connections.")
	descRoutes    = relayDesc("routes", "Routes to other relays of this site.")
	descRemotes   = relayDesc("gateways", "Gateway connections to other sites.")
	descLeafs     = relayDesc("leafnodes", "Leafnode connections.")
	descInMsgs    = relayDesc("in_messages_total", "Messages received.")
	descOutMsgs   = relayDesc("out_messages_total", "Messages sent.")
	descInBytes   = relayDesc("in_bytes_total", "Bytes received.")
	descOutBytes  = relayDesc("out_bytes_total", "Bytes sent.")
	descSlow      = relayDesc("slow_consumers_total", "Clients dropped as slow consumers.")
	descSubs      = relayDesc("subscriptions", "Subscriptions.")
	descRelayInfo = prometheus.NewDesc("msprelay_relay_build_info", "Always 1; the labels name the build.", []string{"version", "nats_server", "server"}, nil)
)

func (c *varzCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConns, descRoutes, descRemotes, descLeafs, descInMsgs, descOutMsgs,
		descInBytes, descOutBytes, descSlow, descSubs, descRelayInfo} {
		ch <- d
	}
}

func (c *varzCollector) Collect(ch chan<- prometheus.Metric) {
	v, err := c.srv.Varz(&server.VarzOptions{})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descConns, fmt.Errorf("varz: %w", err))
		return
	}
	g := func(d *prometheus.Desc, x float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, x) }
	k := func(d *prometheus.Desc, x float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, x)
	}
	g(descConns, float64(v.Connections))
	g(descRoutes, float64(v.Routes))
	g(descRemotes, float64(v.Remotes))
	g(descLeafs, float64(v.Leafs))
	k(descInMsgs, float64(v.InMsgs))
	k(descOutMsgs, float64(v.OutMsgs))
	k(descInBytes, float64(v.InBytes))
	k(descOutBytes, float64(v.OutBytes))
	k(descSlow, float64(v.SlowConsumers))
	g(descSubs, float64(v.Subscriptions))
	ch <- prometheus.MustNewConstMetric(descRelayInfo, prometheus.GaugeValue, 1, buildinfo.Version(), server.VERSION, v.Name)
}
