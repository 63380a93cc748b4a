package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// RestartAPIServer stops kube-apiserver with SIGTERM, as a rollout or a
// node reboot does, and starts it again with the same command line,
// environment and files (certificates, etcd), then waits until it is ready.
// envtest has no restart of its own: its Stop deletes the credentials the
// clients use. The new process is stopped by Stop.
func (c *Cluster) RestartAPIServer(ctx context.Context, logs *os.File) error {
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return fmt.Errorf("API server URL %q: %w", c.Config.Host, err)
	}
	_, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return fmt.Errorf("API server address %q: %w", u.Host, err)
	}
	pid, again, err := findAPIServer(port)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop kube-apiserver (pid %d): %w", pid, err)
	}
	// Gone once its port is free: a graceful stop drains requests first.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		l, err := net.Listen("tcp", u.Host)
		if err != nil {
			return false, nil
		}
		return true, l.Close()
	}); err != nil {
		return fmt.Errorf("kube-apiserver (pid %d) did not stop: %w", pid, err)
	}
	again.Stdout, again.Stderr = logs, logs
	restarted, err := startComponent("kube-apiserver", again)
	if err != nil {
		return err
	}
	c.restarted = append(c.restarted, restarted)
	clientset, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := clientset.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("kube-apiserver not ready after its restart (log %s): %w", logs.Name(), err)
	}
	return nil
}

// findAPIServer finds the kube-apiserver serving port among this machine's
// processes and returns its pid and a command that starts it again: the
// same command line, environment and working directory.
func findAPIServer(port string) (int, *exec.Cmd, error) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		if filepath.Base(args[0]) != "kube-apiserver" || !slices.Contains(args, "--secure-port="+port) {
			continue
		}
		proc := filepath.Dir(p)
		pid, _ := strconv.Atoi(filepath.Base(proc))
		env, err := os.ReadFile(filepath.Join(proc, "environ"))
		if err != nil {
			return 0, nil, fmt.Errorf("read kube-apiserver's environment: %w", err)
		}
		dir, err := os.Readlink(filepath.Join(proc, "cwd"))
		if err != nil {
			return 0, nil, fmt.Errorf("read kube-apiserver's working directory: %w", err)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = strings.Split(string(bytes.TrimSuffix(env, []byte{0})), "\x00")
		cmd.Dir = dir
		return pid, cmd, nil
	}
	return 0, nil, errors.New("no kube-apiserver process serves port " + port)
}

// EnvtestDirs are the directories envtest made for the process pid (its
// --data-dir and --cert-dir, named k8s_test_framework_* under the temp
// dir): what to remove after killing a control plane whose envtest did
// not stop it.
func EnvtestDirs(pid int) []string {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	var dirs []string
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		for _, flag := range []string{"--data-dir=", "--cert-dir="} {
			if dir, ok := strings.CutPrefix(arg, flag); ok && IsEnvtestDir(dir) && !slices.Contains(dirs, dir) {
				dirs = append(dirs, dir)
			}
		}
	}
	return dirs
}

// IsEnvtestDir says whether dir is one envtest names under the temp dir.
func IsEnvtestDir(dir string) bool {
	return filepath.Dir(dir) == filepath.Clean(os.TempDir()) && strings.HasPrefix(filepath.Base(dir), "k8s_test_framework_")
}
