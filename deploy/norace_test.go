//go:build !race

package deploy

// raceEnabled: this test binary was built with -race.
const raceEnabled = false
