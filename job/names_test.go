package job

import (
	"math/rand/v2"
	"regexp"
	"testing"
)

// The name matchers agree with the regular expressions they replace.
func TestNameMatchersAgreeWithRegexps(t *testing.T) {
	for _, tc := range []struct {
		name  string
		re    *regexp.Regexp
		match func(string) bool
	}{
		{"LabelKey", regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$`), validLabelKey},
		{"StepName", regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`), validStepName},
		{"Tenant", regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$`), ValidTenant},
		{"EnvKey", regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`), validEnvKey},
		{"ID", regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`), ValidID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const alphabet = "aZz09_-./AIOULé\x00 ="
			rng := rand.New(rand.NewPCG(1, 2))
			for range 200_000 {
				n := rng.IntN(70)
				if rng.IntN(4) == 0 {
					n = 26
				}
				b := make([]byte, n)
				for i := range b {
					b[i] = alphabet[rng.IntN(len(alphabet))]
				}
				s := string(b)
				if got, want := tc.match(s), tc.re.MatchString(s); got != want {
					t.Fatalf("%q: %v, the regexp says %v", s, got, want)
				}
			}
		})
	}
}
