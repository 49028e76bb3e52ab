-- Tables whose rows the snapshot hashes: top-level tables only (a partition's
-- rows are read through its parent), with the columns to hash, quoted. Dates
-- and timestamps are left out: they record when a database was migrated.
SELECT c.relname AS table_name,
       format('%I.%I', n.nspname, c.relname) AS qualified_name,
       coalesce(string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
                    FILTER (WHERE a.atttypid NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype)),
                '') AS hashed_columns
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = current_schema()
  AND c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND c.relname <> 'seaql_migrations'
GROUP BY c.oid, c.relname, n.nspname
ORDER BY c.relname
