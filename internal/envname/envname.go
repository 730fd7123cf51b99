// Package envname finds the setting a misspelt environment variable most
// likely meant, for the warnings of kit's and natsjs' ConfigFromEnv.
package envname

// Nearest returns the name of names closest to name, within an edit
// distance of 2 (3 for names over 16 characters), or "" if none is.
func Nearest(name string, names []string) string {
	best, bestDist := "", 3
	if len(name) > 16 {
		bestDist = 4
	}
	for _, n := range names {
		if d := editDistance(name, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, bytes for
// characters (variable names are ASCII). Written here, a dozen lines,
// rather than bring in a module for a start-up message.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
