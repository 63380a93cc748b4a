package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/inspect"
	"github.com/peergroup/peergroup/webhook/admit"
)

// loadConfig reads KUBECONFIG (or --kubeconfig) the way kubectl does.
func loadConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return cfg, nil
}

// newClient is a client for the cluster of KUBECONFIG (or --kubeconfig).
func newClient(kubeconfig string) (client.Client, error) {
	cfg, err := loadConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

func explain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("explain", stderr)
	file := fs.String("f", "", "a pod (or a workload: its pod template) from a file, or - for standard input; instead of NAMESPACE/NAME")
	namespace := fs.String("namespace", "default", "with -f: the namespace the pod would be created in, when it has none")
	nsGroup := fs.String("namespace-group", "", "offline: stands in for the namespace label peergroup.dev/group")
	noCluster := fs.Bool("offline", false, "do not contact the cluster (with -f): no namespace labels, webhook configuration or Service")
	configName := fs.String("webhook-config", defaultWebhookConfig, "name of the MutatingWebhookConfiguration to evaluate (default: peergroup, else the one labelled app.kubernetes.io/name=peergroup)")
	kubeconfig, output := clusterFlags(fs)
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
			pod.Namespace = *namespace
		}
	}
	input := inspect.ExplainInput{Pod: pod, Config: *cfg}
	if *nsGroup != "" {
		input.NamespaceLabels = map[string]string{contract.GroupLabel: *nsGroup}
	}
	if !*noCluster {
		c, err := newClient(*kubeconfig)
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

// checkOutput refuses an --output other than text or json.
func checkOutput(output string) error {
	if output != "text" && output != "json" {
		return fmt.Errorf("--output %q: want text or json", output)
	}
	return nil
}

// writeJSON writes v indented, ending with a newline: every command's
// --output json.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
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

func audit(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("audit", stderr)
	namespace := fs.String("n", "", "only this namespace (default: all)")
	webhookNS := fs.String("webhook-namespace", "peergroup-system", "the webhook's own namespace, never injected")
	configName := fs.String("webhook-config", defaultWebhookConfig, "name of the MutatingWebhookConfiguration whose entries decide which replacements peergroup is sent (default: peergroup, else the one labelled app.kubernetes.io/name=peergroup)")
	fix := fixFlags(fs)
	kubeconfig, output := clusterFlags(fs)
	cfg, positional, err := parse(fs, args)
	if err != nil {
		return 2, err
	}
	if len(positional) > 0 {
		return 2, fmt.Errorf("audit: unexpected arguments %q (the namespace is -n NAMESPACE)", positional)
	}
	if err := fix.validate(); err != nil {
		return 2, err
	}
	if err := checkOutput(*output); err != nil {
		return 2, err
	}
	cfg.ExcludedNamespaces = append(cfg.ExcludedNamespaces, *webhookNS)
	c, err := newClient(*kubeconfig)
	if err != nil {
		return 2, err
	}
	namespaces := &corev1.NamespaceList{}
	if err := c.List(ctx, namespaces); err != nil {
		return 2, fmt.Errorf("list namespaces: %w", err)
	}
	nsLabels := map[string]map[string]string{}
	for _, ns := range namespaces.Items {
		nsLabels[ns.Name] = ns.Labels
	}
	pods := &corev1.PodList{}
	var opts []client.ListOption
	if *namespace != "" {
		opts = append(opts, client.InNamespace(*namespace))
	}
	if err := c.List(ctx, pods, opts...); err != nil {
		return 2, fmt.Errorf("list pods: %w", err)
	}
	cluster, err := auditLookUp(ctx, c, nsLabels, opts, *configName, stderr)
	if err != nil {
		return 2, err
	}
	if fix.Fix {
		return auditFix(ctx, c, auditState{Pods: pods.Items, Cluster: cluster, Config: *cfg, Output: *output, Kubeconfig: *kubeconfig}, *fix, stdout)
	}
	findings := inspect.Uninjected(pods.Items, cluster, *cfg)
	if *output == "json" {
		if findings == nil {
			findings = []inspect.Finding{}
		}
		if err := writeJSON(stdout, findings); err != nil {
			return 2, err
		}
	} else {
		printFindings(stdout, findings, len(pods.Items))
	}
	if len(findings) > 0 {
		return 1, nil
	}
	return 0, nil
}

// auditLookUp reads what the webhook decides with besides the pod: the
// Services and LimitRanges of the namespaces audited, and the live webhook
// configuration (a user who may not read it is told, and the entries are
// not matched).
func auditLookUp(ctx context.Context, c client.Client, nsLabels map[string]map[string]string, opts []client.ListOption, configName string, stderr io.Writer) (inspect.AuditCluster, error) {
	cluster := inspect.AuditCluster{NamespaceLabels: nsLabels}
	services := &corev1.ServiceList{}
	if err := c.List(ctx, services, opts...); err != nil {
		return cluster, fmt.Errorf("list services: %w", err)
	}
	limitRanges := &corev1.LimitRangeList{}
	if err := c.List(ctx, limitRanges, opts...); err != nil {
		return cluster, fmt.Errorf("list limitranges: %w", err)
	}
	cluster.Services, cluster.LimitRanges = append([]corev1.Service{}, services.Items...), append([]corev1.LimitRange{}, limitRanges.Items...)
	switch mwc, err := webhookConfig(ctx, c, configName); {
	case err == nil:
		cluster.Webhooks = mwc
	case apierrors.IsNotFound(err):
		// Nothing sends a replacement to peergroup: none is recreated
		// injected (as explain says it).
		cluster.Webhooks = notInstalled(configName)
	case apierrors.IsForbidden(err):
		fmt.Fprintf(stderr, "warning: cannot read MutatingWebhookConfiguration %s (%v): which pods it sends to peergroup is not checked\n", configName, err)
	default:
		return cluster, err
	}
	return cluster, nil
}

// notInstalled stands for a webhook configuration that does not exist: it
// has no entry, so no pod is sent to peergroup, and its name says why.
func notInstalled(name string) *admissionregistrationv1.MutatingWebhookConfiguration {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	mwc.Name = name + " (not found: peergroup is not installed under this name, --webhook-config)"
	return mwc
}

// defaultWebhookConfig is --webhook-config's default: the chart's name
// for a release named peergroup.
const defaultWebhookConfig = "peergroup"

// webhookConfig reads the MutatingWebhookConfiguration name. The chart
// names it after the release (`helm install pg` makes pg-peergroup), so
// when the default name is not found, the one configuration labelled
// app.kubernetes.io/name=peergroup is taken; several are an error that
// asks for --webhook-config. A NotFound error means there is none.
func webhookConfig(ctx context.Context, c client.Client, name string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	err := c.Get(ctx, client.ObjectKey{Name: name}, mwc)
	if err == nil || !apierrors.IsNotFound(err) || name != defaultWebhookConfig {
		if err != nil && !apierrors.IsNotFound(err) {
			err = fmt.Errorf("read MutatingWebhookConfiguration %s: %w", name, err)
		}
		return mwc, err
	}
	list := &admissionregistrationv1.MutatingWebhookConfigurationList{}
	if lerr := c.List(ctx, list, client.MatchingLabels{"app.kubernetes.io/name": "peergroup"}); apierrors.IsForbidden(lerr) {
		return nil, err // not allowed to look further: as not found
	} else if lerr != nil {
		return nil, fmt.Errorf("list MutatingWebhookConfigurations labelled app.kubernetes.io/name=peergroup: %w", lerr)
	}
	switch len(list.Items) {
	case 0:
		return nil, err
	case 1:
		return &list.Items[0], nil
	}
	names := make([]string, len(list.Items))
	for i, m := range list.Items {
		names[i] = m.Name
	}
	return nil, fmt.Errorf("%d peergroup webhook configurations (%s): name one with --webhook-config", len(names), strings.Join(names, ", "))
}

func printFindings(w io.Writer, findings []inspect.Finding, checked int) {
	if len(findings) == 0 {
		fmt.Fprintf(w, "%d pods checked: every group member carries the injection\n", checked)
		return
	}
	byNS := map[string][]inspect.Finding{}
	for _, f := range findings {
		byNS[f.Namespace] = append(byNS[f.Namespace], f)
	}
	names := make([]string, 0, len(byNS))
	for ns := range byNS {
		names = append(names, ns)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "%d pods checked: %d group members without the injection (admitted while the webhook was down with failurePolicy Ignore, or created before peergroup was installed); recreate them to inject\n", checked, len(findings))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, ns := range names {
		fmt.Fprintf(tw, "\nnamespace %s\tGROUP\tREASON\n", ns)
		for _, f := range byNS[ns] {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Pod, f.Group, f.Reason)
		}
	}
	tw.Flush()
}
