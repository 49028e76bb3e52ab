//! Authorization under attack: for every user endpoint,
//! another user's credentials, none, a forged, expired or foreign-signed token
//! are refused, and nothing of the victim's data appears in any answer.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tests::app::wire::{assert_error_body, read};
use tests::app::{AppOptions, TestApp, spawn_app};
use uuid::Uuid;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token is signed")
}

/// The victim's rows: a resting order, a filled one and a trade against a
/// third user, so every user endpoint has something to leak.
struct Victim {
    user: Uuid,
    order_ids: Vec<String>,
    trade_ids: Vec<String>,
}

async fn victim(app: &TestApp) -> Victim {
    let (user, counterparty) = (Uuid::new_v4(), Uuid::new_v4());
    let resting = app.limit(user, "BUY", "0.5", "40000.00").await;
    let sold = app.limit(user, "SELL", "0.1", "50000.00").await;
    let taken = app.market(counterparty, "BUY", "0.1").await;
    let trade_ids = taken["trades"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Victim {
        user,
        order_ids: [resting, sold]
            .iter()
            .filter_map(|o| o["id"].as_str().map(str::to_owned))
            .collect(),
        trade_ids,
    }
}

/// Every user endpoint, aimed at the victim's rows where it takes an id.
fn endpoints(victim: &Victim) -> Vec<(&'static str, String)> {
    let mut all = vec![
        ("GET", "/api/v1/orders".to_owned()),
        (
            "GET",
            "/api/v1/orders?symbol=BTC-USDT&status=OPEN".to_owned(),
        ),
        ("POST", "/api/v1/orders".to_owned()),
        ("GET", "/api/v1/me/trades".to_owned()),
        ("GET", "/api/v1/me/trades?symbol=BTC/USDT".to_owned()),
        ("GET", "/api/v1/me/stats".to_owned()),
    ];
    for id in &victim.order_ids {
        all.push(("GET", format!("/api/v1/orders/{id}")));
        all.push(("DELETE", format!("/api/v1/orders/{id}")));
    }
    all
}

/// Sends `method path` with `credentials` (a header, or none) and returns
/// (status, body text); never a 5xx.
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    credentials: &[(&str, &str)],
) -> (u16, String) {
    let mut request = match method {
        "GET" => app.client.get(app.url(path)),
        "DELETE" => app.client.delete(app.url(path)),
        _ => app.client.post(app.url(path)).json(
            &json!({"symbol": "BTC/USDT", "side": "SELL", "type": "LIMIT", "quantity": "0.1", "price": "54000"}),
        ),
    };
    for (name, value) in credentials {
        request = request.header(*name, *value);
    }
    let reply = read(app.send(request).await).await;
    assert!(
        reply.status < 500,
        "{method} {path}: {} {}",
        reply.status,
        reply.text
    );
    (reply.status, reply.text)
}

/// Fails when `text` holds any of the victim's ids, except an id the caller
/// sent in the request itself (a 403 may name the order asked for).
fn assert_no_leak(victim: &Victim, what: &str, text: &str) {
    let user = victim.user.to_string();
    for secret in victim
        .order_ids
        .iter()
        .chain(&victim.trade_ids)
        .chain(std::iter::once(&user))
        .filter(|secret| !what.contains(secret.as_str()))
    {
        assert!(
            !text.contains(secret.as_str()),
            "{what} leaks {secret}: {text}"
        );
    }
}

/// JWT mode: no credentials, garbage, forged claims, an expired token, a
/// token signed with another secret, `alg: none`, the trusted header (off in
/// this mode): each a 401 with the contract's body; the attacker's own valid
/// token sees only the attacker's rows (403 on the victim's orders).
#[tokio::test]
async fn every_user_endpoint_refuses_bad_credentials_and_never_leaks_another_users_rows() {
    let app = spawn_app(AppOptions::jwt()).await;
    let victim = victim(&app).await;
    let victim_id = victim.user.to_string();
    let expired = sign(
        &json!({"sub": victim_id, "exp": now() - 120, "iat": now() - 3600}),
        &app.jwt_secret,
    );
    let foreign = sign(
        &json!({"sub": victim_id, "exp": now() + 3600}),
        "another secret, not the server's one",
    );
    let no_exp = sign(&json!({"sub": victim_id}), &app.jwt_secret);
    let no_sub = sign(&json!({"exp": now() + 3600}), &app.jwt_secret);
    let sql_sub = sign(
        &json!({"sub": "' OR 1=1 --", "exp": now() + 3600}),
        &app.jwt_secret,
    );
    // A valid token with its payload swapped for the victim's: the signature no longer matches.
    let attacker = Uuid::new_v4();
    let tampered = {
        let token = app.token(attacker);
        let parts: Vec<&str> = token.split('.').collect();
        let victims = app.token(victim.user);
        let payload = victims.split('.').nth(1).unwrap_or_default().to_owned();
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        app.token(victim.user).split('.').nth(1).unwrap_or_default()
    );
    let bearer = |t: &str| format!("Bearer {t}");
    let refusals: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no credentials", vec![]),
        (
            "garbage",
            vec![("authorization", "Bearer not.a.token".to_owned())],
        ),
        (
            "basic",
            vec![("authorization", format!("Basic {victim_id}"))],
        ),
        ("expired", vec![("authorization", bearer(&expired))]),
        ("another secret", vec![("authorization", bearer(&foreign))]),
        ("no exp", vec![("authorization", bearer(&no_exp))]),
        ("no sub", vec![("authorization", bearer(&no_sub))]),
        ("SQL in sub", vec![("authorization", bearer(&sql_sub))]),
        (
            "tampered payload",
            vec![("authorization", bearer(&tampered))],
        ),
        ("alg none", vec![("authorization", bearer(&unsigned))]),
        (
            "trusted header in JWT mode",
            vec![("x-user-id", victim_id.clone())],
        ),
    ];
    let mut checked = 0;
    for (method, path) in endpoints(&victim) {
        for (what, headers) in &refusals {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, text) = call(&app, method, &path, &headers).await;
            assert_eq!(status, 401, "{what}: {method} {path}: {text}");
            assert_error_body(&serde_json::from_str(&text).expect("JSON"), 401);
            assert_no_leak(&victim, &format!("{what}: {method} {path}"), &text);
            checked += 1;
        }
        // The attacker's own, valid token.
        let token = bearer(&app.token(attacker));
        let (status, text) = call(&app, method, &path, &[("authorization", &token)]).await;
        if path.contains(&victim.order_ids[0]) || path.contains(&victim.order_ids[1]) {
            assert_eq!(status, 403, "another user's order: {method} {path}: {text}");
        } else {
            assert!(
                status < 300,
                "the attacker's own view: {method} {path}: {status} {text}"
            );
        }
        assert_no_leak(&victim, &format!("attacker: {method} {path}"), &text);
        checked += 1;
    }
    // Nothing the attacks did changed the victim's orders.
    for id in &victim.order_ids {
        let order = app
            .get_json(&format!("/api/v1/orders/{id}"), victim.user, 200)
            .await;
        assert_ne!(order["status"], "CANCELLED", "{order}");
    }
    println!("authorization: {checked} refused or isolated requests, 0 leaks");
    app.shutdown().await;
}

/// Trusted-header mode: another user's id in the header sees only that
/// user's rows (the gateway's job is to set it honestly); a malformed header,
/// none, or a bearer token instead are 401.
#[tokio::test]
async fn trusted_header_mode_refuses_malformed_ids_and_isolates_users() {
    let app = spawn_app(AppOptions::trusted_header()).await;
    let victim = victim(&app).await;
    let attacker = Uuid::new_v4().to_string();
    let token = format!("Bearer {}", app.token(victim.user));
    for (method, path) in endpoints(&victim) {
        for headers in [
            vec![],
            vec![("x-user-id", "' OR 1=1 --")],
            vec![("x-user-id", "")],
            vec![("x-user-id", "00000000-0000-0000-0000-00000000000g")],
            vec![("authorization", token.as_str())],
        ] {
            let (status, text) = call(&app, method, &path, &headers).await;
            assert_eq!(status, 401, "{headers:?}: {method} {path}: {text}");
            assert_no_leak(&victim, &format!("{headers:?}: {method} {path}"), &text);
        }
        let (status, text) = call(&app, method, &path, &[("x-user-id", &attacker)]).await;
        if victim.order_ids.iter().any(|id| path.contains(id.as_str())) {
            assert_eq!(status, 403, "{method} {path}: {text}");
        } else {
            assert!(status < 300, "{method} {path}: {status} {text}");
        }
        assert_no_leak(&victim, &format!("attacker: {method} {path}"), &text);
    }
    app.shutdown().await;
}
