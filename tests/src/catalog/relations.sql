-- Every relation of the schema except seaql_migrations, the objects that
-- belong to it (its indexes, owned sequences) and members of extensions.
SELECT c.relname || ': '
    || CASE c.relkind
        WHEN 'r' THEN 'table'
        WHEN 'p' THEN 'partitioned table'
        WHEN 'v' THEN 'view'
        WHEN 'm' THEN 'materialized view'
        WHEN 'S' THEN 'sequence'
        WHEN 'i' THEN 'index'
        WHEN 'I' THEN 'partitioned index'
        WHEN 'f' THEN 'foreign table'
        ELSE 'relkind ' || c.relkind::text
    END
    || coalesce(CASE WHEN c.relispartition THEN ' partition of ' ELSE ' inherits ' END
                || (SELECT string_agg(parent.relname, ', ' ORDER BY parent.relname)
                    FROM pg_inherits i JOIN pg_class parent ON parent.oid = i.inhparent
                    WHERE i.inhrelid = c.oid), '')
    || coalesce(' ' || pg_get_expr(c.relpartbound, c.oid), '')
    || coalesce(' partition by ' || pg_get_partkeydef(c.oid), '')
    || CASE c.relpersistence WHEN 'u' THEN ' unlogged' WHEN 't' THEN ' temporary' ELSE '' END
    || CASE WHEN c.relrowsecurity THEN ' row security' ELSE '' END
    || CASE WHEN c.relforcerowsecurity THEN ' forced' ELSE '' END
    || coalesce(' with (' || array_to_string(c.reloptions, ', ') || ')', '')
    || coalesce(' acl ' || c.relacl::text, '')
    || coalesce(' comment ' || quote_literal(obj_description(c.oid, 'pg_class')), '') AS line
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema()
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'I', 'f')
  AND c.relname <> 'seaql_migrations'
  AND NOT EXISTS (SELECT 1 FROM pg_index x JOIN pg_class owner ON owner.oid = x.indrelid
                  WHERE x.indexrelid = c.oid AND owner.relname = 'seaql_migrations'
                    AND owner.relnamespace = c.relnamespace)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class owner ON owner.oid = d.refobjid
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.refclassid = 'pg_class'::regclass
                    AND owner.relname = 'seaql_migrations' AND owner.relnamespace = c.relnamespace)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
