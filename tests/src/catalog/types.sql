-- Types defined in the schema, except the row types of relations, the array
-- type of every type, and members of extensions.
SELECT t.typname || ': '
    || CASE t.typtype
        WHEN 'e' THEN 'enum ('
            || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                         FROM pg_enum e WHERE e.enumtypid = t.oid), '')
            || ')'
        WHEN 'd' THEN 'domain over ' || format_type(t.typbasetype, t.typtypmod)
            || CASE WHEN t.typnotnull THEN ' not null' ELSE '' END
            || coalesce(' default ' || t.typdefault, '')
            || coalesce((SELECT ' ' || string_agg(con.conname || ' ' || pg_get_constraintdef(con.oid), ', ' ORDER BY con.conname)
                         FROM pg_constraint con WHERE con.contypid = t.oid), '')
        WHEN 'c' THEN 'composite ('
            || coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                         FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '')
            || ')'
        WHEN 'r' THEN 'range of '
            || coalesce((SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid), '?')
        WHEN 'm' THEN 'multirange'
        WHEN 'b' THEN 'base type'
        WHEN 'p' THEN 'pseudo type'
        ELSE 'typtype ' || t.typtype::text
    END
    || coalesce(' comment ' || quote_literal(obj_description(t.oid, 'pg_type')), '') AS line
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = current_schema()
  AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_type element WHERE element.typarray = t.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
