// Package release names the release this tree is: the version the chart
// deploys (Chart.yaml appVersion, pinned equal by test/chart) and the
// repository of the image it deploys. Binaries built without -X
// main.version report this version, so `peergroup inject` writes the image
// and `peergroup.dev/injected` value the chart's webhook would.
package release

const (
	// Version is the chart's appVersion.
	Version = "0.2.0"
	// ImageRepository is the chart's image.repository: the image holds the
	// webhook and seed-discovery.
	ImageRepository = "ghcr.io/peergroup/peergroup"
)

// Image is the image of a version.
func Image(version string) string { return ImageRepository + ":" + version }
