// Package migrations holds the database schema as numbered SQL files, embedded into the
// binaries and applied by goose (see infra/postgres.Migrate and `incidentctl migrate`).
// Files are never edited once released: a change is a new file.
package migrations

import "embed"

// FS holds the SQL migrations, named NNNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
