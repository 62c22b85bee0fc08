package postgres

import (
	"path/filepath"
	"testing"
)

// TestServerBinariesOffPath checks that initdb and pg_ctl are found where Debian installs
// them (/usr/lib/postgresql/<version>/bin) when they are not on PATH, as on a stock Debian
// machine with the postgresql package.
func TestServerBinariesOffPath(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dir, err := serverBinDir()
	if err != nil {
		t.Fatalf("serverBinDir without PATH: %v", err)
	}
	if !isExecutable(filepath.Join(dir, "initdb")) || !isExecutable(filepath.Join(dir, "pg_ctl")) {
		t.Errorf("serverBinDir = %q, which lacks initdb or pg_ctl", dir)
	}
}
