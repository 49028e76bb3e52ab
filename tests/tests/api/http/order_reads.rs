//! Reading, cancelling and listing the caller's orders over real HTTP
//! (the OpenAPI contract): 403 for another user's order, 404 for none, 400
//! for a malformed id, 409 for a terminal order, filters, bounds, and offset
//! and keyset (`X-Next-Cursor`) pages.

use super::spawn_app;
use serde_json::{Value, json};
use tests::app::wire::{self, assert_order, expect_error, expect_json, mentions};
use tests::app::{AppOptions, TestApp};
use uuid::Uuid;

#[tokio::test]
async fn reading_an_order_is_the_owners_alone() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let order = app.limit(alice, "BUY", "1", "40000").await;
    let path = format!("/api/v1/orders/{}", order["id"].as_str().expect("id"));

    assert_eq!(app.get_json(&path, alice, 200).await["id"], order["id"]);
    expect_error(app.get(&path, bob).await, 403).await;
    expect_error(
        app.get(&format!("/api/v1/orders/{}", Uuid::new_v4()), alice)
            .await,
        404,
    )
    .await;
    for bad in ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"] {
        let err = expect_error(app.get(&format!("/api/v1/orders/{bad}"), alice).await, 400).await;
        assert!(mentions(&err, "id"), "{bad}: {err}");
    }
}

#[tokio::test]
async fn cancelling_an_open_order_answers_it_cancelled_once() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let order = app.limit(alice, "BUY", "1", "40000").await;
    let path = format!("/api/v1/orders/{}", order["id"].as_str().expect("id"));

    expect_error(app.delete(&path, bob).await, 403).await;
    assert_eq!(
        app.get_json(&path, alice, 200).await["status"],
        "OPEN",
        "another user's cancel changed nothing"
    );

    let cancelled = expect_json(app.delete(&path, alice).await, 200).await;
    assert_order(&cancelled);
    assert_eq!(cancelled["id"], order["id"]);
    assert_eq!(cancelled["status"], "CANCELLED");
    wire::assert_timestamp(&cancelled["cancelled_at"], "cancelled_at");
    let book = app.get_public_json("/api/v1/orderbook/BTC-USDT", 200).await;
    assert_eq!(book["bids"], json!([]), "the cancelled bid left the book");

    expect_error(app.delete(&path, alice).await, 409).await;
    expect_error(
        app.delete(&format!("/api/v1/orders/{}", Uuid::new_v4()), alice)
            .await,
        404,
    )
    .await;
    let err = expect_error(app.delete("/api/v1/orders/nope", alice).await, 400).await;
    assert!(mentions(&err, "id"), "{err}");
}

#[tokio::test]
async fn cancelling_a_filled_order_is_409() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let sell = app.limit(alice, "SELL", "1", "50000").await;
    app.market(bob, "BUY", "1").await;
    let path = format!("/api/v1/orders/{}", sell["id"].as_str().expect("id"));

    let err = expect_error(app.delete(&path, alice).await, 409).await;
    assert!(mentions(&err, "filled"), "{err}");
    assert_eq!(app.get_json(&path, alice, 200).await["status"], "FILLED");

    // A market order that finds no liquidity expires, and stays expired.
    let unfilled = app.market(bob, "BUY", "1").await;
    assert_eq!(unfilled["order"]["status"], "EXPIRED", "{unfilled}");
    let path = format!(
        "/api/v1/orders/{}",
        unfilled["order"]["id"].as_str().expect("id")
    );
    let err = expect_error(app.delete(&path, bob).await, 409).await;
    assert!(mentions(&err, "expired"), "{err}");
}

/// Places `n` resting bids for `user`, oldest first; returns their ids.
async fn resting_bids(app: &TestApp, user: Uuid, n: usize) -> Vec<Value> {
    let mut ids = Vec::new();
    for i in 0..n {
        let order = app
            .limit(user, "BUY", "1", &format!("{}", 40_000 + i))
            .await;
        ids.push(order["id"].clone());
    }
    ids
}

fn ids(list: &Value) -> Vec<Value> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|order| order["id"].clone())
        .collect()
}

#[tokio::test]
async fn orders_are_listed_newest_first_with_filters_and_bounds() {
    let app = spawn_app(AppOptions::jwt()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let mut placed = resting_bids(&app, alice, 4).await;
    let eth = app
        .place_ok(
            alice,
            &json!({"symbol": "ETH/USDT", "side": "SELL", "type": "LIMIT", "quantity": "1", "price": "3000"}),
        )
        .await;
    placed.push(eth["order"]["id"].clone());
    resting_bids(&app, bob, 1).await;

    let all = app.get_json("/api/v1/orders", alice, 200).await;
    let newest_first: Vec<Value> = placed.iter().rev().cloned().collect();
    assert_eq!(ids(&all), newest_first, "alice's orders only, newest first");
    for order in all.as_array().expect("list") {
        assert_order(order);
    }

    for query in ["symbol=eth-usdt", "symbol=ETH-USDT", "symbol=ETH%2FUSDT"] {
        let eth_only = app
            .get_json(&format!("/api/v1/orders?{query}"), alice, 200)
            .await;
        assert_eq!(ids(&eth_only), vec![placed[4].clone()], "{query}");
        assert_eq!(eth_only[0]["symbol"], "ETH/USDT");
    }

    let cancelled = placed[1].as_str().expect("id");
    expect_json(
        app.delete(&format!("/api/v1/orders/{cancelled}"), alice)
            .await,
        200,
    )
    .await;
    let only = app
        .get_json("/api/v1/orders?status=CANCELLED", alice, 200)
        .await;
    assert_eq!(ids(&only), vec![placed[1].clone()]);
    let open = app.get_json("/api/v1/orders?status=OPEN", alice, 200).await;
    assert_eq!(ids(&open).len(), 4);

    let page = app
        .get_json("/api/v1/orders?limit=2&offset=2", alice, 200)
        .await;
    assert_eq!(ids(&page), newest_first[2..4].to_vec());
    let past_the_end = app
        .get_json("/api/v1/orders?limit=2&offset=50", alice, 200)
        .await;
    assert_eq!(past_the_end, json!([]));
    app.get_json("/api/v1/orders?limit=100", alice, 200).await;

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("offset=x", "offset"),
        ("status=BOGUS", "status"),
        ("colour=red", "colour"),
    ] {
        let err = expect_error(
            app.get(&format!("/api/v1/orders?{query}"), alice).await,
            400,
        )
        .await;
        assert!(mentions(&err, field), "{query}: {err}");
    }
}

/// Follows `X-Next-Cursor` from the first page of `limit`; returns the pages.
async fn keyset_pages(app: &TestApp, path: &str, user: Uuid, limit: usize) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut next = format!("{path}?limit={limit}");
    for _ in 0..20 {
        let reply = wire::read(app.get(&next, user).await).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let page = ids(&reply.json());
        assert!(page.len() <= limit);
        pages.push(page);
        match reply.header("x-next-cursor") {
            Some(cursor) => next = format!("{path}?limit={limit}&cursor={cursor}"),
            None => return pages,
        }
    }
    panic!("the cursor never ran out: {pages:?}");
}

#[tokio::test]
async fn a_listing_defaults_to_50_orders_and_the_cursor_goes_on() {
    let app = spawn_app(AppOptions::jwt()).await;
    let alice = Uuid::new_v4();
    let placed = resting_bids(&app, alice, 51).await;

    let first = wire::read(app.get("/api/v1/orders", alice).await).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let first_ids = ids(&first.json());
    let newest_first: Vec<Value> = placed.iter().rev().cloned().collect();
    assert_eq!(first_ids, newest_first[..50].to_vec());
    let cursor = first
        .header("x-next-cursor")
        .expect("a full page has a cursor");
    let rest = app
        .get_json(&format!("/api/v1/orders?cursor={cursor}"), alice, 200)
        .await;
    assert_eq!(ids(&rest), newest_first[50..].to_vec());
}

#[tokio::test]
async fn keyset_pages_concatenate_to_the_full_list() {
    let app = spawn_app(AppOptions::jwt()).await;
    let alice = Uuid::new_v4();
    resting_bids(&app, alice, 7).await;
    let full = ids(&app.get_json("/api/v1/orders?limit=100", alice, 200).await);
    assert_eq!(full.len(), 7);

    let pages = keyset_pages(&app, "/api/v1/orders", alice, 3).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, 1], "the last short page has no cursor");
    assert_eq!(pages.concat(), full);

    // A full last page may have a next one, which is then empty.
    let pages = keyset_pages(&app, "/api/v1/orders", alice, 7).await;
    assert_eq!(pages.concat(), full);
    assert!(pages.len() <= 2 && pages.get(1).is_none_or(Vec::is_empty));

    let first = wire::read(app.get("/api/v1/orders?limit=3", alice).await).await;
    let cursor = first.header("x-next-cursor").expect("a cursor");
    for query in [
        format!("cursor={cursor}&offset=3"),
        "cursor=garbage".to_owned(),
    ] {
        let err = expect_error(
            app.get(&format!("/api/v1/orders?{query}"), alice).await,
            400,
        )
        .await;
        assert!(mentions(&err, "cursor"), "{query}: {err}");
    }
}
