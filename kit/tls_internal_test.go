package kit

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A file renamed over the certificate, of the same size and modification
// time (two writes within the kernel's timestamp granularity), is a change.
func TestFileStampSeesAFileRenamedOver(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name, next := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "renewed.crt")
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, f := range []struct{ name, text string }{{name, "first"}, {next, "other"}} {
		if err := os.WriteFile(f.name, []byte(f.text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f.name, at, at); err != nil {
			t.Fatal(err)
		}
	}
	k := &keyPairFiles{certFile: name, keyFile: name}
	before := k.stat()
	if again := k.stat(); !again[0].same(before[0]) {
		t.Fatal("the same file, stated twice, is taken for a change")
	}
	if err := os.Rename(next, name); err != nil {
		t.Fatal(err)
	}
	if after := k.stat(); after[0].same(before[0]) {
		t.Error("a file renamed over the certificate, of the same size and time, is not taken for a change")
	}
}
