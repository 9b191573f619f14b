package cliflags

import (
	"flag"
	"testing"
)

// Issue 20: "--terminals off is refused (only --terminals=off)": the
// on/off flags take a separate value, and a bare one still means on.
func TestOnOffFlagTakesSeparateValue(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want bool
		rest int
	}{
		{[]string{"--terminals", "off"}, false, 0},
		{[]string{"--terminals=off"}, false, 0},
		{[]string{"-terminals", "no"}, false, 0},
		{[]string{"--terminals"}, true, 0},
		{[]string{"--terminals", "--utmp", "/x"}, true, 0},
		{[]string{"--", "--terminals", "on"}, false, 2},
	}
	for _, tc := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		v := onOff(false)
		fs.Var(&v, "terminals", "")
		fs.String("utmp", "", "")
		if err := fs.Parse(joinOnOffValues(fs, tc.args)); err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if bool(v) != tc.want || fs.NArg() != tc.rest {
			t.Errorf("%q: terminals %v with %d arguments left, want %v and %d", tc.args, bool(v), fs.NArg(), tc.want, tc.rest)
		}
	}
}
