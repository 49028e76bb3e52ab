-- Installed extensions (database-wide), with version and schema.
SELECT e.extname || ' ' || e.extversion || ' in ' || n.nspname AS line
FROM pg_extension e
JOIN pg_namespace n ON n.oid = e.extnamespace
