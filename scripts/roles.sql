-- Least-privilege roles for the trade engine (docs/reliability.md).
--
-- Run it as the schema's owner (the role that ran the migrations), in the
-- application's database, after the migrations:
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 \
--        -v app_role=trade_app -v app_password='…' \
--        -v analytics_role=trade_analytics -v analytics_password='…' \
--        -f scripts/roles.sql
--
-- It is idempotent: roles are created when missing, and the grants are
-- re-applied (run it again after a migration adds a table or a function).
--
-- * app_role: what the api needs and nothing more: SELECT/INSERT/UPDATE on the
--   order and trade tables, DELETE only on the stop-order watchlist (its
--   triggers remove rows), SELECT on the reference tables, views and
--   seaql_migrations (for /ready), EXECUTE on the functions. No CREATE on the
--   schema, no TRUNCATE, no DELETE of orders or trades, no ownership: it cannot
--   run migrations, partition maintenance (which creates tables), retention
--   (which drops them) or refresh the materialized view (owner only). Start
--   the api as this role with MIGRATE_ON_START=false and BACKGROUND_JOBS=false,
--   and run the jobs and migrations as the owner.
-- * analytics_role: read-only: SELECT on every table and view, EXECUTE on the
--   read-only functions, and default_transaction_read_only on.

\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'app_role', :'app_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_role') \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'analytics_role', :'analytics_password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'analytics_role') \gexec

-- Neither role may create objects, whatever PUBLIC may.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- Functions are executable by PUBLIC by default; grant them by name instead.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;

SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I',
              current_database(), :'app_role', :'analytics_role') \gexec
GRANT USAGE ON SCHEMA public TO :"app_role", :"analytics_role";

-- The application.
GRANT SELECT, INSERT, UPDATE ON orders, trades, order_book_snapshots TO :"app_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON stop_orders_watchlist TO :"app_role";
GRANT SELECT ON symbols, partition_retention_config, seaql_migrations TO :"app_role";
-- The market state is written by the schema's triggers (as their owner) only.
GRANT SELECT ON market_levels, market_sides, market_last_trade, trade_candles TO :"app_role";
-- Events are written by the same triggers; the api's relay reads them, marks
-- them published and prunes them; the book stream reads the sequences.
GRANT SELECT, UPDATE, DELETE ON event_outbox TO :"app_role";
GRANT SELECT ON event_sequences TO :"app_role";
GRANT SELECT ON v_active_orders, v_user_order_summary, v_symbol_stats_24h,
                v_monitoring_active_orders, v_monitoring_trade_volume_24h,
                v_monitoring_order_status, mv_order_book_snapshot TO :"app_role";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app_role";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO :"app_role";

-- Analytics: reads only.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"analytics_role";
GRANT EXECUTE ON FUNCTION
    get_order_book_depth(varchar, int),
    get_user_trade_history(uuid, varchar, int, int),
    get_best_bid_ask(varchar),
    calculate_vwap(varchar, int),
    get_order_fill_rate(uuid, int),
    get_trading_volume(varchar, varchar),
    trade_window_totals(varchar, timestamptz, timestamptz),
    check_partition_health(),
    check_table_sizes(),
    check_db_connections()
    TO :"analytics_role";
ALTER ROLE :"analytics_role" SET default_transaction_read_only = on;
