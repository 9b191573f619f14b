//go:build !race

package sockowner

// raceEnabled: this test binary was built with -race.
const raceEnabled = false
