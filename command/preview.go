package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pierproxy/pier/config"
	"github.com/pierproxy/pier/internal/admin"
)

// previewTimeout bounds the whole exchange with the running pier.
const previewTimeout = 10 * time.Second

// printPreview posts file to the admin API at base and prints its plan:
// what loading the file would change in the running pier. The running
// pier checks the file too (its filters, its listen addresses against
// its own): its errors come back placed in file, and fail the check.
func printPreview(w io.Writer, file, base, tokenFile string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("-preview: %w", err)
	}
	var token []byte
	if tokenFile != "" {
		if token, err = config.ReadToken(tokenFile); err != nil {
			return usageError{fmt.Errorf("-token-file: %w", err)}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), previewTimeout)
	defer cancel()
	url := strings.TrimSuffix(base, "/") + "/api/v1/config/check"
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(data))
	if err != nil {
		return usageError{fmt.Errorf("-preview: %w", err)}
	}
	req.Header.Set("Content-Type", "application/yaml")
	if token != nil {
		req.Header.Set("Authorization", "Bearer "+string(token))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("-preview: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("-preview: %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("-preview: %s answered %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	var p admin.Preview
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("-preview: %s: not a preview: %w", url, err)
	}
	if !p.OK {
		var errs config.Errors
		for _, pr := range p.Problems {
			errs = append(errs, &config.Error{File: file, Line: pr.Line, Col: pr.Col, Msg: pr.Message})
		}
		return usageError{errs}
	}
	if len(p.Changes) == 0 {
		fmt.Fprintf(w, "preview: loading it would change nothing in the pier at %s\n", base)
		return nil
	}
	noun := "changes"
	if len(p.Changes) == 1 {
		noun = "change"
	}
	fmt.Fprintf(w, "preview: loading it would make %d %s in the pier at %s:\n", len(p.Changes), noun, base)
	for _, c := range p.Changes {
		what := c.Route
		if c.Name != "" && c.Name != c.Route {
			what = strings.TrimPrefix(what+" "+c.Name, " ")
		}
		if len(c.Fields) > 0 {
			what += " (" + strings.Join(c.Fields, ", ") + ")"
		}
		fmt.Fprintf(w, "  %s %s %s, %d live: %s\n", c.Kind, c.Action, what, c.LiveSessions, c.Effect)
	}
	return nil
}
