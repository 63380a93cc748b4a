package framework

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Second is the node AddSecondNode added, or nil.
func (n *RealNode) Second() *RealNode { return n.second }

// Lose makes the node die as a machine whose power is cut: its pods'
// links on the bridge go down first (traffic to them is dropped, not
// refused, as with a dead machine), then the kubelet, containerd, the
// shims and every container get SIGKILL at once (the node's cgroup). The
// API server is told nothing: the node controller finds out by the lease
// the kubelet no longer renews. The state directory stays, for Return.
func (n *RealNode) Lose() error {
	veths, err := n.podVeths()
	if err != nil {
		return err
	}
	for _, v := range veths {
		if out, err := exec.Command("ip", "link", "set", v, "down").CombinedOutput(); err != nil {
			return fmt.Errorf("ip link set %s down: %w: %s", v, err, out)
		}
		n.downed = append(n.downed, v)
	}
	if err := killCgroup(n.spec.cgroup); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	for _, c := range n.procs {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("node %s: %s (pid %d) still running after SIGKILL to its cgroup", n.Name, c.name, c.cmd.Process.Pid)
		}
	}
	n.say("real node %s lost: %d pod links down, kubelet, containerd and containers killed", n.Name, len(veths))
	return nil
}

// Return starts the lost node's containerd and kubelet again on the state
// they left, as a machine that boots again; the links Lose set down come
// up (the kubelet then tears down the sandboxes of pods deleted meanwhile,
// their veths with them).
func (n *RealNode) Return(ctx context.Context) error {
	for _, v := range n.downed {
		// A veth CNI removed meanwhile is gone: nothing to bring up.
		_ = exec.Command("ip", "link", "set", v, "up").Run()
	}
	n.downed = nil
	return n.startDaemons(ctx)
}

// RestartKubelet stops the kubelet (SIGTERM, as systemd restarts it) and
// starts it again; the containers keep running.
func (n *RealNode) RestartKubelet(ctx context.Context) error {
	return n.restartDaemon(ctx, "kubelet", func() error { return n.startKubeletServing(ctx) })
}

// RestartContainerd stops containerd (SIGTERM) and starts it again; the
// shims, and with them the containers, keep running.
func (n *RealNode) RestartContainerd(ctx context.Context) error {
	return n.restartDaemon(ctx, "containerd", func() error { return n.startContainerd(ctx) })
}

func (n *RealNode) restartDaemon(ctx context.Context, name string, start func() error) error {
	i := slices.IndexFunc(n.procs, func(c *component) bool {
		select {
		case <-c.done:
			return false
		default:
			return c.name == n.logName(name)
		}
	})
	if i < 0 {
		return fmt.Errorf("node %s: no running %s to restart", n.Name, name)
	}
	c := n.procs[i]
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	case <-ctx.Done():
		return ctx.Err()
	}
	n.say("real node %s: %s stopped; starting it again", n.Name, name)
	return start()
}

// ifLink matches `ip -o link show eth0` inside a pod's network namespace:
// the peer's interface index on the host follows "@if".
var ifLink = regexp.MustCompile(`^\d+: eth0@if(\d+):`)

// podVeths lists the host-side veths of the node's pods: for each network
// namespace containerd keeps under the node's state directory, the host
// interface whose index its eth0 names as its peer.
func (n *RealNode) podVeths() ([]string, error) {
	mounts, err := NodeMounts(filepath.Join(n.Dir, "containerd", "state"))
	if err != nil {
		return nil, err
	}
	host, err := exec.Command("ip", "-o", "link", "show", "master", RealNodeBridge).Output()
	if err != nil {
		return nil, fmt.Errorf("ip link show master %s: %w", RealNodeBridge, err)
	}
	byIndex := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(host)), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			byIndex[strings.TrimSuffix(f[0], ":")] = strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
		}
	}
	var veths []string
	var errs []error
	for _, m := range mounts {
		if !strings.Contains(m, "/netns/") {
			continue
		}
		out, err := exec.Command("nsenter", "--net="+m, "ip", "-o", "link").CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("nsenter --net=%s ip link: %w: %s", m, err, out))
			continue
		}
		var sub []string
		for _, line := range strings.Split(string(out), "\n") {
			if sub = ifLink.FindStringSubmatch(line); sub != nil {
				break
			}
		}
		if sub == nil {
			continue // a sandbox whose pod network CNI already removed
		}
		if v, ok := byIndex[sub[1]]; ok {
			veths = append(veths, v)
		} else {
			errs = append(errs, fmt.Errorf("%s: eth0's peer %s is not on %s", m, sub[1], RealNodeBridge))
		}
	}
	return veths, errors.Join(errs...)
}

// RequireDropped is nil when a connection to ip:port from the bridge's
// address gets no answer within timeout, as with a dead machine: not
// accepted, not refused.
func RequireDropped(ctx context.Context, ip string, port int, timeout time.Duration) error {
	if err := CheckPodAddress(ip); err != nil {
		return err
	}
	d := *bridgeDialer
	d.Timeout = timeout
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err == nil {
		conn.Close()
		return fmt.Errorf("%s:%d accepted a connection", ip, port)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return fmt.Errorf("%s:%d answered: %w", ip, port, err)
}
