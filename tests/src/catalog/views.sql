-- View and materialized view queries, on one line.
SELECT c.relname
    || CASE WHEN c.relkind = 'm' THEN ' (materialized'
                || CASE WHEN c.relispopulated THEN '' ELSE ', not populated' END || ')'
            ELSE '' END
    || ': ' || btrim(regexp_replace(pg_get_viewdef(c.oid, true), '\s+', ' ', 'g')) AS line
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema()
  AND c.relkind IN ('v', 'm')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
