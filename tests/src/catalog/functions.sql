-- Functions and procedures: signature, settings, comment, and the definition
-- on one line with the md5 of the original (which whitespace changes alter).
-- pg_get_functiondef rejects aggregates, which show their parts instead.
SELECT p.oid::regprocedure::text || ' '
    || CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure'
                      WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window function'
                      ELSE 'prokind ' || p.prokind::text END
    || coalesce(' set ' || array_to_string(p.proconfig, ', '), '')
    || coalesce(' comment ' || quote_literal(obj_description(p.oid, 'pg_proc')), '')
    || coalesce(': md5 ' || md5(f.def) || ' ' || btrim(regexp_replace(f.def, '\s+', ' ', 'g')), '')
    || coalesce((SELECT ': state ' || format_type(agg.aggtranstype, NULL)
                        || ' step ' || agg.aggtransfn::regprocedure::text
                        || coalesce(' final ' || nullif(agg.aggfinalfn::oid, 0)::regprocedure::text, '')
                        || coalesce(' initially ' || quote_literal(agg.agginitval), '')
                 FROM pg_aggregate agg WHERE agg.aggfnoid = p.oid), '') AS line
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
CROSS JOIN LATERAL (SELECT CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END AS def) f
WHERE n.nspname = current_schema()
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
