package inspect

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// document is one document of a manifest stream as written: its bytes, and
// the separator line that opened it ("---" or "--- # comment"; empty for a
// first document without one), so both come out as they went in.
type document struct {
	separator string
	body      []byte
}

// splitDocuments splits a manifest stream into its documents: a YAML
// stream at its "---" lines, a JSON stream (concatenated objects) at each
// object. The number of objects is checked against kubectl's own decoder
// (utilyaml.NewYAMLOrJSONDecoder), so no object read by kubectl can be
// dropped here, nor one made up.
func splitDocuments(in []byte) ([]document, error) {
	yamlDocs, err := splitYAML(in)
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	// A document that is a JSON stream (one object, or several written
	// one after another) is split into its objects, as kubectl's decoder
	// splits them; one that is not valid JSON stays whole (YAML flow
	// style) and is parsed, or reported, by the caller.
	var docs []document
	for _, d := range yamlDocs {
		objects, err := splitJSON(d.body)
		if !isJSON(d.body) || err != nil || len(objects) < 2 {
			docs = append(docs, d)
			continue
		}
		objects[0].separator = d.separator
		docs = append(docs, objects...)
	}
	want, err := countObjects(in)
	if err != nil {
		// A document that does not parse is reported by the caller,
		// which names it.
		return docs, nil
	}
	got := 0
	for _, d := range docs {
		if !emptyDocument(d.body) {
			got++
		}
	}
	if got != want {
		return nil, fmt.Errorf("read manifests: found %d documents where kubectl reads %d objects", got, want)
	}
	return docs, nil
}

// isJSON reports a stream whose first non-blank byte opens a JSON value,
// which is how kubectl's decoder chooses too.
func isJSON(in []byte) bool {
	t := bytes.TrimLeft(in, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

func splitJSON(in []byte) ([]document, error) {
	dec := json.NewDecoder(bytes.NewReader(in))
	var docs []document
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return nil, fmt.Errorf("JSON document %d: %w", len(docs)+1, err)
		}
		docs = append(docs, document{body: raw})
	}
}

// splitYAML splits at the lines kubectl's YAML reader treats as document
// separators: "---" followed by nothing but blanks or a comment.
func splitYAML(in []byte) ([]document, error) {
	var docs []document
	cur := document{}
	r := bufio.NewReader(bytes.NewReader(in))
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if sep, ok := separatorLine(line); ok {
				if cur.separator != "" || len(cur.body) > 0 {
					docs = append(docs, cur)
				}
				cur = document{separator: sep}
			} else {
				cur.body = append(cur.body, line...)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if cur.separator != "" || len(cur.body) > 0 {
		docs = append(docs, cur)
	}
	return docs, nil
}

func separatorLine(line []byte) (string, bool) {
	s := strings.TrimRight(string(line), "\r\n")
	rest, ok := strings.CutPrefix(s, "---")
	if !ok {
		return "", false
	}
	if t := strings.TrimSpace(rest); t != "" && t[0] != '#' {
		return "", false
	}
	return s, true
}

// countObjects is the number of objects kubectl's decoder reads from in.
func countObjects(in []byte) (int, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(in), 4096)
	n := 0
	for {
		var obj any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return n, nil
		} else if err != nil {
			return 0, err
		}
		if obj != nil {
			n++
		}
	}
}

// emptyDocument reports a document that holds no object: nothing but
// comments and blank lines (a leading "---", a trailing separator), or a
// null ("null", "~"), which kubectl's decoder skips too.
func emptyDocument(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			var v any
			return yaml.Unmarshal(doc, &v) == nil && v == nil
		}
	}
	return true
}
