package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/certs"
	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook"
	"github.com/peergroup/peergroup/webhook/admit"
)

// Run serves admission requests until ctx is cancelled.
func Run(ctx context.Context, o Options) error {
	log := zap.New(zap.Level(zapLevel(o.LogLevel)))
	ctrl.SetLogger(log)
	ctx = ctrl.LoggerInto(ctx, log)

	var err error
	cfg := o.RestConfig
	if cfg == nil {
		if cfg, err = ctrl.GetConfig(); err != nil {
			return fmt.Errorf("load cluster config (KUBECONFIG or in-cluster): %w", err)
		}
	}
	sd := &shutdown{delay: o.ShutdownDelay}
	var keeper *certs.Keeper
	if o.SelfSigned {
		if keeper, err = startKeeper(ctx, cfg, o, log); err != nil {
			return err
		}
	}
	verifier, err := o.clientVerifier()
	if err != nil {
		return err
	}
	mgr, err := newManager(cfg, o, sd, verifier)
	if err != nil {
		return err
	}
	if keeper != nil {
		if err := mgr.Add(keeper); err != nil {
			return fmt.Errorf("add certificate keeper: %w", err)
		}
		var self *tls.Certificate
		if verifier != nil {
			self = &verifier.self
		}
		if err := mgr.AddReadyzCheck("certificate-trusted", keeper.ReadyCheck(certs.ServingAddr(o.Host, o.Port), self)); err != nil {
			return fmt.Errorf("add readyz check: %w", err)
		}
	}
	log.Info("starting peergroup webhook", "version", o.Mutation.Version, "port", o.Port, "certDir", o.CertDir,
		"seedDiscoveryImage", o.Mutation.SeedDiscoveryImage, "excludedNamespaces", o.Mutation.ExcludedNamespaces,
		"clientCAFile", o.ClientAuth.CAFile, "clientCertNames", o.ClientAuth.Names)
	mgrCtx, stop := sd.start(ctx, log)
	defer stop()
	if err := mgr.Start(mgrCtx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	log.Info("stopped")
	return nil
}

// startKeeper writes a valid certificate before the server starts (the
// server needs the files), retrying while the API server is unreachable.
// The configuration may not exist yet (Helm creates webhook configurations
// last): the keeper then writes the files at once, since nothing calls the
// webhook, and its watch patches the caBundle when the configuration
// appears; readiness waits for that.
func startKeeper(ctx context.Context, cfg *rest.Config, o Options, log logr.Logger) (*certs.Keeper, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create clientset: %w", err)
	}
	keeper, err := certs.NewKeeper(o.Certs, cs, log)
	if err != nil {
		return nil, err
	}
	for delay := 500 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		err := keeper.Sync(ctx)
		if err == nil {
			return keeper, nil
		}
		if keeper.Serving() {
			// The files are written; only the caBundle patch failed. The
			// watch and the resync retry it, and readiness waits for it.
			log.Info("caBundle not patched yet", "reason", err.Error())
			return keeper, nil
		}
		log.Error(err, "initial certificate sync failed; retrying", "in", delay)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("initial certificate sync: %w", err)
		case <-time.After(delay):
		}
	}
}

// NewManager builds the manager: webhook server, caches, probes, metrics.
// Run adds the graceful shutdown around it.
func NewManager(cfg *rest.Config, o Options) (manager.Manager, error) {
	v, err := o.clientVerifier()
	if err != nil {
		return nil, err
	}
	return newManager(cfg, o, &shutdown{delay: o.ShutdownDelay}, v)
}

// clientVerifier is nil unless client certificates are required.
func (o Options) clientVerifier() (*clientVerifier, error) {
	if !o.ClientAuth.Enabled() {
		return nil, nil
	}
	return newClientVerifier(o.ClientAuth, ctrl.Log.WithName("client-auth"))
}

func newManager(cfg *rest.Config, o Options, sd *shutdown, verifier *clientVerifier) (manager.Manager, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("build scheme: %w", err)
	}
	tlsOpts := TLSOptions()
	if verifier != nil {
		tlsOpts = append(tlsOpts, verifier.tlsOption)
	}
	server := ctrlwebhook.NewServer(ctrlwebhook.Options{
		Host:    o.Host,
		Port:    o.Port,
		CertDir: o.CertDir,
		TLSOpts: tlsOpts,
	})
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:                 scheme,
		WebhookServer:          server,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress: o.HealthProbeBindAddress,
		// Bounds the drain after the shutdown delay: the webhook server
		// waits for admissions in flight (its own bound, a minute, is
		// longer), and Start returns an error if they overrun.
		GracefulShutdownTimeout: ptr.To(o.DrainTimeout),
		Cache: cache.Options{
			// Cache only what the webhook reads, so memory grows with the
			// number of Services, not with their size.
			DefaultTransform: trimCached,
			// Invariant: nothing in the webhook writes to an object read
			// from the cache, so a Get may hand out the cached object
			// itself instead of a deep copy per admission.
			DefaultUnsafeDisableDeepCopy: ptr.To(true),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create manager: %w", err)
	}

	// Start the informers before serving so the first admissions hit a
	// warm cache; readiness waits for them.
	nsMeta := &metav1.PartialObjectMetadata{}
	nsMeta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	for _, obj := range []client.Object{&corev1.Service{}, nsMeta, &corev1.LimitRange{}} {
		if _, err := mgr.GetCache().GetInformer(context.Background(), obj, cache.BlockUntilSynced(false)); err != nil {
			return nil, fmt.Errorf("start informer for %T: %w", obj, err)
		}
	}

	phase, err := addValidationWatch(mgr, cfg, scheme, o)
	if err != nil {
		return nil, err
	}

	decider := admit.Decider{
		Config:         o.Mutation,
		Namespaces:     &webhook.CachedNamespaceLabels{Cache: mgr.GetClient(), Live: mgr.GetAPIReader()},
		Services:       &webhook.ClusterServiceEnsurer{Cache: mgr.GetClient(), Live: mgr.GetAPIReader(), Writer: mgr.GetClient()},
		InitContainers: &admit.InitContainerCache{},
		LimitRanges:    &webhook.CachedLimitRanges{Cache: mgr.GetClient()},
	}
	if phase != nil {
		decider.Validation = phase
	}
	counters, events := webhook.NewMetrics(metrics.Registry), &webhook.Events{Recorder: mgr.GetEventRecorder("peergroup-webhook"), Namespaces: mgr.GetClient()}
	if err := addPeerControllers(mgr, cfg, scheme, decider, events); err != nil {
		return nil, err
	}
	// GetWebhookServer also adds the server to the manager's runnables.
	mgr.GetWebhookServer().Register(webhook.Path, sd.wrap(&webhook.HTTPHandler{
		Webhook: &admission.Webhook{Handler: &webhook.Handler{Decider: decider, Metrics: counters, Events: events}},
	}))
	mgr.GetWebhookServer().Register(webhook.ValidatePath, sd.wrap(&webhook.HTTPHandler{
		Webhook: &admission.Webhook{Handler: &webhook.ValidatingHandler{Decider: decider, Metrics: counters, Events: events, Phase: phase}},
	}))

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("add healthz check: %w", err)
	}
	serving := server.StartedChecker()
	if verifier != nil {
		serving = verifier.servingCheck(certs.ServingAddr(o.Host, o.Port))
	}
	if err := mgr.AddReadyzCheck("webhook-serving", serving); err != nil {
		return nil, fmt.Errorf("add readyz check: %w", err)
	}
	if err := mgr.AddReadyzCheck("cache-synced", cacheSynced(mgr.GetCache())); err != nil {
		return nil, fmt.Errorf("add readyz check: %w", err)
	}
	if err := mgr.AddReadyzCheck("shutting-down", sd.readyCheck); err != nil {
		return nil, fmt.Errorf("add readyz check: %w", err)
	}
	return mgr, nil
}

// addPeerControllers runs, in every replica (both act idempotently), the
// controllers that watch member pods: terminating-peers takes terminating
// peers out of their group's DNS (webhook.TerminatingPeers), and
// missing-services creates the Service of a new member stored without one
// (webhook.MissingServices). They are best effort beside admission: their
// pod cache is their own, so readiness never waits for it, and a
// controller that cannot start (pods not readable: RBAC drift) is logged,
// never stops the webhook. Of pods it caches only the metadata of peers,
// so memory grows with the members of peer groups, not with the cluster's
// pods.
func addPeerControllers(mgr manager.Manager, cfg *rest.Config, scheme *runtime.Scheme, decider admit.Decider, events *webhook.Events) error {
	peers, err := cache.New(cfg, cache.Options{
		Scheme:                       scheme,
		HTTPClient:                   mgr.GetHTTPClient(),
		Mapper:                       mgr.GetRESTMapper(),
		DefaultTransform:             trimCached,
		DefaultUnsafeDisableDeepCopy: ptr.To(true),
		ByObject: map[client.Object]cache.ByObject{
			webhook.PodMeta(): {Label: labels.SelectorFromSet(labels.Set{contract.PeerLabel: contract.PeerValue})},
		},
	})
	if err != nil {
		return fmt.Errorf("create the peers' cache: %w", err)
	}
	if err := mgr.Add(peers); err != nil {
		return fmt.Errorf("add the peers' cache: %w", err)
	}
	retiring := predicate.NewTypedPredicateFuncs(func(o *metav1.PartialObjectMetadata) bool { return webhook.Retiring(o) })
	if err := addPeerController(mgr, peers, "terminating-peers", &webhook.TerminatingPeers{Reader: peers, Writer: mgr.GetClient()}, retiring,
		"terminating peers stay in their group's DNS until they are gone"); err != nil {
		return err
	}
	const window = time.Minute
	young := predicate.NewTypedPredicateFuncs(func(o *metav1.PartialObjectMetadata) bool { return webhook.Young(o, window, time.Now()) })
	missing := &webhook.MissingServices{Reader: peers, Services: mgr.GetClient(), Live: mgr.GetAPIReader(), Decider: decider, Events: events, Window: window}
	return addPeerController(mgr, peers, "missing-services", missing, young,
		"a member stored without its Service (a validating configuration changed under an admission) waits until another member's admission creates it")
}

func addPeerController(mgr manager.Manager, peers cache.Cache, name string, r reconcile.Reconciler, p predicate.TypedPredicate[*metav1.PartialObjectMetadata], without string) error {
	c, err := controller.NewUnmanaged(name, controller.Options{
		Reconciler:              r,
		MaxConcurrentReconciles: 4,
		SkipNameValidation:      ptr.To(true),
		// Wait for the pods as long as it takes (RBAC repaired later, a
		// slow API server at start): readiness does not depend on it.
		CacheSyncTimeout: 365 * 24 * time.Hour,
		Logger:           mgr.GetLogger().WithName(name),
	})
	if err != nil {
		return fmt.Errorf("create the %s controller: %w", name, err)
	}
	if err := c.Watch(source.Kind(peers, webhook.PodMeta(), &handler.TypedEnqueueRequestForObject[*metav1.PartialObjectMetadata]{}, p)); err != nil {
		return fmt.Errorf("watch peers for %s: %w", name, err)
	}
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if err := c.Start(ctx); err != nil {
			mgr.GetLogger().Error(err, name+" controller stopped: "+without+" (does the webhook's RBAC allow list and watch on pods?)")
			<-ctx.Done()
		}
		return nil
	}))
}

// addValidationWatch follows peergroup's ValidatingWebhookConfiguration
// (--webhook-config-name; none: nil, and Services are created at
// mutation) in a cache of its own, like the terminating peers': readiness
// never waits for it, and while it cannot read the configuration (RBAC
// drift) the mutating phase keeps creating Services, the safe side.
func addValidationWatch(mgr manager.Manager, cfg *rest.Config, scheme *runtime.Scheme, o Options) (*webhook.ValidationWatch, error) {
	name := o.Certs.WebhookConfigName
	if name == "" {
		return nil, nil
	}
	configs, err := cache.New(cfg, cache.Options{
		Scheme:     scheme,
		HTTPClient: mgr.GetHTTPClient(),
		Mapper:     mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			// By name: RBAC then limits list and watch to this one.
			&admissionregistrationv1.ValidatingWebhookConfiguration{}: {Field: fields.OneTermEqualSelector("metadata.name", name)},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create the webhook configuration cache: %w", err)
	}
	inf, err := configs.GetInformer(context.Background(), &admissionregistrationv1.ValidatingWebhookConfiguration{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("watch ValidatingWebhookConfiguration %s: %w", name, err)
	}
	w := &webhook.ValidationWatch{Settle: o.ValidationSettle}
	log := mgr.GetLogger().WithName("validation-phase").WithValues("validatingWebhookConfiguration", name)
	observe := func(obj any) {
		if vwc, ok := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration); ok {
			w.Observe(vwc)
			log.V(1).Info("seen", "callsValidatePath", webhook.CallsValidatePath(vwc))
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    observe,
		UpdateFunc: func(_, obj any) { observe(obj) },
		DeleteFunc: func(any) { w.Forget(); log.Info("gone: Services are created at mutation") },
	}); err != nil {
		return nil, fmt.Errorf("watch ValidatingWebhookConfiguration %s: %w", name, err)
	}
	return w, mgr.Add(configs)
}

// trimCached keeps, of a Service, its name, namespace, type, clusterIP and
// port names (all that Ensure reads), of a namespace its name and labels, of a
// LimitRange its name and spec, and of a peer pod its name, labels, times
// and Service annotation.
func trimCached(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return &corev1.Service{
			TypeMeta:   o.TypeMeta,
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion},
			Spec:       corev1.ServiceSpec{ClusterIP: o.Spec.ClusterIP, Type: o.Spec.Type, Ports: trimPorts(o.Spec.Ports)},
		}, nil
	case *corev1.LimitRange:
		return &corev1.LimitRange{
			TypeMeta:   o.TypeMeta,
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion},
			Spec:       o.Spec,
		}, nil
	case *metav1.PartialObjectMetadata:
		meta := metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: o.Labels,
			CreationTimestamp: o.CreationTimestamp, DeletionTimestamp: o.DeletionTimestamp}
		if svc, ok := o.Annotations[contract.ServiceAnnotation]; ok {
			meta.Annotations = map[string]string{contract.ServiceAnnotation: svc}
		}
		return &metav1.PartialObjectMetadata{TypeMeta: o.TypeMeta, ObjectMeta: meta}, nil
	}
	return obj, nil
}

// trimPorts keeps of each Service port what CheckExisting reads and names.
func trimPorts(ports []corev1.ServicePort) []corev1.ServicePort {
	out := make([]corev1.ServicePort, len(ports))
	for i, p := range ports {
		out[i] = corev1.ServicePort{Name: p.Name, Port: p.Port, Protocol: p.Protocol, TargetPort: p.TargetPort}
	}
	return out
}

// TLSOptions are the webhook server's TLS settings, shared with the
// benchmark's no-op baseline so both serve alike.
func TLSOptions() []func(*tls.Config) { return []func(*tls.Config){hardenTLS} }

// hardenTLS: TLS 1.2 at least, and HTTP/1.1 only. HTTP/2 is off because of
// the Rapid Reset advisories (CVE-2023-44487); the API server speaks
// HTTP/1.1 to webhooks anyway.
func hardenTLS(c *tls.Config) {
	c.MinVersion = tls.VersionTLS12
	c.NextProtos = []string{"http/1.1"}
}

func cacheSynced(c cache.Cache) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), 100*time.Millisecond)
		defer cancel()
		if !c.WaitForCacheSync(ctx) {
			return errors.New("informer caches not synced yet")
		}
		return nil
	}
}

func zapLevel(v int) zapcore.Level { return zapcore.Level(-v) }
