-- Sequence definitions (pg_sequence, the catalog behind pg_sequences, joined by
-- oid to find the owning column); never their current value.
SELECT c.relname || ': ' || format_type(s.seqtypid, NULL)
    || ' start ' || s.seqstart || ' increment ' || s.seqincrement
    || ' min ' || s.seqmin || ' max ' || s.seqmax || ' cache ' || s.seqcache
    || CASE WHEN s.seqcycle THEN ' cycle' ELSE ' no cycle' END
    || coalesce((SELECT ' owned by ' || string_agg(owner.relname || '.' || a.attname, ', ')
                 FROM pg_depend d
                 JOIN pg_class owner ON owner.oid = d.refobjid
                 JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '') AS line
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema()
  AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class owner ON owner.oid = d.refobjid
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.refclassid = 'pg_class'::regclass
                    AND owner.relname = 'seaql_migrations' AND owner.relnamespace = c.relnamespace)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
