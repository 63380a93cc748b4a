package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/inspect"
	"github.com/peergroup/peergroup/webhook/admit"
)

func explain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("explain", stderr)
	file := fs.String("f", "", "a pod (or a workload: its pod template) from a file, or - for standard input; instead of NAMESPACE/NAME")
	nsGroup := fs.String("namespace-group", "", "offline: stands in for the namespace label peergroup.dev/group")
	noCluster := fs.Bool("offline", false, "do not contact the cluster (with -f): no namespace labels, webhook configuration or Service")
	configName := fs.String("webhook-config", defaultWebhookConfig, "name of the MutatingWebhookConfiguration to evaluate (default: peergroup, else the one labelled app.kubernetes.io/name=peergroup)")
	output := outputFlag(fs)
	cfg, positional, err := parse(fs, args)
	if err != nil {
		return 2, err
	}
	// One argument is a file when it is "-", names an existing file or
	// ends like a manifest; otherwise NAMESPACE/NAME in the cluster.
	target := ""
	if *file == "" && len(positional) == 1 && isManifestArg(positional[0]) {
		*file, positional = positional[0], nil
	}
	fromFile, fromCluster := *file != "" && len(positional) == 0, *file == "" && len(positional) == 1
	if !fromFile && !fromCluster {
		return 2, fmt.Errorf("explain: give either a file (-f FILE, FILE, or - for standard input) or NAMESPACE/NAME; got %q", positional)
	}
	if fromCluster {
		target = positional[0]
	}
	if *noCluster && *file == "" {
		return 2, errors.New("explain: --offline needs -f")
	}
	var pod *corev1.Pod
	if *file != "" {
		in, err := readInput(*file, stdin)
		if err != nil {
			return 2, err
		}
		if pod, err = inspect.PodFromManifest(in); err != nil {
			return 2, err
		}
		if pod.Namespace == "" {
			// -n, else (in the cluster) the context's namespace, else
			// default: where kubectl apply would create it.
			pod.Namespace = "default"
			if ns, explicit, err := kube.namespace(); explicit || (err == nil && !*noCluster) {
				pod.Namespace = ns
			}
		}
	}
	input := inspect.ExplainInput{Pod: pod, Config: *cfg}
	if *nsGroup != "" {
		input.NamespaceLabels = map[string]string{contract.GroupLabel: *nsGroup}
	}
	if !*noCluster {
		c, err := newClient()
		if err != nil {
			return 2, err
		}
		if pod == nil {
			ns, name, ok := strings.Cut(target, "/")
			if !ok || ns == "" || name == "" {
				return 2, fmt.Errorf("explain: %q is neither a file nor NAMESPACE/NAME", target)
			}
			pod = &corev1.Pod{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod); err != nil {
				return 2, fmt.Errorf("read pod %s: %w", target, err)
			}
			input.Pod = pod
		}
		if err := lookUp(ctx, c, &input, *configName, *nsGroup != ""); err != nil {
			return 2, err
		}
	}
	e := inspect.Explain(input)
	if err := printExplanation(stdout, e, *output); err != nil {
		return 2, err
	}
	if e.Verdict == inspect.VerdictDenied {
		return 1, nil
	}
	return 0, nil
}

// lookUp fills in what the cluster knows: namespace labels (unless given),
// the webhook configuration, and the group's Service.
func lookUp(ctx context.Context, c client.Client, in *inspect.ExplainInput, configName string, haveNSLabels bool) error {
	if !haveNSLabels {
		ns := &corev1.Namespace{}
		if err := c.Get(ctx, client.ObjectKey{Name: in.Pod.Namespace}, ns); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("read namespace %s: %w", in.Pod.Namespace, err)
		}
		in.NamespaceLabels = ns.Labels
	}
	mwc, err := webhookConfig(ctx, c, configName)
	switch {
	case err == nil:
		in.Webhooks = mwc
	case apierrors.IsNotFound(err):
		in.Webhooks = notInstalled(configName)
	default:
		return err
	}
	limitRanges := &corev1.LimitRangeList{}
	if err := c.List(ctx, limitRanges, client.InNamespace(in.Pod.Namespace)); err != nil {
		return fmt.Errorf("list LimitRanges of namespace %s: %w", in.Pod.Namespace, err)
	}
	in.LimitRanges = append([]corev1.LimitRange{}, limitRanges.Items...)
	in.PullSecrets = map[string]string{}
	for _, name := range in.Config.ImagePullSecrets {
		// Metadata only: whether it exists, never its data.
		secret := &metav1.PartialObjectMetadata{}
		secret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		switch err := c.Get(ctx, client.ObjectKey{Namespace: in.Pod.Namespace, Name: name}, secret); {
		case apierrors.IsNotFound(err):
			in.PullSecrets[name] = "missing"
		case err != nil:
			in.PullSecrets[name] = "not checked: " + err.Error()
		}
	}
	if m, err := admit.ResolveGroup(in.Pod, in.NamespaceLabels); err == nil && m.Member() {
		svc := &corev1.Service{}
		switch err := c.Get(ctx, client.ObjectKey{Namespace: in.Pod.Namespace, Name: m.Service}, svc); {
		case err == nil:
			in.Service = svc
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("read Service %s/%s: %w", in.Pod.Namespace, m.Service, err)
		}
		in.ServiceKnown = true
	}
	return nil
}

func printExplanation(w io.Writer, e inspect.Explanation, output string) error {
	if err := checkOutput(output); err != nil {
		return err
	}
	if output == "json" {
		return writeJSON(w, e)
	}
	fmt.Fprintf(w, "pod %s: %s\n  why: %s\n", e.Pod, e.Verdict, e.Reason)
	if e.Group != "" {
		fmt.Fprintf(w, "  group: %s (from the %s)\n  service: %s", e.Group, strings.ReplaceAll(string(e.Source), "-", " "), e.Service)
		if e.ServiceState != "" {
			fmt.Fprintf(w, " (%s)", e.ServiceState)
		}
		fmt.Fprintln(w)
	}
	for _, m := range e.Entries {
		state := "does not match"
		if m.Matches {
			state = "matches"
		}
		fmt.Fprintf(w, "  webhook entry %s %s: %s\n", m.Name, state, m.Why)
	}
	for _, warning := range e.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warning)
	}
	return nil
}

// isManifestArg reports whether explain's one argument is a file: "-",
// an existing file, or, unless it reads as NAMESPACE/NAME (pod names may
// end in .json), a name ending in .yaml, .yml or .json.
func isManifestArg(arg string) bool {
	if arg == "-" {
		return true
	}
	if info, err := os.Stat(arg); err == nil {
		return info.Mode().IsRegular()
	}
	if ns, name, ok := strings.Cut(arg, "/"); ok && len(validation.IsDNS1123Label(ns)) == 0 && len(validation.IsDNS1123Subdomain(name)) == 0 {
		return false
	}
	return strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml") || strings.HasSuffix(arg, ".json")
}
