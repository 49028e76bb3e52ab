//! The test support itself: databases per test are independent, compared
//! faithfully by snapshots, and gone once their handle is.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use tests::{catalog, db::TestDb};

async fn database_exists(observer: &DatabaseConnection, name: &str) -> bool {
    observer
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .expect("pg_database is readable")
        .is_some()
}

#[tokio::test]
async fn two_empty_databases_have_equal_snapshots() {
    let (left, right) = (TestDb::empty().await, TestDb::empty().await);
    assert_ne!(left.name(), right.name());

    let (left, right) = (
        catalog::snapshot(left.conn()).await,
        catalog::snapshot(right.conn()).await,
    );

    assert!(
        left == right,
        "empty databases differ:\n{}",
        left.diff(&right)
    );
    assert!(!left.section("extensions").is_empty(), "plpgsql is listed");
}

#[tokio::test]
async fn diff_shows_a_table_created_in_one_database() {
    let (changed, untouched) = (TestDb::empty().await, TestDb::empty().await);
    changed
        .conn()
        .execute_unprepared(
            "CREATE TABLE smoke_widgets (id bigserial PRIMARY KEY, label text NOT NULL, made_at timestamptz DEFAULT now()); \
             INSERT INTO smoke_widgets (label) VALUES ('first')",
        )
        .await
        .expect("the table is created");

    let diff = catalog::snapshot(changed.conn())
        .await
        .diff(&catalog::snapshot(untouched.conn()).await);

    for expected in [
        "- smoke_widgets: table",
        "- smoke_widgets.label #2: text not null",
        "- smoke_widgets: smoke_widgets_pkey primary key: PRIMARY KEY (id)",
        "- smoke_widgets_id_seq: bigint",
        "- smoke_widgets: 1 rows, md5 ",
    ] {
        assert!(
            diff.lines().any(|line| line.starts_with(expected)),
            "diff lacks `{expected}`:\n{diff}"
        );
    }
    assert!(!diff.lines().any(|line| line.starts_with('+')), "{diff}");
}

#[tokio::test]
async fn a_migrated_database_is_dropped_with_its_handle() {
    let observer = TestDb::empty().await;
    let db = TestDb::migrated().await;
    let name = db.name().to_owned();
    assert!(database_exists(observer.conn(), &name).await);
    assert!(
        !catalog::snapshot(db.conn())
            .await
            .section("relations")
            .is_empty(),
        "the copy has the migrated schema"
    );

    drop(db);

    assert!(
        !database_exists(observer.conn(), &name).await,
        "{name} outlived its TestDb"
    );
}

#[tokio::test]
async fn a_database_is_dropped_when_its_test_panics() {
    let observer = TestDb::empty().await;
    let (sender, receiver) = std::sync::mpsc::channel();
    // A stand-in for a failing test: its own thread and runtime, panicking
    // while it holds a TestDb with an open pool and an open transaction.
    let failing_test = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime starts");
        runtime.block_on(async move {
            let db = TestDb::empty().await;
            let transaction = db.conn().begin().await.expect("a transaction starts");
            transaction
                .execute_unprepared("CREATE TABLE half_done (id int)")
                .await
                .expect("the table is created");
            sender.send(db.name().to_owned()).expect("the name is sent");
            panic!("the test fails while holding {}", db.name());
        })
    });
    assert!(failing_test.join().is_err(), "the stand-in test panicked");
    let name = receiver
        .recv()
        .expect("the failing test created a database");

    assert!(
        !database_exists(observer.conn(), &name).await,
        "{name} outlived its panicking test"
    );
}

#[tokio::test]
async fn a_copy_of_the_template_equals_a_database_migrated_in_place() {
    let copied = TestDb::migrated().await;
    let in_place = TestDb::empty().await;
    migration::run(
        in_place.conn(),
        migration::Operation::Up(None),
        migration::DataLoss::Refuse,
    )
    .await
    .expect("the migrations apply to an empty database");

    let (copied, in_place) = (
        catalog::snapshot(copied.conn()).await,
        catalog::snapshot(in_place.conn()).await,
    );

    assert!(
        copied == in_place,
        "the template differs:\n{}",
        copied.diff(&in_place)
    );
}
