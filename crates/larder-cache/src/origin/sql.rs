//! The SQL origin: SQLite or PostgreSQL by URL, through sqlx's `Any` driver so both take one
//! code path. The configured statements name the key's parts as `:part` (and the written
//! value as `:value`); those are rewritten to the database's numbered placeholders and the
//! parts are bound as parameters, never spliced into the SQL text.

use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::Bytes;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, AssertSqlSafe, Row};

use super::Fetched;
use super::config::redact_url as redact;
use super::pattern::{KeyPattern, Parts};

/// Connections per pool; loads beyond it wait for one (bounded by the load timeout).
const MAX_CONNECTIONS: u32 = 8;

/// Which placeholder syntax the database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// `?1`, `?2`
    Sqlite,
    /// `$1`, `$2`
    Postgres,
}

/// A statement with its placeholders numbered, and which name each number binds.
#[derive(Debug, Clone)]
struct Statement {
    /// Operator-written SQL from the configuration; values only ever reach it as parameters.
    sql: Arc<str>,
    names: Vec<String>,
}

/// Why a sql origin's settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum SqlConfigError {
    /// The URL names neither SQLite nor PostgreSQL.
    #[error("url {url:?}: expected sqlite:… or postgres://…")]
    Scheme {
        /// The URL, its password hidden.
        url: String,
    },
    /// There is no `load` query.
    #[error("a sql origin needs a `load` query")]
    NoLoad,
    /// A statement names a parameter that is neither a part of the pattern nor (in a write)
    /// `value`.
    #[error("statement {statement:?}: unknown parameter :{name} (known: {})", colon_list(.known))]
    UnknownParameter {
        /// The statement as configured.
        statement: String,
        /// The parameter's name, without the colon.
        name: String,
        /// The names it could have used.
        known: Vec<String>,
    },
    /// A statement uses the database's own placeholders (`?`, `$1`).
    #[error(
        "statement {statement:?}: name parameters as :part (and :value); ? and $n are not allowed"
    )]
    NativePlaceholder {
        /// The statement as configured.
        statement: String,
    },
    /// The write-through statement does not write the value.
    #[error("statement {statement:?} must use :value")]
    NoValue {
        /// The statement as configured.
        statement: String,
    },
    /// sqlx refused the URL.
    #[error("url {url:?}: {error}")]
    Url {
        /// The URL, its password hidden.
        url: String,
        /// What sqlx said.
        error: sqlx::Error,
    },
}

/// `names` as `:a, :b`.
fn colon_list(names: &[String]) -> String {
    let listed: Vec<String> = names.iter().map(|name| format!(":{name}")).collect();
    listed.join(", ")
}

/// Why a load or a write of a sql origin failed. Like every origin error, its text includes
/// its cause's, so the cause is not also its `source()`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SqlError {
    /// The database refused or failed the statement, or no connection was to be had.
    #[error("{0}")]
    Query(sqlx::Error),
    /// A write to an origin without a `store` statement.
    #[error("this origin has no `store` statement")]
    NoStore,
    /// A key part bound as a parameter is not text.
    #[error("key part {{{part}}} is not UTF-8 text")]
    NotText {
        /// The part's name.
        part: String,
    },
    /// The load query's first column is neither text nor bytes.
    #[error("the load query's first column must be text or bytes: {0}")]
    Value(sqlx::Error),
    /// The version column is not an integer.
    #[error("the version column must be an integer: {0}")]
    Version(sqlx::Error),
}

/// A SQL origin.
#[derive(Debug)]
pub(crate) struct SqlOrigin {
    pool: AnyPool,
    load: Statement,
    store: Option<Statement>,
}

/// Checks the URL's scheme and the statements' parameters without connecting.
pub(crate) fn check(
    url: &str,
    load: &str,
    store: &str,
    pattern: &KeyPattern,
) -> Result<(), SqlConfigError> {
    let dialect = dialect(url)?;
    let parts: Vec<&str> = pattern.names().collect();
    if load.trim().is_empty() {
        return Err(SqlConfigError::NoLoad);
    }
    Statement::parse(load, &parts, false, dialect)?;
    if !store.trim().is_empty() {
        Statement::parse(store, &parts, true, dialect)?;
    }
    Ok(())
}

fn dialect(url: &str) -> Result<Dialect, SqlConfigError> {
    if url.starts_with("sqlite:") {
        Ok(Dialect::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Dialect::Postgres)
    } else {
        Err(SqlConfigError::Scheme { url: redact(url) })
    }
}

impl SqlOrigin {
    /// A pool for `url` that connects on first use, so the node starts while the database is
    /// down.
    pub(crate) fn new(
        url: &str,
        load: &str,
        store: &str,
        pattern: &KeyPattern,
        timeout: Duration,
    ) -> Result<Self, SqlConfigError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        check(url, load, store, pattern)?;
        let dialect = dialect(url)?;
        let parts: Vec<&str> = pattern.names().collect();
        let load = Statement::parse(load, &parts, false, dialect)?;
        let store = match store.trim() {
            "" => None,
            text => Some(Statement::parse(text, &parts, true, dialect)?),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(timeout)
            .connect_lazy(url)
            .map_err(|error| SqlConfigError::Url {
                url: redact(url),
                error,
            })?;
        Ok(Self { pool, load, store })
    }

    /// Runs the load query for a key's parts.
    pub(crate) async fn load(&self, parts: &Parts<'_>) -> Result<Fetched, SqlError> {
        let query = self.load.bind(parts, None)?;
        let Some(row) = query
            .fetch_optional(&self.pool)
            .await
            .map_err(SqlError::Query)?
        else {
            return Ok(Fetched::NotFound);
        };
        let value = column_bytes(&row, 0)?;
        let version = column_version(&row, 1)?;
        Ok(Fetched::Found { value, version })
    }

    /// Runs the write-through statement; returns the version it reported, if any.
    pub(crate) async fn store(
        &self,
        parts: &Parts<'_>,
        value: &[u8],
    ) -> Result<Option<u64>, SqlError> {
        let statement = self.store.as_ref().ok_or(SqlError::NoStore)?;
        let row = statement
            .bind(parts, Some(value))?
            .fetch_optional(&self.pool)
            .await
            .map_err(SqlError::Query)?;
        match row {
            Some(row) => column_version(&row, 0),
            None => Ok(None),
        }
    }
}

impl Statement {
    /// Numbers the `:name` parameters of `sql`; each must be a part of the pattern (or
    /// `value` in a write statement). Quoted text, quoted identifiers, comments and
    /// PostgreSQL's `::` casts are left alone.
    fn parse(
        sql: &str,
        parts: &[&str],
        write: bool,
        dialect: Dialect,
    ) -> Result<Self, SqlConfigError> {
        let bytes = sql.as_bytes();
        let mut out = String::with_capacity(sql.len() + 8);
        let mut names: Vec<String> = Vec::new();
        let mut i = 0;
        let mut copied = 0;
        while i < bytes.len() {
            match bytes[i] {
                quote @ (b'\'' | b'"') => {
                    i += 1;
                    while i < bytes.len() && bytes[i] != quote {
                        i += 1;
                    }
                    i += 1;
                }
                b'-' if bytes.get(i + 1) == Some(&b'-') => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                b'/' if bytes.get(i + 1) == Some(&b'*') => {
                    i += 2;
                    while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/'))
                    {
                        i += 1;
                    }
                    i += 2;
                }
                b':' if bytes.get(i + 1) == Some(&b':') => i += 2,
                b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    return Err(native(sql));
                }
                b'?' => return Err(native(sql)),
                b'$' => {
                    // A PostgreSQL dollar-quoted string: `$$…$$` or `$tag$…$tag$`.
                    let tag_end = bytes[i + 1..]
                        .iter()
                        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                        .map(|n| i + 1 + n);
                    match tag_end {
                        Some(end) if bytes[end] == b'$' => {
                            let tag = &sql[i..=end];
                            i = sql[end + 1..]
                                .find(tag)
                                .map_or(bytes.len(), |at| end + 1 + at + tag.len());
                        }
                        _ => i += 1,
                    }
                }
                b':' if bytes
                    .get(i + 1)
                    .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') =>
                {
                    let start = i + 1;
                    let mut end = start;
                    while end < bytes.len()
                        && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                    {
                        end += 1;
                    }
                    let name = &sql[start..end];
                    if !(parts.contains(&name) || write && name == "value") {
                        let mut known: Vec<String> = parts.iter().map(|&p| p.to_owned()).collect();
                        if write {
                            known.push("value".into());
                        }
                        return Err(SqlConfigError::UnknownParameter {
                            statement: sql.to_owned(),
                            name: name.to_owned(),
                            known,
                        });
                    }
                    let number = match names.iter().position(|n| n == name) {
                        Some(at) => at + 1,
                        None => {
                            names.push(name.to_owned());
                            names.len()
                        }
                    };
                    out.push_str(&sql[copied..i]);
                    out.push(if dialect == Dialect::Sqlite { '?' } else { '$' });
                    out.push_str(&number.to_string());
                    i = end;
                    copied = end;
                }
                _ => i += 1,
            }
        }
        out.push_str(&sql[copied.min(sql.len())..]);
        if write && !names.iter().any(|n| n == "value") {
            return Err(SqlConfigError::NoValue {
                statement: sql.to_owned(),
            });
        }
        Ok(Self {
            sql: out.into(),
            names,
        })
    }

    /// The statement with the key's parts (and the value) bound in placeholder order.
    fn bind(
        &self,
        parts: &Parts<'_>,
        value: Option<&[u8]>,
    ) -> Result<Query<'static, Any, AnyArguments>, SqlError> {
        let mut query = sqlx::query(AssertSqlSafe(self.sql.clone()));
        for name in &self.names {
            if name == "value" {
                let value = value.unwrap_or_default();
                query = match std::str::from_utf8(value) {
                    Ok(text) => query.bind(text.to_owned()),
                    Err(_) => query.bind(value.to_vec()),
                };
                continue;
            }
            let part = parts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .unwrap_or_default();
            let text =
                std::str::from_utf8(part).map_err(|_| SqlError::NotText { part: name.clone() })?;
            query = query.bind(text.to_owned());
        }
        Ok(query)
    }
}

fn native(sql: &str) -> SqlConfigError {
    SqlConfigError::NativePlaceholder {
        statement: sql.to_owned(),
    }
}

/// A column as bytes, whether the database stores it as bytes or as text.
fn column_bytes(row: &AnyRow, index: usize) -> Result<Bytes, SqlError> {
    if let Ok(bytes) = row.try_get::<Vec<u8>, _>(index) {
        return Ok(Bytes::from(bytes));
    }
    row.try_get::<String, _>(index)
        .map(Bytes::from)
        .map_err(SqlError::Value)
}

/// An optional integer version column; absent or NULL means none.
fn column_version(row: &AnyRow, index: usize) -> Result<Option<u64>, SqlError> {
    if row.columns().len() <= index {
        return Ok(None);
    }
    let version: Option<i64> = row.try_get(index).map_err(SqlError::Version)?;
    // 0 means "no version", as the HTTP and gRPC origins read it.
    Ok(version.filter(|&v| v > 0).map(i64::unsigned_abs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parameters_become_numbered_placeholders() {
        let parts = ["collection", "id"];
        let s = Statement::parse(
            "SELECT body, version FROM docs WHERE id = :id AND collection = :collection \
             AND note <> ':id' AND x::text = \":collection\" -- :nope\n AND id = :id",
            &parts,
            false,
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(
            &*s.sql,
            "SELECT body, version FROM docs WHERE id = $1 AND collection = $2 \
             AND note <> ':id' AND x::text = \":collection\" -- :nope\n AND id = $1"
        );
        assert_eq!(s.names, ["id", "collection"]);
        let lite = Statement::parse(
            "SELECT v FROM t WHERE k = :id",
            &parts,
            false,
            Dialect::Sqlite,
        )
        .unwrap();
        assert_eq!(&*lite.sql, "SELECT v FROM t WHERE k = ?1");
    }

    #[test]
    fn unknown_parameters_and_missing_values_are_refused() {
        let parts = ["id"];
        let err = Statement::parse("SELECT 1 WHERE a = :ib", &parts, false, Dialect::Sqlite)
            .unwrap_err()
            .to_string();
        assert!(err.contains(":ib") && err.contains(":id"), "{err}");
        assert!(Statement::parse("SELECT :value", &parts, false, Dialect::Sqlite).is_err());
        for native in [
            "SELECT v FROM t WHERE k = ? AND j = :id",
            "SELECT v FROM t WHERE k = $1",
        ] {
            let err = Statement::parse(native, &parts, false, Dialect::Postgres)
                .unwrap_err()
                .to_string();
            assert!(err.contains("not allowed"), "{err}");
        }
        let dollar = Statement::parse(
            "SELECT v FROM t WHERE note <> $$don't :x$$ AND b = $q$?$q$ AND k = :id",
            &parts,
            false,
            Dialect::Postgres,
        )
        .unwrap();
        assert!(dollar.sql.ends_with("AND k = $1"), "{}", dollar.sql);
        assert!(
            Statement::parse(
                "UPDATE t SET v = 1 WHERE k = :id",
                &parts,
                true,
                Dialect::Sqlite
            )
            .is_err()
        );
        assert!(
            Statement::parse(
                "UPDATE t SET v = :value WHERE k = :id",
                &parts,
                true,
                Dialect::Sqlite
            )
            .is_ok()
        );
    }

    #[test]
    fn settings_errors_read_as_the_operator_wrote_them() {
        let pattern = KeyPattern::parse("doc/{collection}/{id}").unwrap();
        let err = |url: &str, load: &str, store: &str| {
            check(url, load, store, &pattern).unwrap_err().to_string()
        };
        assert_eq!(
            err("mysql://app:s3cret@db/x", "SELECT 1", ""),
            "url \"mysql://app:***@db/x\": expected sqlite:… or postgres://…"
        );
        assert_eq!(
            err("sqlite://x.db", " ", ""),
            "a sql origin needs a `load` query"
        );
        assert_eq!(
            err(
                "sqlite://x.db",
                "SELECT v FROM t WHERE k = :id",
                "UPDATE t SET v = :val"
            ),
            "statement \"UPDATE t SET v = :val\": unknown parameter :val \
             (known: :collection, :id, :value)"
        );
        assert_eq!(
            err("sqlite://x.db", "SELECT v FROM t WHERE k = ?", ""),
            "statement \"SELECT v FROM t WHERE k = ?\": name parameters as :part (and :value); \
             ? and $n are not allowed"
        );
        assert_eq!(
            err("sqlite://x.db", "SELECT 1", "DELETE FROM t WHERE k = :id"),
            "statement \"DELETE FROM t WHERE k = :id\" must use :value"
        );
        let none = Statement::parse("SELECT :x", &[], false, Dialect::Sqlite).unwrap_err();
        assert_eq!(
            none.to_string(),
            "statement \"SELECT :x\": unknown parameter :x (known: )"
        );
    }
}
