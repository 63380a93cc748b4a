package framework

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook"
	"github.com/peergroup/peergroup/webhook/server"
)

// Webhook is a peergroup webhook server started by StartWebhook, serving
// on 127.0.0.1: in this process, or the compiled binary run as a process.
type Webhook struct {
	Port      int
	CertDir   string
	CABundle  []byte
	ProbeAddr string
	// Options are the parsed flags of a webhook run in this process.
	Options server.Options
	// Args is the command line of a webhook run as a process.
	Args []string
	// Cmd is the process, for a webhook run as a process.
	Cmd *exec.Cmd
	// process is how a webhook run as a process is started (again).
	process *processStart
	cancel  context.CancelFunc
	done    chan error
}

// processStart is what StartWebhook was given with Process, plus the
// release namespace, kept so Restart starts the same process again.
type processStart struct {
	binary, kubeconfig, ns string
	logs                   io.Writer
}

// URL is the loopback admission URL the API server is given: webhooks are
// registered by 127.0.0.1 URL, never by a Service reference, so nothing
// depends on cluster networking (docs/design.md, Testing without a cloud).
func (w *Webhook) URL() string {
	return "https://" + w.Addr() + webhook.Path
}

// DeploymentArgs returns the webhook container's args from the rendered chart.
func DeploymentArgs(r *Rendered) ([]string, error) {
	dep := &appsv1.Deployment{}
	if err := r.Typed("Deployment", dep); err != nil {
		return nil, err
	}
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "webhook" {
			return c.Args, nil
		}
	}
	return nil, errors.New("rendered Deployment has no webhook container")
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LoopbackServing prepares a free 127.0.0.1 port and a directory with a
// serving certificate for 127.0.0.1 signed by a fresh CA.
func LoopbackServing() (port int, certDir string, caBundle []byte, err error) {
	serving := &envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"}
	if err := serving.PrepWithoutInstalling(); err != nil {
		return 0, "", nil, fmt.Errorf("prepare serving certificates: %w", err)
	}
	return serving.LocalServingPort, serving.LocalServingCertDir, serving.LocalServingCAData, nil
}

// WebhookOption changes how StartWebhook runs the webhook.
type WebhookOption func(*webhookStart)

type webhookStart struct {
	as      *rest.Config
	args    []string
	process *processStart
}

// As runs an in-process webhook with client config cfg instead of the
// cluster's admin config: e.g. the chart's ServiceAccount, impersonated
// (ServiceAccountConfig), so it runs with exactly the chart's RBAC.
func As(cfg *rest.Config) WebhookOption {
	return func(s *webhookStart) { s.as = cfg }
}

// Args appends flags after the chart's args and the loopback overrides (the
// last flag wins, so they override both).
func Args(args ...string) WebhookOption {
	return func(s *webhookStart) { s.args = append(s.args, args...) }
}

// Process runs the compiled webhook binary, as the Deployment would, instead
// of the server in this process. Its client is the cluster in kubeconfig,
// which also decides its identity (so Process does not combine with As), and
// its output goes to logs.
func Process(binary, kubeconfig string, logs io.Writer) WebhookOption {
	return func(s *webhookStart) {
		s.process = &processStart{binary: binary, kubeconfig: kubeconfig, logs: logs}
	}
}

// StartWebhook runs the webhook for cluster c with the chart's Deployment
// args for release namespace ns, serving on 127.0.0.1, and waits until
// /readyz passes. Without options it runs in this process with c's admin
// config; As, Args and Process change that. Stop, Kill and Restart act on
// the webhook started either way.
func StartWebhook(ctx context.Context, c *Cluster, r *Rendered, ns string, opts ...WebhookOption) (*Webhook, error) {
	var s webhookStart
	for _, o := range opts {
		o(&s)
	}
	if s.process != nil && s.as != nil {
		return nil, errors.New("framework.As and framework.Process both given: a webhook process's identity is its kubeconfig")
	}
	// A port FreePort found free can be taken before the webhook binds it
	// (by any process's outgoing connection: ephemeral ports share the
	// range), and the webhook then exits before it is ready. Each attempt
	// takes fresh ports; a failure with another cause fails every attempt.
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var w *Webhook
		if w, err = startWebhookOnce(ctx, c, r, ns, s); err == nil {
			return w, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func startWebhookOnce(ctx context.Context, c *Cluster, r *Rendered, ns string, s webhookStart) (*Webhook, error) {
	w, args, err := newWebhook(r, s.args)
	if err != nil {
		return nil, err
	}
	if s.process != nil {
		s.process.ns = ns
		w.Args, w.process = args, s.process
		if err := w.startProcess(ctx); err != nil {
			return nil, err
		}
		return w, nil
	}
	getenv := func(k string) string {
		if k == "POD_NAMESPACE" {
			return ns
		}
		return ""
	}
	options, err := server.ParseFlags(args, getenv, "e2e", &bytes.Buffer{})
	if err != nil {
		return nil, fmt.Errorf("parse chart args %q: %w", args, err)
	}
	options.RestConfig = s.as
	if options.RestConfig == nil {
		options.RestConfig = c.Config
	}
	w.Options = options
	return w, w.Restart(ctx)
}

// newWebhook prepares loopback serving certificates and ports, and the
// args: the chart's Deployment args with loopback overrides appended, then
// extraArgs (the last flag wins, so the same chart args serve on loopback;
// docs/design.md, Testing without a cloud).
func newWebhook(r *Rendered, extraArgs []string) (*Webhook, []string, error) {
	args, err := DeploymentArgs(r)
	if err != nil {
		return nil, nil, err
	}
	probePort, err := FreePort()
	if err != nil {
		return nil, nil, err
	}
	w := &Webhook{ProbeAddr: "127.0.0.1:" + strconv.Itoa(probePort), done: make(chan error, 1)}
	if slices.Contains(args, "--self-signed") {
		// The webhook makes its own certificate; it only needs a port and
		// an empty directory. 127.0.0.1 is added to the certificate because
		// the local API server calls the webhook by that address.
		if w.Port, err = FreePort(); err != nil {
			return nil, nil, err
		}
		if w.CertDir, err = os.MkdirTemp("", "peergroup-selfsigned-"); err != nil {
			return nil, nil, err
		}
		args = append(args, "--cert-extra-sans=127.0.0.1")
	} else if w.Port, w.CertDir, w.CABundle, err = LoopbackServing(); err != nil {
		return nil, nil, err
	}
	args = append(args,
		"--host=127.0.0.1",
		"--port="+strconv.Itoa(w.Port),
		"--cert-dir="+w.CertDir,
		"--metrics-bind-address=0",
		"--health-probe-bind-address="+w.ProbeAddr,
		// No endpoints to drop a test's webhook from: Stop returns at once.
		// Tests of the graceful shutdown give the chart's delay back with
		// Args (ShutdownArgs).
		"--shutdown-delay=0s",
	)
	return w, append(args, extraArgs...), nil
}

// ServiceAccountConfig impersonates a ServiceAccount, so a component runs
// with exactly the RBAC granted to it.
func ServiceAccountConfig(admin *rest.Config, namespace, name string) *rest.Config {
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	return cfg
}

// Restart runs a stopped (or, for a process, killed) webhook again, the way
// StartWebhook started it: on the same port with the same certificates and
// args, and for a process the same kubeconfig and logs. It waits until the
// webhook is ready.
func (w *Webhook) Restart(ctx context.Context) error {
	if w.process != nil {
		return w.startProcess(ctx)
	}
	runCtx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	w.done = make(chan error, 1)
	go func() { w.done <- server.Run(runCtx, w.Options) }()
	if err := w.waitReady(ctx); err != nil {
		w.Stop()
		return err
	}
	return nil
}

// startProcess starts the webhook binary with w.Args and waits until it is
// ready. Interrupting it (Stop) is the graceful shutdown a Pod gets.
func (w *Webhook) startProcess(ctx context.Context) error {
	p := w.process
	runCtx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	w.done = make(chan error, 1)
	cmd := exec.CommandContext(runCtx, p.binary, w.Args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+p.kubeconfig, "POD_NAMESPACE="+p.ns)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	if err := cmd.Start(); err != nil {
		cancel()
		return fmt.Errorf("start %s: %w", p.binary, err)
	}
	w.Cmd = cmd
	done := w.done
	go func() { done <- cmd.Wait() }()
	if err := w.waitReady(ctx); err != nil {
		w.Stop()
		return err
	}
	return nil
}

// Terminate stops a webhook process with SIGTERM, as the kubelet does when
// its pod is deleted, and waits (at most a minute) for it to exit. It
// returns the process's exit: nil for status 0.
func (w *Webhook) Terminate() error {
	if w.Cmd == nil || w.Cmd.Process == nil {
		return errors.New("not a webhook process")
	}
	if err := w.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-w.done:
		w.done <- err // a later Stop returns at once
		w.cancel()
		return err
	case <-time.After(time.Minute):
		return errors.New("webhook process still running a minute after SIGTERM")
	}
}

// ShutdownArgs are the chart's shutdown flags from its Deployment args, to
// give back (Args) to a webhook whose shutdown is under test.
func ShutdownArgs(r *Rendered) ([]string, error) {
	args, err := DeploymentArgs(r)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "--shutdown-delay=") || strings.HasPrefix(a, "--drain-timeout=") {
			out = append(out, a)
		}
	}
	if len(out) != 2 {
		return nil, fmt.Errorf("chart args %q lack --shutdown-delay or --drain-timeout", args)
	}
	return out, nil
}

// Kill ends a webhook process with SIGKILL, as the OOM killer or a node
// failure would: no graceful shutdown.
func (w *Webhook) Kill() error {
	if w.Cmd == nil || w.Cmd.Process == nil {
		return errors.New("not a webhook process")
	}
	if err := w.Cmd.Process.Kill(); err != nil {
		return err
	}
	<-w.done
	w.cancel()
	return nil
}

func (w *Webhook) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-w.done:
			return fmt.Errorf("webhook exited before ready: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get("http://" + w.ProbeAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	detail := ""
	if resp, err := http.Get("http://" + w.ProbeAddr + "/readyz?verbose=1"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		detail = string(body)
	}
	return fmt.Errorf("webhook not ready after 30s: %s", detail)
}

// Stop stops the webhook and waits for it to exit.
func (w *Webhook) Stop() {
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
	}
}

// TLSClient trusts the webhook's CA, for posting AdmissionReviews directly.
func (w *Webhook) TLSClient() *http.Client { return TLSClient(w.CABundle, "") }

// TLSClient trusts caBundle and, when serverName is set, verifies that name
// instead of the dialled address. Connections are not reused, so every
// request sees the certificate served at that moment.
func TLSClient(caBundle []byte, serverName string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: x509Pool(caBundle), ServerName: serverName, MinVersion: tls.VersionTLS12},
	}}
}

// Addr is the webhook's loopback host:port.
func (w *Webhook) Addr() string { return "127.0.0.1:" + strconv.Itoa(w.Port) }

// RegisterOption changes what RegisterWebhook creates.
type RegisterOption func(*registration)

type registration struct {
	nameSuffix   string
	mutatingOnly bool
	tweaks       []func(*admissionregistrationv1.MutatingWebhook)
}

// NameSuffix appends suffix to the configurations' names, to register a
// second copy next to the first.
func NameSuffix(suffix string) RegisterOption {
	return func(r *registration) { r.nameSuffix += suffix }
}

// MutatingOnly registers the MutatingWebhookConfiguration alone, as an
// installation without the validating phase (or before it) has it.
func MutatingOnly() RegisterOption {
	return func(r *registration) { r.mutatingOnly = true }
}

// Tweak applies tweak to each webhook entry after its clientConfig is set
// (e.g. a narrower namespaceSelector); several apply in order, nil is
// ignored. The validating entries are made from the tweaked ones, so both
// phases stay alike.
func Tweak(tweak func(*admissionregistrationv1.MutatingWebhook)) RegisterOption {
	return func(r *registration) {
		if tweak != nil {
			r.tweaks = append(r.tweaks, tweak)
		}
	}
}

// Registration is what RegisterWebhook created.
type Registration struct {
	Mutating *admissionregistrationv1.MutatingWebhookConfiguration
	// Validating is nil with MutatingOnly.
	Validating *admissionregistrationv1.ValidatingWebhookConfiguration
}

// Delete removes both configurations (a missing one is no error).
func (r *Registration) Delete(ctx context.Context, c *Cluster) error {
	return DeleteWebhook(ctx, c, r.Mutating.Name)
}

// DeleteWebhook removes the configurations of both phases named name.
func DeleteWebhook(ctx context.Context, c *Cluster, name string) error {
	var errs []error
	for _, obj := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		obj.SetName(name)
		if err := c.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RegisterWebhook creates the chart's MutatingWebhookConfiguration and
// ValidatingWebhookConfiguration with every selector and policy as
// rendered, but with each clientConfig pointing at url (a 127.0.0.1 URL,
// never a Service reference: docs/design.md, Testing without a cloud) and
// trusting caBundle; the validating entries at url with its path
// webhook.Path replaced by webhook.ValidatePath.
func RegisterWebhook(ctx context.Context, c *Cluster, r *Rendered, url string, caBundle []byte, opts ...RegisterOption) (*Registration, error) {
	var reg registration
	for _, o := range opts {
		o(&reg)
	}
	mwc, err := RenderedWebhookConfig(r)
	if err != nil {
		return nil, err
	}
	mwc.Name += reg.nameSuffix
	for i := range mwc.Webhooks {
		u := url
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: caBundle}
		for _, tweak := range reg.tweaks {
			tweak(&mwc.Webhooks[i])
		}
	}
	out := &Registration{Mutating: mwc}
	if !reg.mutatingOnly {
		if !strings.HasSuffix(url, webhook.Path) {
			return nil, fmt.Errorf("register %s: the URL must end in %s, to derive the validating one", url, webhook.Path)
		}
		out.Validating = ValidatingFor(mwc, strings.TrimSuffix(url, webhook.Path)+webhook.ValidatePath)
	}
	if err := c.Client.Create(ctx, mwc); err != nil {
		return nil, fmt.Errorf("create MutatingWebhookConfiguration %s: %w", mwc.Name, err)
	}
	if out.Validating != nil {
		if err := c.Client.Create(ctx, out.Validating); err != nil {
			_ = c.Client.Delete(ctx, mwc)
			return nil, fmt.Errorf("create ValidatingWebhookConfiguration %s: %w", mwc.Name, err)
		}
	}
	return out, nil
}

// ValidatingFor is the ValidatingWebhookConfiguration the chart renders
// beside mwc: the same name and entries, each calling url (empty: the same
// clientConfig as the mutating entry, with the validating path), without a
// reinvocationPolicy, the namespace-label entry only for pods without the
// group label.
func ValidatingFor(mwc *admissionregistrationv1.MutatingWebhookConfiguration, url string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mwc.Name, Labels: mwc.Labels, Annotations: mwc.Annotations}}
	for _, m := range mwc.Webhooks {
		cc := *m.ClientConfig.DeepCopy()
		if url != "" {
			u := url
			cc.URL = &u
		} else if cc.Service != nil {
			cc.Service.Path = ptr.To(webhook.ValidatePath)
		}
		objects := m.ObjectSelector.DeepCopy()
		if m.Name == webhook.EntryNamespaceLabel && objects != nil {
			// No reinvocation here: every member carries the group label
			// by now and is sent by the pod-label entry alone.
			objects.MatchExpressions = append(objects.MatchExpressions, metav1.LabelSelectorRequirement{Key: contract.GroupLabel, Operator: metav1.LabelSelectorOpDoesNotExist})
		}
		vwc.Webhooks = append(vwc.Webhooks, admissionregistrationv1.ValidatingWebhook{
			Name: m.Name, ClientConfig: cc, Rules: m.Rules, FailurePolicy: m.FailurePolicy, MatchPolicy: m.MatchPolicy,
			NamespaceSelector: m.NamespaceSelector, ObjectSelector: objects, SideEffects: m.SideEffects,
			TimeoutSeconds: m.TimeoutSeconds, AdmissionReviewVersions: m.AdmissionReviewVersions, MatchConditions: m.MatchConditions,
		})
	}
	return vwc
}

// RenderedWebhookConfig is the chart's MutatingWebhookConfiguration, typed.
func RenderedWebhookConfig(r *Rendered) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	return mwc, r.Typed("MutatingWebhookConfiguration", mwc)
}

// WaitForInjection polls with server-side dry-run pod creates in namespace
// ns until the API server has picked up the webhook configuration (it
// watches configurations, so a fresh one takes a moment to be called).
func WaitForInjection(ctx context.Context, c *Cluster, ns string) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		pod := &corev1.Pod{}
		pod.Namespace = ns
		pod.GenerateName = "probe-"
		pod.Labels = map[string]string{"peergroup.dev/group": "readiness-probe"}
		pod.Spec.Containers = []corev1.Container{{Name: "c", Image: "busybox"}}
		err := c.Client.Create(ctx, pod, client.DryRunAll)
		if err == nil {
			for _, ic := range pod.Spec.InitContainers {
				if ic.Name == "seed-discovery" {
					return nil
				}
			}
			last = errors.New("dry-run pod was not injected yet")
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("webhook never took effect: %w", last)
}

func x509Pool(pemData []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	return pool
}

// ApplyIdentity creates the chart's ServiceAccount and RBAC objects, and
// the policy that narrows what its ServiceAccount may do to pods, so the
// webhook can run with exactly those permissions (ServiceAccountConfig).
func ApplyIdentity(ctx context.Context, c *Cluster, r *Rendered) error {
	for _, obj := range r.Objects {
		switch obj.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
			"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			if err := c.Client.Create(ctx, obj.DeepCopy()); err != nil {
				return fmt.Errorf("create %s %s: %w", obj.GetKind(), obj.GetName(), err)
			}
		}
	}
	return nil
}
