-- Columns of tables, partitions, views and foreign tables (not dropped, not system).
SELECT c.relname || '.' || a.attname || ' #' || a.attnum || ': '
    || format_type(a.atttypid, a.atttypmod)
    || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
    || coalesce(CASE WHEN a.attgenerated = 's' THEN ' generated always as ' ELSE ' default ' END
                || pg_get_expr(def.adbin, def.adrelid), '')
    || CASE a.attidentity WHEN 'a' THEN ' identity always' WHEN 'd' THEN ' identity by default' ELSE '' END
    || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
            THEN ' collate ' || (SELECT co.collname FROM pg_collation co WHERE co.oid = a.attcollation)
            ELSE '' END
    || coalesce(' comment ' || quote_literal(col_description(c.oid, a.attnum)), '') AS line
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef def ON def.adrelid = a.attrelid AND def.adnum = a.attnum
WHERE n.nspname = current_schema()
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND c.relname <> 'seaql_migrations'
  AND a.attnum > 0
  AND NOT a.attisdropped
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
