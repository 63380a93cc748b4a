package admit

import (
	"fmt"

	"github.com/peergroup/peergroup/internal/clip"
)

// Denial is why a pod is refused, made where the check fails (as
// apimachinery's field.Invalid is): Reason is the metrics reason and
// Message what the user reads. A decision's reason is its Denial's, so the
// two cannot drift apart.
type Denial struct {
	Reason  Reason
	Message string
}

func (d *Denial) Error() string { return d.Message }

// deny is a Denial whose message is "peergroup: " and the formatted detail.
func deny(reason Reason, format string, args ...any) *Denial {
	return &Denial{Reason: reason, Message: "peergroup: " + fmt.Sprintf(format, args...)}
}

// invalidTuning refuses an annotation value outside its rule.
func invalidTuning(annotation, value, rule string) *Denial {
	return deny(ReasonInvalidTuning, "annotation %s value %s is invalid: it must be %s", annotation, clip.Quote(value), rule)
}

// invalidPod refuses a pod the API server would reject anyway, in a field
// the group's Service is built from. Refusing it here, before the Service
// is created, keeps a rejected pod from leaving a Service behind (whose
// ports, taken from the first pod, would then be wrong for good), and
// gives the user the pod's own error instead of a Service's.
func invalidPod(format string, args ...any) *Denial {
	return deny(ReasonInvalidPod, "the pod is invalid: "+format, args...)
}
