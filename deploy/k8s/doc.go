// Package k8s holds the Kubernetes manifests of msprelay (the *.yaml files
// beside this one) and the test that decodes every one of them strictly
// into the official API types, so that a misspelt field fails CI instead of
// being dropped by the API server.
//
// It is a Go module of its own (github.com/msprelay/msprelay/deploy/k8s) so
// that the main module does not carry k8s.io/api and its dependencies; the
// go.work file at the repository root puts it in `go test ./...`.
package k8s
