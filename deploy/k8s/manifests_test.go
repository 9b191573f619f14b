package k8s

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest document.
type object struct {
	file string
	obj  any
}

// newObject returns an empty typed object for a manifest's apiVersion and
// kind; a kind the manifests are not expected to hold is an error.
func newObject(tm metav1.TypeMeta) (any, error) {
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	}
	return nil, fmt.Errorf("unexpected apiVersion %q kind %q", tm.APIVersion, tm.Kind)
}

// docSep splits a multi-document YAML file.
var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeAll decodes every document of every *.yaml file here strictly:
// unknown or duplicate fields and wrong types fail.
func decodeAll(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var out []object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSep.Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Errorf("%s document %d: %v", f, i+1, err)
				continue
			}
			obj, err := newObject(tm)
			if err != nil {
				t.Errorf("%s document %d: %v", f, i+1, err)
				continue
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Errorf("%s document %d (%s): %v", f, i+1, tm.Kind, err)
				continue
			}
			out = append(out, object{f, obj})
		}
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// "A test decodes every manifest strictly into the official Kubernetes API
// types ... so a typo fails CI."
func TestManifestsDecodeStrictly(t *testing.T) {
	t.Parallel()
	objs := decodeAll(t)
	if len(objs) < 7 {
		t.Fatalf("decoded %d objects, want at least 7", len(objs))
	}
	for _, o := range objs {
		m, ok := o.obj.(metav1.Object)
		if !ok {
			t.Fatalf("%s: %T has no metadata", o.file, o.obj)
		}
		if _, isNS := o.obj.(*corev1.Namespace); !isNS && m.GetNamespace() != "msprelay" {
			t.Errorf("%s: %s is in namespace %q, want msprelay", o.file, m.GetName(), m.GetNamespace())
		}
	}
}

// The strict decoder is the guard: prove it rejects a misspelt field that a
// lenient decoder would drop.
func TestStrictDecodingRejectsTypos(t *testing.T) {
	t.Parallel()
	doc := "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\nspec:\n  template:\n    spec:\n      hostNetwrok: true\n"
	if err := yaml.UnmarshalStrict([]byte(doc), &appsv1.DaemonSet{}); err == nil {
		t.Fatal("UnmarshalStrict accepted the unknown field hostNetwrok")
	}
}

func find[T any](t *testing.T, objs []object, name string) T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			if m, ok := o.obj.(metav1.Object); ok && m.GetName() == name {
				return v
			}
		}
	}
	var zero T
	t.Fatalf("no %T named %s", zero, name)
	return zero
}

// "a relay StatefulSet of 3 with JetStream R3 and persistent volumes, nodes
// as a DaemonSet (host network, port 18) ..., a headless Service for gossip
// seeds, probes on the node's health endpoints".
func TestTopology(t *testing.T) {
	t.Parallel()
	objs := decodeAll(t)

	relay := find[*appsv1.StatefulSet](t, objs, "msprelay-relay")
	if relay.Spec.Replicas == nil || *relay.Spec.Replicas != 3 {
		t.Errorf("relay replicas %v, want 3", relay.Spec.Replicas)
	}
	if len(relay.Spec.VolumeClaimTemplates) != 1 {
		t.Errorf("relay has %d volume claim templates, want 1", len(relay.Spec.VolumeClaimTemplates))
	}
	rc := relay.Spec.Template.Spec.Containers[0]
	if !slices.Contains(rc.Args, "--data=/data") || !mounted(rc, "/data") {
		t.Errorf("relay JetStream store is not on its volume: args %v", rc.Args)
	}
	for i := range 3 {
		want := fmt.Sprintf("nats-route://msprelay-relay-%d.msprelay-relay.msprelay.svc.cluster.local:6222", i)
		if !strings.Contains(strings.Join(rc.Args, " "), want) {
			t.Errorf("relay routes miss %s", want)
		}
	}
	if svc := find[*corev1.Service](t, objs, relay.Spec.ServiceName); svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("relay service %s is not headless", svc.Name)
	}

	cm := find[*corev1.ConfigMap](t, objs, "msprelay-node")
	if cm.Data["MSPRELAY_MAILBOX_REPLICAS"] != "3" {
		t.Errorf("nodes do not ask for R3 mailboxes: %v", cm.Data)
	}

	ds := find[*appsv1.DaemonSet](t, objs, "msprelay-node")
	ps := ds.Spec.Template.Spec
	if !ps.HostNetwork || ps.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("node pods: hostNetwork %v dnsPolicy %q", ps.HostNetwork, ps.DNSPolicy)
	}
	nc := ps.Containers[0]
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
		if !slices.ContainsFunc(nc.Ports, func(p corev1.ContainerPort) bool {
			return p.ContainerPort == 18 && p.HostPort == 18 && p.Protocol == proto
		}) {
			t.Errorf("node does not expose port 18/%s", proto)
		}
	}
	if p := nc.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("node liveness probe %+v, want GET /healthz", p)
	}
	if p := nc.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Errorf("node readiness probe %+v, want GET /readyz", p)
	}
	sc := nc.SecurityContext
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_BIND_SERVICE"}) ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("node capabilities %+v, want ALL dropped and NET_BIND_SERVICE only", sc)
	}

	gossip := find[*corev1.Service](t, objs, "msprelay-gossip")
	if gossip.Spec.ClusterIP != corev1.ClusterIPNone || !gossip.Spec.PublishNotReadyAddresses {
		t.Errorf("gossip service must be headless and list unready pods: %+v", gossip.Spec)
	}
	if !slices.Contains(nc.Args, "--join="+gossip.Name+".msprelay.svc.cluster.local:7946") {
		t.Errorf("nodes do not join through the gossip service: %v", nc.Args)
	}
	for _, key := range []string{"nats-user", "nats-password", "gossip-key"} {
		if _, ok := find[*corev1.Secret](t, objs, "msprelay-credentials").StringData[key]; !ok {
			t.Errorf("credentials secret lacks %s", key)
		}
	}
}

func mounted(c corev1.Container, path string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == path })
}

// pendingFlags are flags other work in progress adds to the programs (the
// node's --http endpoint serving /healthz and /readyz). They are accepted
// whether or not this build has them yet; remove an entry once it landed.
var pendingFlags = map[string][]string{}

// Every flag the manifests pass to a program is one that program has, so a
// renamed flag fails here rather than in a crash-looping pod.
func TestManifestFlagsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the programs")
	}
	t.Parallel()
	objs := decodeAll(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/node", "./cmd/relay")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	programs := map[string]string{"/usr/bin/msprelay-node": "node", "/usr/bin/msprelay-relay": "relay"}
	var checked int
	for _, o := range objs {
		var pod corev1.PodSpec
		switch v := o.obj.(type) {
		case *appsv1.StatefulSet:
			pod = v.Spec.Template.Spec
		case *appsv1.DaemonSet:
			pod = v.Spec.Template.Spec
		default:
			continue
		}
		for _, c := range pod.Containers {
			if len(c.Command) != 1 || programs[c.Command[0]] == "" {
				t.Errorf("%s: container %s runs %v, want one of the msprelay programs", o.file, c.Name, c.Command)
				continue
			}
			known := flagsOf(t, filepath.Join(bin, programs[c.Command[0]]))
			known = append(known, pendingFlags[filepath.Base(c.Command[0])]...)
			for _, a := range c.Args {
				name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if !strings.HasPrefix(a, "-") || !slices.Contains(known, name) {
					t.Errorf("%s: %s has no flag %q", o.file, c.Command[0], a)
				}
				checked++
			}
			for _, e := range c.Env {
				checkEnvFlag(t, o.file, c.Command[0], e.Name, known)
			}
		}
	}
	cm := find[*corev1.ConfigMap](t, objs, "msprelay-node")
	known := flagsOf(t, filepath.Join(bin, "node"))
	for k := range cm.Data {
		checkEnvFlag(t, "credentials.yaml", "/usr/bin/msprelay-node", k, known)
	}
	if checked == 0 {
		t.Fatal("no arguments checked")
	}
}

// checkEnvFlag: an MSPRELAY_* variable must name a real flag.
func checkEnvFlag(t *testing.T, file, program, env string, known []string) {
	t.Helper()
	prefix := "MSPRELAY_"
	if strings.HasSuffix(program, "relay") {
		prefix = "MSPRELAY_RELAY_"
	}
	rest, ok := strings.CutPrefix(env, prefix)
	if !ok {
		return
	}
	if flag := strings.ToLower(strings.ReplaceAll(rest, "_", "-")); !slices.Contains(known, flag) {
		t.Errorf("%s: %s=... sets no flag of %s (no --%s)", file, env, program, flag)
	}
}

// helpFlag matches a flag line of Go's flag package usage output.
var helpFlag = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// flagsOf lists a program's flags from its --help.
func flagsOf(t *testing.T, bin string) []string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, "--help")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s --help: %v\n%s", bin, err, out.String())
	}
	var flags []string
	for _, m := range helpFlag.FindAllStringSubmatch(out.String(), -1) {
		flags = append(flags, m[1])
	}
	if len(flags) < 5 {
		t.Fatalf("%s --help lists only %v", bin, flags)
	}
	return flags
}
