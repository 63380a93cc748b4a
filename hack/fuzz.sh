#!/usr/bin/env bash
# Fuzzes each target for FUZZTIME (go test fuzzes one target a run). A
# target is PACKAGE_DIR:FuzzName, e.g. webhook/admit:FuzzPatchEquivalence.
# A finding fails the run: Go writes the input to
# PACKAGE_DIR/testdata/fuzz/<target>/, where plain `go test` replays it from
# then on. One failure is not a finding: Go's engine can stop with "context
# deadline exceeded" and no input written when -fuzztime ends while a worker
# is mid-call (golang/go#51484); that is reported and tolerated. Any other
# failure prints the whole output and fails.
set -u
fuzztime="${FUZZTIME:-20s}"
status=0
for spec in "$@"; do
	pkg="${spec%%:*}"
	target="${spec#*:}"
	echo "fuzz: $pkg $target for $fuzztime"
	dir="$pkg/testdata/fuzz/$target"
	before="$(ls "$dir" 2>/dev/null | sort)"
	# Minimizing each newly interesting input is capped: the 60 s default
	# would stall a 20 s run on the first one.
	out="$(go test "./$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 100x 2>&1)"
	rc=$?
	after="$(ls "$dir" 2>/dev/null | sort)"
	if [ "$rc" -eq 0 ]; then
		printf '%s\n' "$out" | tail -n 3
	elif [ "$before" = "$after" ] && printf '%s\n' "$out" | grep -q 'context deadline exceeded'; then
		printf '%s\n' "$out" | tail -n 6
		echo "fuzz: $target: the engine stopped at the -fuzztime boundary without a finding (golang/go#51484); not a failure"
	else
		printf '%s\n' "$out"
		echo "fuzz: $target FAILED (exit $rc)"
		status=1
	fi
done
exit "$status"
