package config

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestREADMEListsEverySetting keeps the README's configuration table equal
// to what Load reads.
func TestREADMEListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	Markdown(&table)
	for _, line := range strings.Split(strings.TrimSpace(table.String()), "\n") {
		if !bytes.Contains(readme, []byte(line+"\n")) {
			t.Errorf("README.md lacks the line\n%s\n(regenerate the table with config.Markdown)", line)
		}
	}
}
