package broker

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"name is required", Config{}, `server name "": length must be 1..64`},
		{"name must not contain dots (it ends up in subjects)", Config{Name: "a.b"}, `server name "a.b": byte 1: only letters, digits, - and _ are allowed`},
		{"name must not contain spaces", Config{Name: "a b"}, "only letters, digits, - and _ are allowed"},
		{"name must not contain wildcards", Config{Name: "a*"}, "only letters, digits, - and _ are allowed"},
		{"name at most 64 bytes", Config{Name: strings.Repeat("n", 65)}, "length must be 1..64"},
		{"listen needs host:port", Config{Name: "n", Listen: "4222"}, `listen address "4222"`},
		{"listen port in range", Config{Name: "n", Listen: ":65536"}, "port must be 0..65535"},
		{"monitor needs host:port", Config{Name: "n", Monitor: "x"}, `monitor address "x"`},
		{"JetStream needs a store", Config{Name: "n", JetStream: true}, "JetStream needs DataDir"},
		{"DataDir needs JetStream", Config{Name: "n", DataDir: dir}, "JetStream is off"},
		{"JetStream limits not negative", Config{Name: "n", JetStream: true, DataDir: dir, JetStreamMaxMem: -1}, "must not be negative"},
		{"site is a name (it becomes a server tag)", Config{Name: "n", Site: "east:1"}, `site "east:1"`},
		{"domain is a name", Config{Name: "n", JetStream: true, DataDir: dir, Domain: "a.b"}, "JetStream domain"},
		{"cluster name is a name", Config{Name: "n", Listen: ":0", Cluster: ":0", ClusterName: "a b"}, `cluster name "a b"`},
		{"cluster needs a client listener (nats-server would hang)", Config{Name: "n", Cluster: ":0"}, "Cluster needs a client Listen address"},
		{"routes need a cluster listener", Config{Name: "n", Routes: []string{"nats-route://h:1"}}, "Routes need a Cluster listen address"},
		{"route URL needs scheme and port", Config{Name: "n", Listen: ":0", Cluster: ":0", Routes: []string{"h:6222"}}, `route: broker: bad config: url "h:6222": want scheme://host:port`},
		{"JetStream behind a gateway needs routes", Config{Name: "n", Listen: ":0", Gateway: ":0", GatewayName: "east", JetStream: true, DataDir: dir}, "JetStream with a Gateway needs cluster Routes"},
		{"clustered JetStream needs routes", Config{Name: "n", Listen: ":0", Cluster: ":0", ClusterName: "c", JetStream: true, DataDir: dir}, "JetStream in a cluster needs Routes"},
		{"gateway needs a name", Config{Name: "n", Gateway: ":0"}, `gateway name (GatewayName or ClusterName) ""`},
		{"gateways need a gateway listener", Config{Name: "n", Gateways: map[string][]string{"x": {"nats://h:1"}}}, "Gateways need a Gateway listen address"},
		{"remote gateway needs URLs", Config{Name: "n", Gateway: ":0", GatewayName: "g", Gateways: map[string][]string{"x": nil}}, "remote gateway x has no URLs"},
		{"remote gateway name is a name", Config{Name: "n", Gateway: ":0", GatewayName: "g", Gateways: map[string][]string{"x y": {"nats://h:1"}}}, `remote gateway name "x y"`},
		{"gateway and cluster names agree", Config{Name: "n", Gateway: ":0", GatewayName: "g", Listen: "127.0.0.1:0", Cluster: ":0", ClusterName: "c"}, "cluster name conflicts"},
		{"leafnodes with a gateway need a system account", Config{Name: "n", Gateway: ":0", GatewayName: "g", Leafnode: ":0"}, "define accounts and system_account in ConfigFile"},
		{"leaf remote URL needs a port", Config{Name: "n", LeafRemotes: []string{"nats-leaf://h"}}, "leaf remote"},
		{"token excludes user", Config{Name: "n", Token: "t", User: "u", Password: "p"}, "exclusive"},
		{"user needs password", Config{Name: "n", User: "u"}, "User and Password go together"},
		{"password needs user", Config{Name: "n", Password: "p"}, "User and Password go together"},
		{"CA needs a certificate", Config{Name: "n", CAFile: "ca.pem"}, "CAFile needs CertFile and KeyFile"},
		{"certificate needs key", Config{Name: "n", CertFile: "c.pem"}, "missing 'key_file'"},
		{"unreadable certificate", Config{Name: "n", CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}, "client TLS"},
		{"missing config file", Config{Name: "n", ConfigFile: "/nonexistent/relay.conf"}, "config file /nonexistent/relay.conf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg)
			if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New: %v, want ErrBadConfig containing %q", err, tc.wantErr)
			}
		})
	}
}

// GatewayName defaults to ClusterName because nats-server requires them
// equal; port 0 means random, as for net.Listen.
func TestOptionsMapping(t *testing.T) {
	t.Parallel()
	cfg := Config{
		Name: "n", Listen: "127.0.0.1:0", Cluster: "0.0.0.0:6222", ClusterName: "site",
		Gateway: ":7222", Gateways: map[string][]string{"b": {"nats://b:7222"}, "a": {"nats://a1:7222", "nats://a2:7222"}},
	}
	o, err := cfg.options()
	if err != nil {
		t.Fatal(err)
	}
	if o.Port != -1 || o.Host != "127.0.0.1" || o.DontListen {
		t.Errorf("client = %s:%d dontListen=%v, want 127.0.0.1:-1 listening", o.Host, o.Port, o.DontListen)
	}
	if o.Gateway.Name != "site" || o.Gateway.Port != 7222 {
		t.Errorf("gateway = %s port %d, want site port 7222", o.Gateway.Name, o.Gateway.Port)
	}
	var got []string
	for _, g := range o.Gateway.Gateways {
		for _, u := range g.URLs {
			got = append(got, g.Name+"="+u.String())
		}
	}
	if want := []string{"a=nats://a1:7222", "a=nats://a2:7222", "b=nats://b:7222"}; !reflect.DeepEqual(got, want) {
		t.Errorf("remote gateways = %q, want %q (sorted by name)", got, want)
	}
	if !o.NoSigs {
		t.Error("NoSigs off: nats-server would take over SIGTERM/SIGHUP from our process")
	}
	if len(o.Tags) != 0 || o.JetStreamUniqueTag != "" {
		t.Errorf("no Site: tags %v, unique tag %q; want none (placement as nats-server chooses)", o.Tags, o.JetStreamUniqueTag)
	}
	noListen, err := (&Config{Name: "n"}).options()
	if err != nil {
		t.Fatal(err)
	}
	if !noListen.DontListen {
		t.Error("empty Listen without ConfigFile: DontListen = false, want true")
	}
}

func TestParseGateways(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    map[string][]string
		wantErr string
	}{
		{"", map[string][]string{}, ""},
		{"east=nats://e1:7222", map[string][]string{"east": {"nats://e1:7222"}}, ""},
		{"east=nats://e1:7222,nats://e2:7222;west=nats://w1:7222",
			map[string][]string{"east": {"nats://e1:7222", "nats://e2:7222"}, "west": {"nats://w1:7222"}}, ""},
		{" east = nats://e1:7222 ; ; east=nats://e2:7222 ;",
			map[string][]string{"east": {"nats://e1:7222", "nats://e2:7222"}}, ""},
		{"east", nil, "want NAME=URL[,URL]"},
		{"=nats://e1:7222", nil, `gateway name "": length`},
		{"ea.st=nats://e1:7222", nil, "only letters, digits"},
		{"east=e1:7222", nil, "want scheme://host:port"},
		{"east=nats://e1:7222,", nil, `url ""`},
	} {
		got, err := ParseGateways(tc.in)
		if tc.wantErr != "" {
			if err == nil || !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseGateways(%q) error %v, want ErrBadConfig containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseGateways(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseGateways(f *testing.F) {
	f.Add("east=nats://e1:7222,nats://e2:7222;west=nats://w1:7222")
	f.Add("east")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseGateways(s)
		if err != nil {
			if !errors.Is(err, ErrBadConfig) {
				t.Fatalf("error %v does not wrap ErrBadConfig", err)
			}
			return
		}
		// Whatever parses must be accepted by New as a gateway list.
		for name, urls := range got {
			if ValidName(name) != nil || len(urls) == 0 {
				t.Fatalf("ParseGateways(%q) gave unusable entry %q=%q", s, name, urls)
			}
			if _, err := parseURLs(name, urls); err != nil {
				t.Fatalf("ParseGateways(%q) gave unusable URLs: %v", s, err)
			}
		}
	})
}

func TestSanitizeName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"relay1.example.org", "relay1"},
		{"my host", "my-host"},
		{"relay_2", "relay_2"},
		{"höst", "h-st"},
		{"", "relay"},
		{".example.org", "relay"},
		{"***", "relay"},
		{strings.Repeat("x", 70), strings.Repeat("x", 64)},
	} {
		got := SanitizeName(tc.in, "relay")
		if got != tc.want {
			t.Errorf("SanitizeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if err := ValidName(got); err != nil {
			t.Errorf("SanitizeName(%q) = %q is not valid: %v", tc.in, got, err)
		}
	}
}

// Flags win over the config file: Site replaces the file's site tag and
// keeps its other tags; the site is JetStream's unique tag.
func TestSiteReplacesFileSiteTag(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "relay.conf")
	if err := os.WriteFile(file, []byte("server_name: r1\nlisten: \"127.0.0.1:4222\"\nserver_tags: [\"site:old\", \"rack:1\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := (&Config{ConfigFile: file, Site: "New"}).options()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"rack:1", "site:new"}; !reflect.DeepEqual([]string(o.Tags), want) {
		t.Errorf("tags %q, want %q", o.Tags, want)
	}
	if o.JetStreamUniqueTag != SiteTagPrefix {
		t.Errorf("unique tag %q, want %q", o.JetStreamUniqueTag, SiteTagPrefix)
	}
}
