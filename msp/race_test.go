//go:build race

package msp

// raceEnabled: this test binary was built with -race.
const raceEnabled = true
