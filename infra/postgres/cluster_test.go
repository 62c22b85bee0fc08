package postgres_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/incident-engine/engine/infra/postgres"
)

// TestClusterInAPrivateDirectory starts a cluster whose directory sits under a private
// parent (mode 0700, like a clone in root's home): run as root, where the server's postgres
// user cannot get through it, the cluster lives under FallbackRoot instead and says so;
// otherwise where it was asked. Either way it starts, answers and stops.
func TestClusterInAPrivateDirectory(t *testing.T) {
	t.Parallel()
	parent, err := os.MkdirTemp("", "private-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	asked := filepath.Join(parent, "data", "postgres")
	c, err := postgres.StartCluster(context.Background(), postgres.ClusterConfig{Dir: asked})
	if err != nil {
		t.Fatalf("StartCluster under a private parent: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Stop()
		if c.RelocatedFrom() != "" {
			os.RemoveAll(filepath.Dir(c.Dir()))
		}
	})
	if os.Geteuid() == 0 {
		if c.RelocatedFrom() != asked || filepath.Dir(filepath.Dir(c.Dir())) != postgres.FallbackRoot {
			t.Errorf("as root: cluster in %s (relocated from %q), want it under %s, relocated from %s", c.Dir(), c.RelocatedFrom(), postgres.FallbackRoot, asked)
		}
	} else if c.Dir() != asked || c.RelocatedFrom() != "" {
		t.Errorf("cluster in %s (relocated from %q), want %s", c.Dir(), c.RelocatedFrom(), asked)
	}
	pool, err := postgres.Connect(context.Background(), c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.Ping(context.Background()); err != nil {
		t.Errorf("the cluster does not answer: %v", err)
	}
}
