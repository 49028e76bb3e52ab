//! Saying why a connection failed, in one line a person can act on, and
//! showing a URL without its password. The CLI and the api use both.

use std::str::FromStr;

use crate::sea_orm::sqlx;

/// The URL with its password replaced by `***`, for messages and logs.
/// Splits at the last `@`, so a password holding `/` or `@` is still hidden.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable URL>".to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Why connecting to `url` failed with `error`: `cannot connect to <url
/// without password> (check DATABASE_URL): <reason>`, where a database that
/// does not exist (SQLSTATE 3D000) says how to create it.
pub fn connect_problem(url: &str, error: &sqlx::Error) -> String {
    let head = format!("cannot connect to {} (check DATABASE_URL)", redact(url));
    let missing = error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "3D000");
    match sqlx::postgres::PgConnectOptions::from_str(url) {
        Ok(options) if missing => {
            let database = options.get_database().unwrap_or("postgres");
            format!(
                "{head}: database \"{database}\" does not exist on {host}:{port}; create it \
                 (`createdb -h {host} -p {port} -U {user} {database}`, or CREATE DATABASE \
                 {database}) or point DATABASE_URL at one that exists",
                host = options.get_host(),
                port = options.get_port(),
                user = options.get_username(),
            )
        }
        _ => format!("{head}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db.internal:5432/trade?sslmode=require"),
            "postgres://app:***@db.internal:5432/trade?sslmode=require"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/trade"),
            "postgres://postgres@127.0.0.1/trade"
        );
        assert_eq!(redact("postgres://host/db"), "postgres://host/db");
        assert_eq!(
            redact("postgres://app:p/a@ss@db/trade"),
            "postgres://app:***@db/trade"
        );
        assert_eq!(redact("not a url"), "<unparsable URL>");
    }
}
