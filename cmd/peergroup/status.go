package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/peergroup/peergroup/inspect"
)

// status prints a group as its members see it; exit 1 when it shows a
// state to act on.
func status(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("status", stderr)
	output := outputFlag(fs)
	positional, err := parseAnywhere(fs, args)
	if err != nil {
		return 2, err
	}
	if len(positional) != 1 {
		return 2, fmt.Errorf("status: give one group name (peergroup status GROUP [-n NAMESPACE]); got %q", positional)
	}
	if err := checkOutput(*output); err != nil {
		return 2, err
	}
	if err := kube.refuseAll("status"); err != nil {
		return 2, err
	}
	cfg, err := restConfig()
	if err != nil {
		return 2, err
	}
	// One log read per member, several at once: client-go's default pace
	// (5 requests a second) would make a group of hundreds take minutes.
	cfg.QPS, cfg.Burst = 50, 100
	// -n, else the context's namespace, else default.
	ns, _, err := kube.namespace()
	if err != nil {
		return 2, err
	}
	c, err := newClientFor(cfg)
	if err != nil {
		return 2, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 2, err
	}
	logs := func(ctx context.Context, ns, pod, container string) (string, error) {
		data, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
		return string(data), err
	}
	s, err := inspect.Status(ctx, c, logs, ns, positional[0], time.Now())
	if err != nil {
		return 2, err
	}
	if *output == "json" {
		err = writeJSON(stdout, s)
	} else {
		err = writeStatus(stdout, s)
	}
	if err != nil {
		return 2, err
	}
	if len(s.Problems) > 0 || anyMemberProblem(s) {
		return 1, nil
	}
	return 0, nil
}

func anyMemberProblem(s inspect.GroupStatus) bool {
	for _, m := range s.Members {
		if len(m.Problems) > 0 {
			return true
		}
	}
	return false
}

func writeStatus(w io.Writer, s inspect.GroupStatus) error {
	agree := "yes"
	if !s.OneSeedList {
		agree = "NO"
	}
	fmt.Fprintf(w, "group %s in namespace %s: %d members; founder and seeds took one seed list: %s\n", s.Group, s.Namespace, len(s.Members), agree)
	if len(s.Members) == 0 {
		_, err := fmt.Fprintln(w, "no member pods (label pods or the namespace peergroup.dev/group="+s.Group+")")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tNODE\tIP\tREADY\tROLE\tSEEDS\tPEERS\tSTATE")
	for _, m := range s.Members {
		role := m.Role
		switch {
		case role == "" && m.Decided:
			role = "decided"
		case role == "" && (!m.Injected || !m.Started):
			role = "-" // nothing decides: no seed-discovery, or it has not run
		case role == "":
			role = "deciding"
		}
		peers := "-"
		if m.Peers >= 0 {
			peers = strconv.Itoa(m.Peers)
		}
		state := "ok"
		switch {
		case len(m.Problems) > 0:
			state = "ACT: " + m.Problems[0]
		case m.Terminating:
			state = "terminating"
		case m.Note != "":
			state = m.Note
		case m.Role == "" && m.Waiting != "":
			state = "waiting: " + m.Waiting
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Pod, orDash(m.Node), orDash(m.IP), yesNo(m.Ready), role, orDash(strings.Join(m.Seeds, ",")), peers, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range s.Problems {
		fmt.Fprintf(w, "ACT: %s\n", p)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
