//! Terse raw-SQL helpers for tests: each panics with the statement and the
//! database's error, so a failing test says which statement failed and why.

use sea_orm::prelude::Uuid;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, TryGetable};

/// Runs one or more statements (simple query protocol, no binds).
pub async fn exec(db: &impl ConnectionTrait, sql: &str) {
    if let Err(err) = db.execute_unprepared(sql).await {
        panic!("SQL failed: {err}\n{sql}");
    }
}

/// Runs `sql` and returns the database's error, for statements expected to fail.
pub async fn try_exec(db: &impl ConnectionTrait, sql: &str) -> Result<(), DbErr> {
    db.execute_unprepared(sql).await.map(|_| ())
}

/// All rows of a query.
pub async fn rows(db: &impl ConnectionTrait, sql: &str) -> Vec<QueryResult> {
    match db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
    {
        Ok(rows) => rows,
        Err(err) => panic!("SQL failed: {err}\n{sql}"),
    }
}

/// How many sessions of the current database wait for a lock that
/// `condition` (a predicate on `pg_locks`, `true` for any) describes.
/// `pg_locks` is cluster-wide, and the test databases cloned from one
/// template share their tables' OIDs: `relation = 'orders'::regclass` alone
/// also counts the waits of tests running beside this one.
pub async fn waiting_sessions(db: &impl ConnectionTrait, condition: &str) -> i64 {
    scalar(
        db,
        &format!(
            "SELECT count(DISTINCT pid) FROM pg_locks
             WHERE NOT granted AND ({condition})
               AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())"
        ),
    )
    .await
}

/// The first column of every row.
pub async fn column<T: TryGetable>(db: &impl ConnectionTrait, sql: &str) -> Vec<T> {
    rows(db, sql)
        .await
        .iter()
        .map(|row| get(row, 0, sql))
        .collect()
}

/// The first column of the only row.
pub async fn scalar<T: TryGetable>(db: &impl ConnectionTrait, sql: &str) -> T {
    let all = rows(db, sql).await;
    assert_eq!(all.len(), 1, "expected exactly one row from:\n{sql}");
    get(&all[0], 0, sql)
}

/// Column `index` of `row`.
pub fn get<T: TryGetable>(row: &QueryResult, index: usize, sql: &str) -> T {
    match row.try_get_by_index(index) {
        Ok(value) => value,
        Err(err) => panic!("cannot read column {index}: {err:?}\n{sql}"),
    }
}

/// Every row rendered as `col1|col2|…` text (NULL as empty), which keeps
/// expectations on multi-column results short and exact. Values are rendered
/// as PostgreSQL's JSON does, so numbers keep their exact scale (`1.50000000`)
/// and timestamps read `2026-01-02T03:04:05+00:00`; the query's row order is kept.
pub async fn lines(db: &impl ConnectionTrait, sql: &str) -> Vec<String> {
    let wrapped = format!(
        "SELECT (SELECT string_agg(coalesce(j.value, ''), '|' ORDER BY j.ordinality) \
         FROM json_each_text(row_to_json(r)) WITH ORDINALITY j) FROM ({sql}) r"
    );
    column::<String>(db, &wrapped).await
}

/// The SQLSTATE and message of a database error, e.g. `("23503", "…")`.
pub fn sql_error(err: &DbErr) -> (String, String) {
    let text = err.to_string();
    let code = match err {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned())
            .unwrap_or_default(),
        _ => String::new(),
    };
    (code, text)
}

/// Inserts an order from a compact spec and returns its id: `spec` is
/// `"SYMBOL SIDE TYPE STATUS QUANTITY [PRICE]"`; `extra` lists further
/// `column = value` pairs separated by `; `, e.g.
/// `"filled_quantity = 0.25; created_at = now() - interval '1 hour'"`.
/// Values are SQL literals, written by the test.
pub async fn insert_order(
    db: &impl ConnectionTrait,
    user: impl std::fmt::Display,
    spec: &str,
    extra: &str,
) -> Uuid {
    let fields: Vec<&str> = spec.split_whitespace().collect();
    let [symbol, side, order_type, status, quantity, price @ ..] = fields.as_slice() else {
        panic!("order spec needs SYMBOL SIDE TYPE STATUS QUANTITY [PRICE]: {spec}");
    };
    let mut columns = vec![
        "user_id",
        "symbol",
        "side",
        "order_type",
        "status",
        "quantity",
    ];
    let mut values = vec![
        format!("'{user}'"),
        format!("'{symbol}'"),
        format!("'{side}'"),
        format!("'{order_type}'"),
        format!("'{status}'"),
        (*quantity).to_owned(),
    ];
    if let [price] = price {
        columns.push("price");
        values.push((*price).to_owned());
    }
    for (column, value) in extra.split("; ").filter_map(|pair| pair.split_once(" = ")) {
        columns.push(column);
        values.push(value.to_owned());
    }
    scalar(
        db,
        &format!(
            "INSERT INTO orders ({}) VALUES ({}) RETURNING order_id",
            columns.join(", "),
            values.join(", ")
        ),
    )
    .await
}

/// Waits until `event_outbox` holds no unpublished event (a relay published
/// everything), polling the table; panics after `within`.
pub async fn wait_until_relayed(db: &impl ConnectionTrait, within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let pending: i64 = scalar(
            db,
            "SELECT count(*) FROM event_outbox WHERE published_at IS NULL",
        )
        .await;
        if pending == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pending} events stay unpublished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
