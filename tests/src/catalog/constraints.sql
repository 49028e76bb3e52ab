-- Table constraints (domain constraints are listed with their type).
SELECT c.relname || ': ' || con.conname || ' '
    || CASE con.contype
        WHEN 'p' THEN 'primary key'
        WHEN 'u' THEN 'unique'
        WHEN 'f' THEN 'foreign key'
        WHEN 'c' THEN 'check'
        WHEN 'x' THEN 'exclusion'
        WHEN 't' THEN 'constraint trigger'
        ELSE 'contype ' || con.contype::text
    END
    || ': ' || pg_get_constraintdef(con.oid)
    || CASE WHEN con.conparentid <> 0 THEN ' (inherited)' ELSE '' END
    || coalesce(' comment ' || quote_literal(obj_description(con.oid, 'pg_constraint')), '') AS line
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema()
  AND c.relname <> 'seaql_migrations'
