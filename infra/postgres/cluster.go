package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrBinariesMissing is returned by StartCluster when initdb or pg_ctl is found neither on
// PATH, nor where `pg_config --bindir` says, nor where Debian puts them.
var ErrBinariesMissing = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, in `pg_config --bindir` or in /usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql) or set DATABASE_URL to an existing server")

// serverBinDir returns the directory of initdb and pg_ctl: "" when they are on PATH, else
// pg_config's bindir or Debian's /usr/lib/postgresql/<version>/bin, the newest version first.
func serverBinDir() (string, error) {
	onPath := true
	for _, bin := range []string{"initdb", "pg_ctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			onPath = false
		}
	}
	if onPath {
		return "", nil
	}
	var dirs []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(debian, func(a, b string) int { return versionOf(b) - versionOf(a) })
	dirs = append(dirs, debian...)
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", ErrBinariesMissing
}

// versionOf reads the major version of /usr/lib/postgresql/<version>/bin.
func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// reachable reports whether a process of uid and gid can reach dir: every directory above it
// lets that user through.
func reachable(dir string, uid, gid uint32) bool {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		switch {
		case !ok:
			return true
		case st.Uid == uid:
			if mode&0o100 == 0 {
				return false
			}
		case st.Gid == gid:
			if mode&0o010 == 0 {
				return false
			}
		case mode&0o001 == 0:
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

// FallbackRoot is where, running as root, StartCluster keeps a cluster whose directory the
// postgres user cannot reach (a clone under root's home, mode 0700): one directory per
// requested directory.
const FallbackRoot = "/var/lib/incident-engine"

// ClusterConfig describes a private PostgreSQL cluster run from the initdb and pg_ctl on PATH.
type ClusterConfig struct {
	// Dir is the data directory; it is initialised on first start and reused after.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Durable keeps fsync on. Throwaway test clusters turn it off for speed.
	Durable bool
}

// Cluster is a running private PostgreSQL server. Stop it when done.
type Cluster struct {
	cfg  ClusterConfig
	cred *syscall.Credential
	port int
	bin  string // directory of initdb and pg_ctl, "" for PATH
	// relocated is the directory asked for when the cluster lives under FallbackRoot instead.
	relocated string
}

// StartCluster initialises cfg.Dir if needed and starts a server on 127.0.0.1. As root it runs
// the server as the "postgres" user, since PostgreSQL refuses to run as root.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	bin, err := serverBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("cluster dir: %w", err)
	}
	cfg.Dir = dir
	c := &Cluster{cfg: cfg, port: cfg.Port, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs a 'postgres' user to own the cluster: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if !reachable(dir, c.cred.Uid, c.cred.Gid) {
			// PostgreSQL refuses to run as root, and its user cannot get through a private
			// parent (a clone in root's home): keep the cluster where it can.
			sum := sha256.Sum256([]byte(dir))
			c.relocated, dir = dir, filepath.Join(FallbackRoot, hex.EncodeToString(sum[:6]), filepath.Base(dir))
			c.cfg.Dir = dir
		}
	}
	if c.port == 0 {
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
	}
	// The parents must be traversable by the server's user; the data directory is its own.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, fmt.Errorf("chown cluster dir: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if out, err := c.run(ctx, "initdb", "-D", dir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale"); err != nil {
			return nil, fmt.Errorf("initdb %s: %w\n%s", dir, err, out)
		}
	}
	// A server left running by a crashed run would hold the directory: stop it first.
	_, _ = c.run(ctx, "pg_ctl", "-D", dir, "-m", "fast", "-w", "stop")
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200", c.port)
	if !cfg.Durable {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	logFile := filepath.Join(dir, "server.log")
	if out, err := c.run(ctx, "pg_ctl", "-D", dir, "-l", logFile, "-o", opts, "-w", "-t", "60", "start"); err != nil {
		tail, _ := os.ReadFile(logFile)
		return nil, fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, lastLines(string(tail), 20))
	}
	return c, nil
}

// URL returns the connection string of the cluster's "postgres" database.
func (c *Cluster) URL() string { return c.DatabaseURL("postgres") }

// DatabaseURL returns the connection string of database db in the cluster.
func (c *Cluster) DatabaseURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// Dir returns the data directory.
func (c *Cluster) Dir() string { return c.cfg.Dir }

// RelocatedFrom returns the directory asked for when the cluster lives elsewhere because the
// postgres user cannot reach it (see FallbackRoot), or "".
func (c *Cluster) RelocatedFrom() string { return c.relocated }

// Stop shuts the server down, waiting for it to finish.
func (c *Cluster) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := c.run(ctx, "pg_ctl", "-D", c.cfg.Dir, "-m", "fast", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if c.bin != "" {
		name = filepath.Join(c.bin, name)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = os.TempDir()
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
