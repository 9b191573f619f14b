// Package deploy holds what an operator installs: systemd units
// (deploy/systemd), the Debian packager (deploy/pkg), the container image
// and compose file (deploy/container) and Kubernetes manifests (deploy/k8s).
//
// deploy/pkg and deploy/k8s are Go modules of their own, so that the
// daemons do not carry nfpm's or Kubernetes' dependencies. `go test ./...`
// does not descend into nested modules, so this package's test runs their
// tests: the README's one test command covers everything.
package deploy
