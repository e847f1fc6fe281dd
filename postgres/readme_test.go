package ssepostgres_test

import (
	"os"
	"strings"
	"testing"

	ssepostgres "github.com/b2ce5911/sse/postgres"
)

// TestREADMESchema: the SQL that README.md gives for migrations is the
// SQL the Broker runs.
func TestREADMESchema(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```sql\n"+ssepostgres.Schema("public", "sse_events")+"```") {
		t.Fatal("README.md does not show Schema(\"public\", \"sse_events\"): update it")
	}
}
