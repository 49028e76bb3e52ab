-- User triggers (not the internal ones behind foreign keys), by table;
-- a clone is a partition's copy of its parent's trigger.
SELECT c.relname || ': ' || pg_get_triggerdef(t.oid)
    || CASE WHEN t.tgparentid <> 0 THEN ' (clone)' ELSE '' END
    || CASE t.tgenabled WHEN 'D' THEN ' (disabled)' WHEN 'R' THEN ' (replica)'
                        WHEN 'A' THEN ' (always)' ELSE '' END
    || coalesce(' comment ' || quote_literal(obj_description(t.oid, 'pg_trigger')), '') AS line
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema()
  AND NOT t.tgisinternal
  AND c.relname <> 'seaql_migrations'
