package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v4"
)

// Marshal writes cfg as a configuration file: the YAML that Parse reads
// back to an equal Config (positions aside). It is the node tree Check
// walks, so every field a file can hold is written, in the schema's
// order, defaults included for a Config that Load or Check returned;
// for one not checked, it is what Check would read. The admin API serves
// the configuration in force with it.
func Marshal(cfg *Config) ([]byte, error) {
	if cfg == nil {
		return nil, fmt.Errorf("config: Marshal: nil Config")
	}
	out, err := dump(readyForText((&encoder{}).config(cfg)))
	if err != nil {
		return nil, fmt.Errorf("config: Marshal: %w", err)
	}
	return out, nil
}

// dump writes the tree n as a YAML document.
func dump(n *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	d, err := yaml.NewDumper(&buf)
	if err != nil {
		return nil, err
	}
	if err := d.Dump(n); err != nil {
		return nil, err
	}
	if err := d.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// MarshalJSON writes cfg as JSON, indented: the tree Marshal writes,
// fields in the same order, numbers and booleans as JSON's. JSON being YAML, Parse
// reads it back to an equal Config too, but for one thing JSON cannot
// hold: bytes that are not UTF-8 (a health check's send or expect
// written !!binary) come out with U+FFFD for each bad byte; the YAML
// form keeps them.
func MarshalJSON(cfg *Config) ([]byte, error) {
	if cfg == nil {
		return nil, fmt.Errorf("config: MarshalJSON: nil Config")
	}
	var buf, out bytes.Buffer
	if err := writeJSON(&buf, (&encoder{}).config(cfg)); err != nil {
		return nil, fmt.Errorf("config: MarshalJSON: %w", err)
	}
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("config: MarshalJSON: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// readyForText readies the encoder's tree top to be written, and returns
// it: no positions (the encoder's lines are place indexes), collections
// of scalars below the top in flow style ({address: "h:1", weight: 1},
// [":9090"]), bytes that are not UTF-8 as !!binary.
func readyForText(top *yaml.Node) *yaml.Node {
	var ready func(n *yaml.Node)
	ready = func(n *yaml.Node) {
		n.Line, n.Column = 0, 0
		flow := len(n.Content) > 0
		for _, c := range n.Content {
			ready(c)
			flow = flow && c.Kind == yaml.ScalarNode
		}
		switch {
		case n.Kind == yaml.ScalarNode && n.Tag == "!!str" && !utf8.ValidString(n.Value):
			// A health check's bytes: YAML text is UTF-8.
			n.Tag, n.Value = "!!binary", base64.StdEncoding.EncodeToString([]byte(n.Value))
		case n.Kind == yaml.ScalarNode:
			// The !!str tag stays: the encoder quotes text that would read
			// as another type (a name "2024", a null "~"), and writes the
			// rest plain.
		case flow && n != top:
			n.Style = yaml.FlowStyle
		}
	}
	ready(top)
	return top
}

// writeJSON writes the tree n as JSON, keeping its mappings' order.
func writeJSON(buf *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				buf.WriteByte(',')
			}
			k, _ := json.Marshal(n.Content[i].Value)
			buf.Write(k)
			buf.WriteByte(':')
			if err := writeJSON(buf, n.Content[i+1]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, c); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case yaml.ScalarNode:
		switch {
		case n.Tag == "!!bool" && (n.Value == "true" || n.Value == "false"),
			(n.Tag == "!!int" || n.Tag == "!!float") && jsonNumber.MatchString(n.Value):
			buf.WriteString(n.Value)
		default:
			s, err := json.Marshal(n.Value)
			if err != nil {
				return err
			}
			buf.Write(s)
		}
	default:
		return fmt.Errorf("unexpected YAML node kind %v", n.Kind)
	}
	return nil
}
