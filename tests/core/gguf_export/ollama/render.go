// Renders Modelfile templates as Ollama does (Go's text/template, Ollama's `json` function, its message
// collation and value shapes), for the golden file that tests/core/gguf_export/test_modelfile_tools.py reads.
// Regenerate after changing core/gguf_export/modelfile.py: `make ollama-golden`, which runs
//
//	.venv/bin/python -m tests.core.gguf_export.ollama.cases | go run tests/core/gguf_export/ollama/render.go
//
// Each input line is {"name", "template", "messages", "tools"} in Ollama's /api/chat shapes; each output line
// is the input with "rendered" added. Arguments and properties keep their order as JSON, as Ollama's own types do.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"text/template"
)

type ToolCallFunction struct {
	Index     int       `json:"index"`
	Name      string    `json:"name"`
	Arguments Arguments `json:"arguments"`
}

// Arguments are a map in a template, as Ollama gives them there: ranged over in key order, a value's type that of
// decoded JSON (string, float64, bool, nil, map, slice). As JSON they keep the order they were given in, as Ollama's
// own type does: the text each map was read from is kept beside it.
type Arguments map[string]any

var given = map[uintptr]json.RawMessage{}

func (a *Arguments) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if m == nil {
		m = map[string]any{}
	}
	*a = m
	given[reflect.ValueOf(m).Pointer()] = append(json.RawMessage(nil), b...)
	return nil
}

func (a Arguments) MarshalJSON() ([]byte, error) {
	if b, ok := given[reflect.ValueOf(map[string]any(a)).Pointer()]; ok {
		var out bytes.Buffer
		err := json.Compact(&out, b)
		return out.Bytes(), err
	}
	return json.Marshal(map[string]any(a))
}

type ToolCall struct {
	ID       string           `json:"id,omitempty"`
	Function ToolCallFunction `json:"function"`
}

type Message struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	Thinking  string     `json:"thinking,omitempty"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	ToolName  string     `json:"tool_name,omitempty"`
}

type Parameters struct {
	Type       string          `json:"type"`
	Defs       json.RawMessage `json:"$defs,omitempty"`
	Items      json.RawMessage `json:"items,omitempty"`
	Required   []string        `json:"required,omitempty"`
	Properties json.RawMessage `json:"properties"`
}

type Function struct {
	Name        string     `json:"name"`
	Description string     `json:"description,omitempty"`
	Parameters  Parameters `json:"parameters"`
}

type Tool struct {
	Type     string          `json:"type"`
	Items    json.RawMessage `json:"items,omitempty"`
	Function Function        `json:"function"`
}

type Case struct {
	Name     string    `json:"name"`
	Template string    `json:"template"`
	Messages []Message `json:"messages"`
	Tools    []Tool    `json:"tools"`
	ThinkSet bool      `json:"think_set"` // asked with think set (Ollama's .IsThinkSet)
	Think    bool      `json:"think"`     // to true (Ollama's .Think), or false
	Rendered string    `json:"rendered"`
	Error    string    `json:"error,omitempty"`
}

// collate: system texts joined for .System (and kept in .Messages), consecutive turns of one role merged,
// tool results never.
func collate(msgs []Message) (string, []*Message) {
	var system []string
	var out []*Message
	for i := range msgs {
		if msgs[i].Role == "system" {
			system = append(system, msgs[i].Content)
		}
		if len(out) > 0 && out[len(out)-1].Role == msgs[i].Role && msgs[i].Role != "tool" {
			out[len(out)-1].Content += "\n\n" + msgs[i].Content
		} else {
			out = append(out, &msgs[i])
		}
	}
	return strings.Join(system, "\n\n"), out
}

func render(c *Case) {
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(c.Template)
	if err != nil {
		c.Error = err.Error()
		return
	}
	system, messages := collate(c.Messages)
	var b strings.Builder
	values := map[string]any{"System": system, "Messages": messages, "Tools": c.Tools, "Response": "",
		"Think": c.Think, "IsThinkSet": c.ThinkSet}
	if err := tmpl.Execute(&b, values); err != nil {
		c.Error = err.Error()
		return
	}
	c.Rendered = b.String()
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	for in.Scan() {
		if strings.TrimSpace(in.Text()) == "" {
			continue // training the tokenizer prints empty lines
		}
		var c Case
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			panic(err)
		}
		render(&c)
		if err := out.Encode(c); err != nil {
			panic(err)
		}
	}
}
