package domain_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDomainImportsStandardLibraryOnly fails when any package under domain/ depends, even
// indirectly, on a package outside the standard library.
func TestDomainImportsStandardLibraryOnly(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./domain/...: %v\n%s", err, out)
	}
	const self = "github.com/incident-engine/engine/domain"
	for _, pkg := range strings.Fields(string(out)) {
		if pkg != self && !strings.HasPrefix(pkg, self+"/") {
			t.Errorf("domain depends on non-standard package %s", pkg)
		}
	}
}
