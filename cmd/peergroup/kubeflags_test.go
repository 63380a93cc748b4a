package main

import (
	"context"
	"strings"
	"testing"
)

func TestKubeFlagsExtracted(t *testing.T) {
	for _, tc := range []struct {
		args             []string
		rest             string
		ns               string
		explicit, all    bool
		context, kubecfg string
	}{
		{[]string{"-n", "db", "--output", "json"}, "--output json", "db", true, false, "", ""},
		{[]string{"-n=db"}, "", "db", true, false, "", ""},
		// Go's single-dash long flags stay the command's.
		{[]string{"-namespace-group=nats", "-seed-discovery-image=x"}, "-namespace-group=nats -seed-discovery-image=x", "", false, false, "", ""},
		{[]string{"--namespace=db", "nats"}, "nats", "db", true, false, "", ""},
		{[]string{"nats", "--context", "prod", "--kubeconfig=/k", "-A"}, "nats", "", false, true, "prod", "/k"},
		{[]string{"-f", "pod.yaml", "--namespace-group", "x", "--", "-n"}, "-f pod.yaml --namespace-group x -- -n", "", false, false, "", ""},
	} {
		k := newKubeFlags()
		rest, err := k.extract(tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if got := strings.Join(rest, " "); got != tc.rest {
			t.Errorf("%q: rest %q, want %q", tc.args, got, tc.rest)
		}
		if k.set.Changed("namespace") != tc.explicit || (tc.explicit && *k.config.Namespace != tc.ns) {
			t.Errorf("%q: namespace %q (given %v), want %q", tc.args, *k.config.Namespace, k.set.Changed("namespace"), tc.ns)
		}
		if k.allNamespaces != tc.all || *k.config.Context != tc.context || *k.config.KubeConfig != tc.kubecfg {
			t.Errorf("%q: -A %v context %q kubeconfig %q", tc.args, k.allNamespaces, *k.config.Context, *k.config.KubeConfig)
		}
	}
	if _, err := newKubeFlags().extract([]string{"status", "--context"}); err == nil || !strings.Contains(err.Error(), "needs a value") {
		t.Errorf("a flag without its value: %v", err)
	}
}

// inject reads no cluster: its own --namespace (and Go's single-dash long
// flags) stay its own.
func TestInjectKeepsItsOwnFlags(t *testing.T) {
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {peergroup.dev/group: nats}}\nspec: {containers: [{name: c, image: x}]}\n"
	for _, tc := range []struct {
		args     []string
		injected bool
	}{
		{[]string{"inject", "--namespace", "kube-system", "-"}, false}, // excluded namespace
		{[]string{"inject", "--namespace", "apps", "-"}, true},
		{[]string{"inject", "-namespace=apps", "-"}, true},
	} {
		var out, errOut strings.Builder
		code := run(context.Background(), tc.args, strings.NewReader(pod), &out, &errOut)
		if code != 0 || strings.Contains(out.String(), "name: seed-discovery") != tc.injected {
			t.Errorf("%q: exit %d, injected %v, want %v\n%s%s", tc.args, code, !tc.injected, tc.injected, out.String(), errOut.String())
		}
	}
}
