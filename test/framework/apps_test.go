package framework

import (
	"slices"
	"testing"
)

func TestParseJGroupsLog(t *testing.T) {
	log := `seed-jgroups: 10.246.0.25[7800],10.246.0.26[7800]
GMS: address=b-2, cluster=ViewDemo, physical address=10.246.0.26:7800
** New view: [a-1|3] [a-1, b-2, 5f1233dd-c1a9-82f0-38c5-5275648d60b3]
Suspected(c-3)
** New view: MergeView::[b-2|5] [b-2, d-4, e-5], subgroups=[[b-2|4] [b-2, d-4], [e-5|1] [e-5]]
`
	m, err := parseJGroupsLog(log)
	if err != nil {
		t.Fatal(err)
	}
	if m.name != "b-2" || m.viewID != "b-2|5" || !slices.Equal(m.members, []string{"b-2", "d-4", "e-5"}) {
		t.Errorf("got %+v", m)
	}
	if _, err := parseJGroupsLog("GMS: address=b-2, cluster=ViewDemo\n"); err == nil {
		t.Error("a member that printed no view yet was read")
	}
}
