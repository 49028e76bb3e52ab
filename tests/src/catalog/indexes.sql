-- Index definitions, by table.
SELECT c.relname || ': ' || pg_get_indexdef(x.indexrelid)
    || CASE WHEN NOT x.indisvalid THEN ' (invalid)' ELSE '' END
    || CASE WHEN x.indisclustered THEN ' (clustered)' ELSE '' END
    || CASE WHEN x.indisreplident THEN ' (replica identity)' ELSE '' END AS line
FROM pg_index x
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema()
  AND c.relname <> 'seaql_migrations'
