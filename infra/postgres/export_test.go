package postgres

// MigrateFS applies the migrations of an arbitrary file system, for testing the order they
// arrive in.
var MigrateFS = migrateFS
