//! The inventory: every object of docs/schema.md exists after `up`,
//! with its exact name, columns, types, defaults, predicates and comments.

use tests::db::TestDb;
use tests::sql::{column, lines, scalar};

/// `column|type|not null|default|comment` of a table's columns, in order.
async fn columns_of(db: &TestDb, table: &str) -> Vec<String> {
    lines(
        db.conn(),
        &format!(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum)
             FROM pg_attribute a
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = '{table}'::regclass AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum"
        ),
    )
    .await
}

fn expect(spec: &str) -> Vec<String> {
    spec.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn table_comment(db: &TestDb, table: &str) -> String {
    scalar(
        db.conn(),
        &format!("SELECT obj_description('{table}'::regclass, 'pg_class')"),
    )
    .await
}

#[tokio::test]
async fn enum_types_have_their_values_in_order_and_comments() {
    let db = TestDb::migrated().await;
    let found = lines(
        db.conn(),
        "SELECT t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder),
                obj_description(t.oid, 'pg_type')
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
         WHERE t.typnamespace = current_schema()::regnamespace
         GROUP BY t.oid, t.typname ORDER BY t.typname",
    )
    .await;
    assert_eq!(
        found,
        expect(
            "order_side_enum|BUY,SELL|Order side: BUY or SELL
             order_status_enum|PENDING,OPEN,PARTIALLY_FILLED,FILLED,CANCELLED,REJECTED,EXPIRED|Current status of an order
             order_type_enum|MARKET,LIMIT,STOP,STOP_LIMIT,TRAILING_STOP|Type of order: MARKET, LIMIT, STOP, etc.
             symbol_status_enum|ACTIVE,HALTED,MAINTENANCE,DELISTED|Trading status of a symbol
             time_in_force_enum|GTC,IOC,FOK,DAY|Time in force instruction for order: GTC (Good Till Cancelled), IOC (Immediate or Cancel), FOK (Fill or Kill), DAY (Day order)"
        )
    );
}

#[tokio::test]
async fn symbols_table_matches_the_spec() {
    let db = TestDb::migrated().await;
    assert_eq!(
        columns_of(&db, "symbols").await,
        expect(
            "symbol_id|integer|true|nextval('symbols_symbol_id_seq'::regclass)|
             symbol|character varying(20)|true||
             base_asset|character varying(10)|true||
             quote_asset|character varying(10)|true||
             status|symbol_status_enum|true|'ACTIVE'::symbol_status_enum|
             status_reason|text|false||
             estimated_resume|timestamp with time zone|false||
             tick_size|numeric(20,8)|true|0.01|Minimum price increment (e.g., 0.01 for BTC/USDT)
             min_order_size|numeric(20,8)|true|0.0001|
             max_order_size|numeric(20,8)|true|100|
             min_order_value|numeric(20,8)|true|10|
             price_band_percentage|numeric(5,2)|true|10.00|Max price deviation from last trade (±%)
             maker_fee|numeric(6,4)|true|0.0005|Fee for maker orders (provides liquidity) - decimal format (0.0005 = 0.05%)
             taker_fee|numeric(6,4)|true|0.0010|Fee for taker orders (removes liquidity) - decimal format (0.0010 = 0.10%)
             trading_start|time without time zone|false||
             trading_end|time without time zone|false||
             trading_timezone|character varying(50)|false|'UTC'::character varying|
             created_at|timestamp with time zone|true|now()|
             updated_at|timestamp with time zone|true|now()|"
        )
    );
    assert_eq!(
        table_comment(&db, "symbols").await,
        "Trading pairs configuration and parameters"
    );
}

#[tokio::test]
async fn orders_table_matches_the_spec() {
    let db = TestDb::migrated().await;
    assert_eq!(
        columns_of(&db, "orders").await,
        expect(
            "order_id|uuid|true|gen_random_uuid()|
             user_id|uuid|true||
             institution_id|uuid|false||
             symbol|character varying(20)|true||
             side|order_side_enum|true||
             order_type|order_type_enum|true||
             status|order_status_enum|true|'PENDING'::order_status_enum|
             quantity|numeric(20,8)|true||
             filled_quantity|numeric(20,8)|true|0|
             price|numeric(20,8)|false||
             average_price|numeric(20,8)|false||Average fill price for partially filled orders
             stop_price|numeric(20,8)|false||
             time_in_force|time_in_force_enum|true|'GTC'::time_in_force_enum|
             client_order_id|character varying(100)|false||Client-provided unique ID for idempotency (24h TTL)
             order_source|character varying(50)|false||Order origin: WEB | MOBILE | API | BOT
             fee_profile_id|uuid|false||Reference to user fee tier (VIP, etc.)
             created_at|timestamp with time zone|true|CURRENT_TIMESTAMP|
             updated_at|timestamp with time zone|true|CURRENT_TIMESTAMP|
             filled_at|timestamp with time zone|false||
             cancelled_at|timestamp with time zone|false||
             expires_at|timestamp with time zone|false||"
        )
    );
    assert_eq!(
        table_comment(&db, "orders").await,
        "Main orders table - partitioned by created_at (monthly). Stores all order lifecycle data."
    );
    let key: String = scalar(db.conn(), "SELECT pg_get_partkeydef('orders'::regclass)").await;
    assert_eq!(key, "RANGE (created_at)");
}

#[tokio::test]
async fn trades_table_matches_the_spec() {
    let db = TestDb::migrated().await;
    assert_eq!(
        columns_of(&db, "trades").await,
        expect(
            "trade_id|uuid|true|gen_random_uuid()|
             symbol|character varying(20)|true||
             buyer_order_id|uuid|true||
             seller_order_id|uuid|true||
             buyer_user_id|uuid|true||
             seller_user_id|uuid|true||
             buyer_institution_id|uuid|false||
             seller_institution_id|uuid|false||
             price|numeric(20,8)|true||
             quantity|numeric(20,8)|true||
             buyer_fee|numeric(20,8)|true||
             seller_fee|numeric(20,8)|true||
             buyer_fee_asset|character varying(10)|true||
             seller_fee_asset|character varying(10)|true||
             is_buyer_maker|boolean|true||TRUE if buyer is maker (passive order), FALSE if buyer is taker (aggressive order)
             trade_source|character varying(50)|false||Execution source: INTERNAL (matching engine), BROKER (external), SIMULATION (paper trading)
             execution_venue|character varying(50)|false||For multi-venue routing (Phase 3) - identifies where trade was executed
             executed_at|timestamp with time zone|true|CURRENT_TIMESTAMP|
             settled_at|timestamp with time zone|false||Settlement timestamp for real broker trades (null for internal trades)"
        )
    );
    assert_eq!(
        table_comment(&db, "trades").await,
        "Trade execution records - partitioned by executed_at (daily). Stores all matched and executed trades."
    );
    let key: String = scalar(db.conn(), "SELECT pg_get_partkeydef('trades'::regclass)").await;
    assert_eq!(key, "RANGE (executed_at)");
}

#[tokio::test]
async fn auxiliary_tables_match_the_spec() {
    let db = TestDb::migrated().await;
    assert_eq!(
        columns_of(&db, "stop_orders_watchlist").await,
        expect(
            "order_id|uuid|true||
             user_id|uuid|true||
             symbol|character varying(20)|true||
             side|order_side_enum|true||
             stop_price|numeric(20,8)|true||Price threshold at which stop order should be triggered
             quantity|numeric(20,8)|true||
             added_at|timestamp with time zone|true|CURRENT_TIMESTAMP|"
        )
    );
    assert_eq!(
        columns_of(&db, "order_book_snapshots").await,
        expect(
            "snapshot_id|bigint|true|nextval('order_book_snapshots_snapshot_id_seq'::regclass)|
             symbol|character varying(20)|true||
             bids|jsonb|true||JSON array of bid orders: [{price, quantity, orders: [order_ids]}]
             asks|jsonb|true||JSON array of ask orders: [{price, quantity, orders: [order_ids]}]
             sequence_number|bigint|true||Monotonically increasing sequence for snapshot ordering
             created_at|timestamp with time zone|true|CURRENT_TIMESTAMP|"
        )
    );
    assert_eq!(
        columns_of(&db, "partition_retention_config").await,
        expect(
            "table_name|character varying(50)|true||
             retention_months|integer|true||
             description|text|false||
             updated_at|timestamp with time zone|false|CURRENT_TIMESTAMP|"
        )
    );
    for (table, comment) in [
        (
            "stop_orders_watchlist",
            "Active stop orders being monitored for trigger conditions",
        ),
        (
            "order_book_snapshots",
            "Periodic order book snapshots for recovery and auditing",
        ),
        (
            "partition_retention_config",
            "Retention policy configuration for partitioned tables",
        ),
    ] {
        assert_eq!(
            table_comment(&db, table).await,
            comment,
            "comment of {table}"
        );
    }
}

#[tokio::test]
async fn constraints_have_their_names_and_definitions() {
    let db = TestDb::migrated().await;
    let found = lines(
        db.conn(),
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
         FROM pg_constraint
         WHERE connamespace = current_schema()::regnamespace
           AND conrelid::regclass::text IN ('symbols', 'orders', 'trades', 'stop_orders_watchlist',
                                            'order_book_snapshots', 'partition_retention_config')
         ORDER BY 1, 2",
    )
    .await;
    assert_eq!(
        found,
        expect(
            "order_book_snapshots|UQ_symbol_sequence|UNIQUE (symbol, sequence_number)
             order_book_snapshots|order_book_snapshots_pkey|PRIMARY KEY (snapshot_id)
             orders|FK_orders_symbol|FOREIGN KEY (symbol) REFERENCES symbols(symbol)
             orders|chk_filled_lte_quantity|CHECK ((filled_quantity <= quantity))
             orders|chk_limit_has_price|CHECK (((order_type <> 'LIMIT'::order_type_enum) OR (price IS NOT NULL)))
             orders|chk_market_no_price|CHECK (((order_type <> 'MARKET'::order_type_enum) OR (price IS NULL)))
             orders|chk_quantity_positive|CHECK ((quantity > (0)::numeric))
             orders|chk_stop_has_stop_price|CHECK (((order_type <> ALL (ARRAY['STOP'::order_type_enum, 'STOP_LIMIT'::order_type_enum])) OR (stop_price IS NOT NULL)))
             orders|orders_pkey|PRIMARY KEY (order_id, created_at)
             partition_retention_config|partition_retention_config_pkey|PRIMARY KEY (table_name)
             stop_orders_watchlist|stop_orders_watchlist_pkey|PRIMARY KEY (order_id)
             symbols|chk_max_gt_min|CHECK ((max_order_size >= min_order_size))
             symbols|chk_min_order_positive|CHECK ((min_order_size > (0)::numeric))
             symbols|chk_price_band_positive|CHECK ((price_band_percentage > (0)::numeric))
             symbols|chk_tick_size_positive|CHECK ((tick_size > (0)::numeric))
             symbols|symbols_pkey|PRIMARY KEY (symbol_id)
             symbols|symbols_symbol_key|UNIQUE (symbol)
             trades|FK_trades_symbol|FOREIGN KEY (symbol) REFERENCES symbols(symbol)
             trades|chk_price_positive|CHECK ((price > (0)::numeric))
             trades|chk_quantity_positive|CHECK ((quantity > (0)::numeric))
             trades|chk_self_trade_prevention|CHECK ((buyer_user_id <> seller_user_id))
             trades|trades_pkey|PRIMARY KEY (trade_id, executed_at)"
        )
    );
}

#[tokio::test]
async fn indexes_have_their_columns_and_predicates() {
    let db = TestDb::migrated().await;
    let named = lines(
        db.conn(),
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relname LIKE 'IDX\\_%'
           AND NOT c.relispartition
         ORDER BY 1",
    )
    .await;
    let active =
        "status = ANY (ARRAY['OPEN'::order_status_enum, 'PARTIALLY_FILLED'::order_status_enum])";
    let expected: Vec<String> = [
        r#""IDX_mv_order_book"|CREATE UNIQUE INDEX "IDX_mv_order_book" ON public.mv_order_book_snapshot USING btree (symbol, side, price)"#.to_owned(),
        format!(r#""IDX_orders_active"|CREATE INDEX "IDX_orders_active" ON ONLY public.orders USING btree (symbol, side, price) WHERE ({active})"#),
        r#""IDX_orders_client_order_id"|CREATE INDEX "IDX_orders_client_order_id" ON ONLY public.orders USING btree (client_order_id, user_id) WHERE (client_order_id IS NOT NULL)"#.to_owned(),
        format!(r#""IDX_orders_matching"|CREATE INDEX "IDX_orders_matching" ON ONLY public.orders USING btree (symbol, side, price, created_at) WHERE (({active}) AND (price IS NOT NULL))"#),
        format!(r#""IDX_orders_matching_bids"|CREATE INDEX "IDX_orders_matching_bids" ON ONLY public.orders USING btree (symbol, price DESC, created_at, order_id) WHERE ((side = 'BUY'::order_side_enum) AND ({active}) AND (price IS NOT NULL) AND (order_type = 'LIMIT'::order_type_enum))"#),
        r#""IDX_orders_status_created"|CREATE INDEX "IDX_orders_status_created" ON ONLY public.orders USING btree (status, created_at DESC)"#.to_owned(),
        r#""IDX_orders_stop_monitoring"|CREATE INDEX "IDX_orders_stop_monitoring" ON ONLY public.orders USING btree (symbol, stop_price) WHERE ((order_type = ANY (ARRAY['STOP'::order_type_enum, 'STOP_LIMIT'::order_type_enum])) AND (status = 'OPEN'::order_status_enum))"#.to_owned(),
        format!(r#""IDX_orders_symbol_status_price"|CREATE INDEX "IDX_orders_symbol_status_price" ON ONLY public.orders USING btree (symbol, status, price) WHERE (({active}) AND (price IS NOT NULL))"#),
        r#""IDX_orders_user_created"|CREATE INDEX "IDX_orders_user_created" ON ONLY public.orders USING btree (user_id, created_at DESC)"#.to_owned(),
        format!(r#""IDX_orders_user_symbol_status"|CREATE INDEX "IDX_orders_user_symbol_status" ON ONLY public.orders USING btree (user_id, symbol, status) WHERE ({active})"#),
        r#""IDX_snapshots_symbol_time"|CREATE INDEX "IDX_snapshots_symbol_time" ON public.order_book_snapshots USING btree (symbol, created_at DESC)"#.to_owned(),
        r#""IDX_stop_watchlist_symbol_price"|CREATE INDEX "IDX_stop_watchlist_symbol_price" ON public.stop_orders_watchlist USING btree (symbol, stop_price)"#.to_owned(),
        r#""IDX_stop_watchlist_user"|CREATE INDEX "IDX_stop_watchlist_user" ON public.stop_orders_watchlist USING btree (user_id)"#.to_owned(),
        r#""IDX_symbols_base_quote"|CREATE INDEX "IDX_symbols_base_quote" ON public.symbols USING btree (base_asset, quote_asset)"#.to_owned(),
        r#""IDX_symbols_status"|CREATE INDEX "IDX_symbols_status" ON public.symbols USING btree (status)"#.to_owned(),
        r#""IDX_trades_buyer"|CREATE INDEX "IDX_trades_buyer" ON ONLY public.trades USING btree (buyer_user_id, executed_at DESC)"#.to_owned(),
        r#""IDX_trades_buyer_order"|CREATE INDEX "IDX_trades_buyer_order" ON ONLY public.trades USING btree (buyer_order_id)"#.to_owned(),
        r#""IDX_trades_executed_at"|CREATE INDEX "IDX_trades_executed_at" ON ONLY public.trades USING btree (executed_at DESC)"#.to_owned(),
        r#""IDX_trades_seller"|CREATE INDEX "IDX_trades_seller" ON ONLY public.trades USING btree (seller_user_id, executed_at DESC)"#.to_owned(),
        r#""IDX_trades_seller_order"|CREATE INDEX "IDX_trades_seller_order" ON ONLY public.trades USING btree (seller_order_id)"#.to_owned(),
        r#""IDX_trades_symbol_time"|CREATE INDEX "IDX_trades_symbol_time" ON ONLY public.trades USING btree (symbol, executed_at DESC)"#.to_owned(),
    ]
    .into_iter()
    .collect();
    assert_eq!(named, expected);

    // The originals' verification counted 8, 6 and 3; with the indexes behind
    // primary keys and unique constraints the real counts are 9, 7 and 4, and
    // migration 14 adds one to `orders`.
    let counts = lines(
        db.conn(),
        "SELECT t.relname, count(*) FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
         WHERE t.relname IN ('orders', 'trades', 'symbols')
           AND t.relnamespace = current_schema()::regnamespace
         GROUP BY t.relname ORDER BY t.relname",
    )
    .await;
    assert_eq!(counts, expect("orders|10\nsymbols|4\ntrades|7"));
}

#[tokio::test]
async fn triggers_fire_when_the_spec_says() {
    let db = TestDb::migrated().await;
    let found = lines(
        db.conn(),
        "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
         FROM pg_trigger
         WHERE NOT tgisinternal AND tgparentid = 0
           AND tgrelid::regclass::text IN ('symbols', 'orders', 'trades')
         ORDER BY 1, 2",
    )
    .await;
    assert_eq!(
        found,
        expect(
            "orders|trg_add_stop_order_to_watchlist|CREATE TRIGGER trg_add_stop_order_to_watchlist AFTER INSERT OR UPDATE OF status ON public.orders FOR EACH ROW EXECUTE FUNCTION add_stop_order_to_watchlist()
             orders|trg_market_levels_delete|CREATE TRIGGER trg_market_levels_delete AFTER DELETE ON public.orders REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION market_levels_on_delete()
             orders|trg_market_levels_insert|CREATE TRIGGER trg_market_levels_insert AFTER INSERT ON public.orders REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market_levels_on_insert()
             orders|trg_market_levels_update|CREATE TRIGGER trg_market_levels_update AFTER UPDATE ON public.orders REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market_levels_on_update()
             orders|trg_orders_updated_at|CREATE TRIGGER trg_orders_updated_at BEFORE UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION update_updated_at_column()
             orders|trg_remove_stop_order_from_watchlist|CREATE TRIGGER trg_remove_stop_order_from_watchlist AFTER UPDATE ON public.orders FOR EACH ROW WHEN ((old.status IS DISTINCT FROM new.status)) EXECUTE FUNCTION remove_stop_order_from_watchlist()
             orders|trg_set_cancelled_at|CREATE TRIGGER trg_set_cancelled_at BEFORE UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION set_cancelled_at_timestamp()
             orders|trg_set_filled_at|CREATE TRIGGER trg_set_filled_at BEFORE UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION set_filled_at_timestamp()
             orders|trg_validate_order_status_transition|CREATE TRIGGER trg_validate_order_status_transition BEFORE UPDATE ON public.orders FOR EACH ROW WHEN ((old.status IS DISTINCT FROM new.status)) EXECUTE FUNCTION validate_order_status_transition()
             symbols|trg_symbols_updated_at|CREATE TRIGGER trg_symbols_updated_at BEFORE UPDATE ON public.symbols FOR EACH ROW EXECUTE FUNCTION update_updated_at_column()
             trades|trg_market_last_trade_delete|CREATE TRIGGER trg_market_last_trade_delete AFTER DELETE ON public.trades REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION market_last_trade_on_delete()
             trades|trg_market_last_trade_update|CREATE TRIGGER trg_market_last_trade_update AFTER UPDATE ON public.trades REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market_last_trade_on_update()
             trades|trg_market_trades_insert|CREATE TRIGGER trg_market_trades_insert AFTER INSERT ON public.trades REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION market_trades_on_insert()
             trades|trg_trade_candles_delete|CREATE TRIGGER trg_trade_candles_delete AFTER DELETE ON public.trades REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION trade_candles_on_delete()
             trades|trg_trade_candles_update|CREATE TRIGGER trg_trade_candles_update AFTER UPDATE ON public.trades REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION trade_candles_on_update()"
        )
    );
    // Every partition carries the parent's row triggers as clones.
    let partitions_missing_triggers: i64 = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_inherits i
         WHERE i.inhparent = 'orders'::regclass
           AND (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = i.inhrelid AND NOT t.tgisinternal) <> 6",
    )
    .await;
    assert_eq!(partitions_missing_triggers, 0);
}

#[tokio::test]
async fn functions_have_their_signatures_and_comments() {
    let db = TestDb::migrated().await;
    let found = lines(
        db.conn(),
        "SELECT p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
                obj_description(p.oid, 'pg_proc')
         FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace
         ORDER BY 1",
    )
    .await;
    assert_eq!(
        found,
        expect(
            "add_stop_order_to_watchlist||trigger|Automatically adds STOP/STOP_LIMIT orders to watchlist when created
             calculate_vwap|p_symbol character varying, p_interval_hours integer DEFAULT 24|numeric|Calculates Volume Weighted Average Price for a symbol over specified hours
             check_db_connections||TABLE(active_connections integer, idle_connections integer, max_connections integer)|Health check: returns database connection statistics
             check_partition_health||TABLE(parent_table text, partition_count bigint, oldest_partition text, newest_partition text)|Monitoring: returns partition statistics for orders and trades tables
             check_table_sizes||TABLE(table_name text, row_count bigint, total_size text)|Monitoring: returns table sizes and row counts
             create_orders_partition|partition_date date|text|Creates a monthly partition for the orders table
             create_range_partition|p_parent text, p_key text, p_partition text, p_from date, p_to date|text|Creates one range partition [p_from, p_to) in UTC, moving the rows it covers out of the default partition first
             create_trades_partition|partition_date date|text|Creates a daily partition for the trades table
             enforce_partition_retention|p_dry_run boolean DEFAULT true|TABLE(partition_name text, parent_table text, range_end timestamp with time zone, dropped boolean)|Lists the partitions wholly older than their table's retention; drops them only when p_dry_run is false
             get_best_bid_ask|p_symbol character varying|TABLE(best_bid numeric, best_ask numeric, spread numeric, spread_percentage numeric)|Returns best bid/ask prices and spread for a symbol
             get_order_book_depth|p_symbol character varying, p_depth integer DEFAULT 20|TABLE(side character varying, price numeric, quantity numeric, order_count integer)|Returns order book depth for a symbol (bids and asks up to specified depth)
             get_order_fill_rate|p_user_id uuid, p_days integer DEFAULT 30|TABLE(total_orders bigint, filled_orders bigint, partially_filled_orders bigint, cancelled_orders bigint, fill_rate numeric)|Returns order fill rate statistics for a user over specified days
             get_trading_volume|p_symbol character varying, p_period character varying DEFAULT '24h'::character varying|TABLE(symbol character varying, trade_count bigint, base_volume numeric, quote_volume numeric, period_start timestamp with time zone, period_end timestamp with time zone)|Returns trading volume for a symbol over specified period (1h, 4h, 24h, 7d, 30d)
             get_user_trade_history|p_user_id uuid, p_symbol character varying DEFAULT NULL::character varying, p_limit integer DEFAULT 50, p_offset integer DEFAULT 0|TABLE(trade_id uuid, symbol character varying, side character varying, price numeric, quantity numeric, fee numeric, is_maker boolean, executed_at timestamp with time zone)|Returns trade history for a user with pagination
             maintain_partitions||void|Automated partition maintenance - creates future partitions. Run daily via cron.
             market_last_trade_on_delete||trigger|
             market_last_trade_on_update||trigger|
             market_last_trade_recompute|p_symbols character varying[]|void|Recomputes market_last_trade for the given symbols from trades
             market_last_trade_recomputed|p_symbol character varying DEFAULT NULL::character varying|TABLE(symbol character varying, price numeric, executed_at timestamp with time zone, trade_id uuid)|market_last_trade as computed from trades (one symbol, or all)
             market_levels_on_delete||trigger|
             market_levels_on_insert||trigger|
             market_levels_on_update||trigger|
             market_levels_recomputed|p_symbol character varying DEFAULT NULL::character varying|TABLE(symbol character varying, side order_side_enum, price numeric, quantity numeric, order_count bigint)|market_levels as computed from orders (one symbol, or all)
             market_sides_recomputed|p_symbol character varying DEFAULT NULL::character varying|TABLE(symbol character varying, side order_side_enum, quantity numeric, order_count bigint)|market_sides as computed from orders (one symbol, or all)
             market_state_differences|p_symbol character varying DEFAULT NULL::character varying|TABLE(state text, symbol character varying, key text, maintained text, recomputed text)|Every difference between the maintained market state and a recomputation from orders and trades; no row when they agree
             market_trades_on_insert||trigger|
             merge_orders_bounds|p_year date, OUT target text, OUT range_from timestamp with time zone, OUT range_to timestamp with time zone|record|The yearly orders partition of the year containing p_year: its name and UTC bounds
             merge_orders_candidates|p_monthly_months integer DEFAULT NULL::integer|SETOF date|Years whose monthly orders partitions all lie before the monthly window, oldest first
             merge_orders_copy|p_year date, p_partition text, p_after uuid DEFAULT NULL::uuid, p_batch integer DEFAULT 10000, OUT last_id uuid, OUT copied bigint|record|Merge step 2 for orders: copies the next batch of a monthly partition (order_id after p_after) into orders_YYYY; returns the last order_id of the batch (NULL when done) and the rows inserted
             merge_orders_prepare|p_year date|SETOF text|Merge step 1 for orders: creates the unattached orders_YYYY and mirrors writes of the year's monthly partitions into it; returns those partitions
             merge_orders_switch|p_year date|text|Merge step 4 for orders: in one short transaction, replaces the year's monthly partitions by orders_YYYY
             merge_orders_validate|p_year date|void|Merge step 3 for orders: validates the bounds check and foreign key of orders_YYYY
             merge_range_copy|p_target text, p_partition text, p_id text, p_after uuid, p_batch integer, OUT last_id uuid, OUT copied bigint|record|Merge step 2: copies the next p_batch rows of a partition (by p_id, after p_after) into the table being filled; returns the last id of the batch (NULL when none was left) and the rows inserted
             merge_range_mirror||trigger|During a merge, copies each write of a partition being merged into the table being filled
             merge_range_prepare|p_parent text, p_id text, p_key text, p_target text, p_from timestamp with time zone, p_to timestamp with time zone|SETOF text|Merge step 1: creates the unattached table for [p_from, p_to) and mirrors writes of the partitions it replaces into it; returns those partitions
             merge_range_switch|p_parent text, p_key text, p_target text, p_from timestamp with time zone, p_to timestamp with time zone|text|Merge step 4: in one short transaction, replaces the partitions of [p_from, p_to) by the filled table
             merge_range_validate|p_target text|void|Merge step 3: validates the bounds check and foreign keys of the table being filled
             merge_trades_candidates|p_daily_days integer DEFAULT NULL::integer|SETOF date|Months whose daily trades partitions all lie before the daily window, oldest first
             merge_trades_copy|p_month date, p_partition text|bigint|Merge step 2: copies one daily trades partition into the month's table
             merge_trades_mirror||trigger|During a merge, copies each write of a daily trades partition into the monthly table being filled
             merge_trades_prepare|p_month date|SETOF text|Merge step 1: creates the unattached monthly trades table and mirrors writes of the month's daily partitions into it; returns those partitions
             merge_trades_switch|p_month date|text|Merge step 4: in one short transaction, replaces the month's daily trades partitions by the monthly one
             merge_trades_validate|p_month date|void|Merge step 3: validates the monthly trades table's bounds and foreign key
             orders_monthly_months||integer|Full months of orders kept in monthly partitions before their year is merged: the setting trade_engine.orders_monthly_months, 3 when unset
             partition_lock_demand||TABLE(parent_table text, partitions integer, locks integer)|Partitions of orders and trades and the locks (partitions and their indexes) a statement that cannot prune them takes
             prune_trade_candles||bigint|Deletes the candles wholly older than the oldest trade the table can hold (after retention dropped partitions); returns how many
             range_partitions|p_parent text|TABLE(partition_name text, range_start timestamp with time zone, range_end timestamp with time zone)|The ranged partitions of a partitioned table of the current schema with their bounds, oldest first
             rebuild_market_state|p_symbol character varying DEFAULT NULL::character varying|void|Recomputes market_levels, market_sides, market_last_trade and trade_candles from orders and trades (one symbol, or all): after a bulk load, or for repair
             refresh_order_book_snapshot||void|Refresh order book materialized view - call periodically or on-demand
             remove_stop_order_from_watchlist||trigger|Automatically removes stop orders from watchlist when completed/cancelled
             set_cancelled_at_timestamp||trigger|
             set_filled_at_timestamp||trigger|
             trade_candles_of|p_rows text|SETOF trade_candles|The 1-minute and 1-hour candles of the trades a query returns
             trade_candles_on_delete||trigger|
             trade_candles_on_update||trigger|
             trade_candles_recompute|p_keys jsonb|void|Recomputes the candles of the given (symbol, hour) buckets from trades
             trade_candles_recomputed|p_symbol character varying DEFAULT NULL::character varying|SETOF trade_candles|trade_candles as computed from trades (one symbol, or all)
             trade_window_totals|p_symbol character varying, p_from timestamp with time zone, p_to timestamp with time zone|TABLE(symbol character varying, trade_count bigint, volume numeric, quote_volume numeric, low_price numeric, high_price numeric)|Trade count, base and quote volume, low and high of the trades in [p_from, p_to] (p_to NULL: unbounded) per symbol (NULL: all), from trade_candles and the partial edge minutes of trades
             trades_daily_days||integer|Days of trades kept in daily partitions: the setting trade_engine.trades_daily_days, 90 when unset
             trades_partition_ranges||TABLE(partition_name text, range_start timestamp with time zone, range_end timestamp with time zone)|The ranged partitions of trades with their bounds, oldest first
             update_updated_at_column||trigger|
             validate_order_status_transition||trigger|"
        )
    );
}

#[tokio::test]
async fn views_have_their_columns_and_comments() {
    let db = TestDb::migrated().await;
    let found = lines(
        db.conn(),
        "SELECT c.relname, c.relkind,
                (SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0),
                obj_description(c.oid, 'pg_class')
         FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('v', 'm')
         ORDER BY c.relname",
    )
    .await;
    assert_eq!(
        found,
        expect(
            "mv_order_book_snapshot|m|symbol,side,price,total_quantity,order_count,last_refresh|Materialized view of order book - refresh periodically for performance
             v_active_orders|v|order_id,user_id,symbol,side,order_type,quantity,filled_quantity,remaining_quantity,price,created_at,updated_at|Active orders sorted by Price-Time Priority for matching engine
             v_monitoring_active_orders|v|symbol,buy_orders,sell_orders,total_orders,total_quantity|Monitoring view: active order counts by symbol
             v_monitoring_order_status|v|status,count,percentage|Monitoring view: order status distribution (24h)
             v_monitoring_trade_volume_24h|v|symbol,trade_count,volume,quote_volume,avg_price|Monitoring view: 24-hour trade volume by symbol
             v_symbol_stats_24h|v|symbol,trade_count,volume,quote_volume,low_price,high_price,last_price|24-hour trading statistics per symbol
             v_user_order_summary|v|user_id,symbol,open_orders,filled_orders,cancelled_orders,total_volume|Summary statistics of user orders per symbol"
        )
    );
}

#[tokio::test]
async fn partitions_cover_twelve_months_and_thirty_days_in_utc() {
    let db = TestDb::migrated().await;
    let orders: Vec<String> = column(
        db.conn(),
        "SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid)
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'orders'::regclass ORDER BY c.relname",
    )
    .await;
    let expected_orders: Vec<String> = column(
        db.conn(),
        "SELECT 'orders_' || to_char(m, 'YYYY_MM') || ' FOR VALUES FROM ('''
                || to_char(m, 'YYYY-MM-DD') || ' 00:00:00+00'') TO ('''
                || to_char(m + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00'')'
         FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                              date_trunc('month', now() AT TIME ZONE 'UTC') + interval '11 months',
                              interval '1 month') m
         UNION ALL SELECT 'orders_default DEFAULT'
         ORDER BY 1",
    )
    .await;
    assert_eq!(orders.len(), 13);
    assert_eq!(orders, expected_orders);

    let trades: Vec<String> = column(
        db.conn(),
        "SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid)
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'trades'::regclass ORDER BY c.relname",
    )
    .await;
    let expected_trades: Vec<String> = column(
        db.conn(),
        "SELECT 'trades_' || to_char(d, 'YYYY_MM_DD') || ' FOR VALUES FROM ('''
                || to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00'') TO ('''
                || to_char(d + interval '1 day', 'YYYY-MM-DD') || ' 00:00:00+00'')'
         FROM generate_series((now() AT TIME ZONE 'UTC')::date::timestamp,
                              (now() AT TIME ZONE 'UTC')::date::timestamp + interval '29 days',
                              interval '1 day') d
         UNION ALL SELECT 'trades_default DEFAULT'
         ORDER BY 1",
    )
    .await;
    assert_eq!(trades.len(), 31);
    assert_eq!(trades, expected_trades);
}

#[tokio::test]
async fn seed_rows_are_the_ten_symbols_and_two_retention_rules() {
    let db = TestDb::migrated().await;
    let symbols = lines(
        db.conn(),
        "SELECT symbol, base_asset, quote_asset, status, tick_size, min_order_size, max_order_size,
                min_order_value, price_band_percentage, maker_fee, taker_fee, trading_timezone
         FROM symbols ORDER BY symbol_id",
    )
    .await;
    let rest = "10.00000000|10.00|0.0005|0.0010|UTC";
    assert_eq!(
        symbols,
        expect(&format!(
            "BTC/USDT|BTC|USDT|ACTIVE|0.01000000|0.00010000|100.00000000|{rest}
             ETH/USDT|ETH|USDT|ACTIVE|0.01000000|0.00100000|1000.00000000|{rest}
             BNB/USDT|BNB|USDT|ACTIVE|0.01000000|0.01000000|10000.00000000|{rest}
             SOL/USDT|SOL|USDT|ACTIVE|0.01000000|0.10000000|50000.00000000|{rest}
             XRP/USDT|XRP|USDT|ACTIVE|0.00010000|1.00000000|1000000.00000000|{rest}
             ADA/USDT|ADA|USDT|ACTIVE|0.00010000|1.00000000|1000000.00000000|{rest}
             DOGE/USDT|DOGE|USDT|ACTIVE|0.00001000|1.00000000|10000000.00000000|{rest}
             AVAX/USDT|AVAX|USDT|ACTIVE|0.01000000|0.10000000|10000.00000000|{rest}
             DOT/USDT|DOT|USDT|ACTIVE|0.01000000|0.10000000|10000.00000000|{rest}
             MATIC/USDT|MATIC|USDT|ACTIVE|0.00010000|1.00000000|1000000.00000000|{rest}"
        ))
    );
    let retention = lines(
        db.conn(),
        "SELECT table_name, retention_months, description FROM partition_retention_config
         ORDER BY table_name",
    )
    .await;
    assert_eq!(
        retention,
        expect(
            "orders|60|Keep orders for 5 years (regulatory compliance)
             trades|60|Keep trades for 5 years (regulatory requirement)"
        )
    );
}

#[tokio::test]
async fn only_the_outbox_has_storage_parameters_and_they_make_it_a_queue() {
    let db = TestDb::migrated().await;
    // Every relation of the schema with storage parameters of its own.
    let with_options = lines(
        db.conn(),
        "SELECT c.relname, array_to_string(c.reloptions, ',')
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.reloptions IS NOT NULL
         ORDER BY 1",
    )
    .await;
    assert_eq!(
        with_options,
        expect("event_outbox|autovacuum_vacuum_scale_factor=0,autovacuum_vacuum_threshold=10000")
    );
    // What autovacuum computes from them: the dead versions after which it
    // takes the table up, at a thousand rows and at ten million.
    let trigger_points = lines(
        db.conn(),
        "SELECT n, o.threshold + o.scale * n
         FROM (SELECT max(split_part(opt, '=', 2)) FILTER (WHERE opt LIKE 'autovacuum_vacuum_threshold=%')::float8 AS threshold,
                      max(split_part(opt, '=', 2)) FILTER (WHERE opt LIKE 'autovacuum_vacuum_scale_factor=%')::float8 AS scale
               FROM pg_class c, unnest(c.reloptions) AS opt
               WHERE c.oid = 'event_outbox'::regclass) o,
              (VALUES (1000::float8), (10000000)) AS sizes(n)
         ORDER BY n",
    )
    .await;
    assert_eq!(trigger_points, expect("1000|10000\n10000000|10000"));
}
