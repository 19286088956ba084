//! Listing a collection: `page[size]`, `page[after]` (an opaque keyset cursor), `sort` on one
//! declared attribute or `id` (`-` for descending), equality `filter[attr]=value` on declared
//! attributes, sparse fieldsets `fields[type]=a,b`, and `page[total]=true` for a count.
//!
//! Sorting is keyset pagination on `(sort value, id)`, so pages stay consistent while documents
//! are added. A missing attribute sorts after every value (SQLite: an empty blob; PostgreSQL:
//! JSON `null`, which jsonb orders before everything, so there it sorts first).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sqlx::Row;

use crate::config::{CollectionConfig, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::db::Db;
use crate::problem::ApiError;

/// A parsed list request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ListQuery {
    pub(crate) size: usize,
    pub(crate) after: Option<Cursor>,
    /// Attribute (or `id`) and whether descending.
    pub(crate) sort: Option<(String, bool)>,
    pub(crate) filters: Vec<(String, String)>,
    pub(crate) fields: Option<Vec<String>>,
    pub(crate) total: bool,
    /// The query string's pairs, for building `links.next`.
    raw: Vec<(String, String)>,
}

/// Where the previous page ended: the sort value (its SQL type and text) and the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    kind: String,
    value: String,
    id: String,
}

impl Cursor {
    fn encode(&self) -> String {
        let json = serde_json::json!([self.kind, self.value, self.id]).to_string();
        URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let Value::Array(parts) = serde_json::from_slice(&bytes).ok()? else {
            return None;
        };
        match parts.as_slice() {
            [Value::String(kind), Value::String(value), Value::String(id)] => Some(Self {
                kind: kind.clone(),
                value: value.clone(),
                id: id.clone(),
            }),
            _ => None,
        }
    }
}

impl ListQuery {
    /// Parses the query string's pairs against what `collection` allows.
    pub(crate) fn parse(
        pairs: Vec<(String, String)>,
        collection: &CollectionConfig,
    ) -> Result<Self, ApiError> {
        let mut q = Self {
            size: DEFAULT_PAGE_SIZE,
            ..Self::default()
        };
        for (name, value) in &pairs {
            let bad = |detail: String| ApiError::bad_request(detail);
            match name.as_str() {
                "page[size]" => {
                    q.size = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                        .ok_or_else(|| bad(format!("page[size] must be 1 to {MAX_PAGE_SIZE}")))?;
                }
                "page[after]" => {
                    q.after = Some(Cursor::decode(value).ok_or_else(|| {
                        bad("page[after] is not a cursor from links.next".into())
                    })?);
                }
                "page[total]" => {
                    q.total = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("page[total] must be true or false".into())),
                    };
                }
                "sort" => {
                    let (desc, attr) = match value.strip_prefix('-') {
                        Some(attr) => (true, attr),
                        None => (false, value.as_str()),
                    };
                    if attr.contains(',') {
                        return Err(bad("sort takes one field".into()));
                    }
                    if attr != "id" && !collection.sortable.iter().any(|s| s == attr) {
                        return Err(bad(format!(
                            "cannot sort {} by {attr:?}; sortable: id, {}",
                            collection.name,
                            collection.sortable.join(", ")
                        )));
                    }
                    q.sort = Some((attr.to_owned(), desc));
                }
                _ => {
                    if let Some(attr) = name
                        .strip_prefix("filter[")
                        .and_then(|n| n.strip_suffix(']'))
                    {
                        if !collection.filterable.iter().any(|f| f == attr) {
                            return Err(bad(format!(
                                "cannot filter {} by {attr:?}; filterable: {}",
                                collection.name,
                                collection.filterable.join(", ")
                            )));
                        }
                        q.filters.push((attr.to_owned(), value.clone()));
                    } else if let Some(kind) = name
                        .strip_prefix("fields[")
                        .and_then(|n| n.strip_suffix(']'))
                    {
                        if kind != collection.name {
                            return Err(bad(format!(
                                "fields[{kind}]: this collection's type is {}",
                                collection.name
                            )));
                        }
                        q.fields = Some(field_list(value));
                    } else {
                        return Err(bad(format!("unknown query parameter {name:?}")));
                    }
                }
            }
        }
        q.raw = pairs;
        Ok(q)
    }

    /// Refuses a cursor the database cannot take. SQLite compares any values; PostgreSQL binds
    /// no U+0000 and compares ids as text and attributes as `jsonb`, so there the cursor must
    /// be one issued for this kind of sort (a made-up one, or one for `id` used with an
    /// attribute, would fail in the query).
    pub(crate) fn check_cursor(&self, sqlite: bool) -> Result<(), ApiError> {
        let Some(cursor) = &self.after else {
            return Ok(());
        };
        let by_attribute = self.sort.as_ref().is_some_and(|(attr, _)| attr != "id");
        let fits = sqlite
            || if by_attribute {
                cursor.kind == "jsonb"
                    && !cursor.id.contains('\0')
                    && serde_json::from_str::<Value>(&cursor.value)
                        .is_ok_and(|v| !crate::doc::has_nul(&v))
            } else {
                cursor.kind == "text" && !cursor.value.contains('\0') && !cursor.id.contains('\0')
            };
        if fits {
            Ok(())
        } else {
            Err(ApiError::bad_request(
                "page[after] is not a cursor from links.next for this sort",
            ))
        }
    }
}

/// The attribute names of a sparse fieldset (`fields[type]=a,b`).
pub(crate) fn field_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One value to bind, in placeholder order.
enum Bind {
    Text(String),
    Int(i64),
    Real(f64),
    Blob(Vec<u8>),
}

/// The SQL expression a list sorts by, and how to read it back for the cursor.
fn sort_expr(db: &Db, attr: &str) -> (String, String) {
    if attr == "id" {
        return ("id".into(), "'text'".into());
    }
    if db.is_sqlite() {
        let expr = format!("IFNULL(json_extract(doc, '$.attributes.{attr}'), X'')");
        (expr.clone(), format!("typeof({expr})"))
    } else {
        let expr = format!("COALESCE(doc::jsonb -> 'attributes' -> '{attr}', 'null'::jsonb)");
        (expr, "'jsonb'".into())
    }
}

/// One page: `(id, stored doc)` rows, the next cursor, and the total if asked.
pub(crate) async fn page(
    db: &Db,
    collection: &CollectionConfig,
    q: &ListQuery,
) -> Result<(Vec<(String, String)>, Option<String>, Option<i64>), crate::db::DbError> {
    let (attr, desc) = q.sort.clone().unwrap_or(("id".into(), false));
    let (expr, kind_expr) = sort_expr(db, &attr);
    let mut binds = vec![Bind::Text(collection.name.clone())];
    let mut filter_sql = String::new();
    for (name, value) in &q.filters {
        let mut candidates = Vec::new();
        // PostgreSQL's jsonb holds no U+0000, so there such a string matches nothing.
        if db.is_sqlite() || !value.contains('\0') {
            candidates.push(Value::String(value.clone()).to_string());
        }
        if let Ok(scalar @ (Value::Number(_) | Value::Bool(_) | Value::Null)) =
            serde_json::from_str::<Value>(value)
        {
            candidates.push(scalar.to_string());
        }
        let lhs = if db.is_sqlite() {
            format!("(doc -> '$.attributes.{name}')")
        } else {
            format!("(doc::jsonb -> 'attributes' -> '{name}')")
        };
        if candidates.is_empty() {
            filter_sql.push_str(" AND 1 = 0");
            continue;
        }
        let mut list = Vec::new();
        for candidate in candidates {
            binds.push(Bind::Text(candidate));
            let n = binds.len();
            list.push(if db.is_sqlite() {
                format!("${n}")
            } else {
                format!("${n}::jsonb")
            });
        }
        filter_sql.push_str(&format!(" AND {lhs} IN ({})", list.join(", ")));
    }
    let total = if q.total {
        let sql =
            format!("SELECT count(*) FROM larder_documents WHERE collection = $1{filter_sql}");
        let rows = db.rows(bind_all(db.q(&sql), &binds)).await?;
        rows.first().map(|row| row.get::<i64, _>(0))
    } else {
        None
    };
    let mut keyset = String::new();
    if let Some(cursor) = &q.after {
        let op = if desc { "<" } else { ">" };
        binds.push(cursor_bind(cursor));
        let v = binds.len();
        binds.push(Bind::Text(cursor.id.clone()));
        let id = binds.len();
        let value = if db.is_sqlite() || attr == "id" {
            format!("${v}")
        } else {
            format!("${v}::jsonb")
        };
        keyset = format!(" AND ({expr} {op} {value} OR ({expr} = {value} AND id {op} ${id}))");
    }
    let dir = if desc { "DESC" } else { "ASC" };
    let value_text = if db.is_sqlite() {
        format!("CAST({expr} AS TEXT)")
    } else {
        format!("({expr})::text")
    };
    let sql = format!(
        "SELECT id, doc, {kind_expr}, {value_text} FROM larder_documents \
         WHERE collection = $1{filter_sql}{keyset} ORDER BY {expr} {dir}, id {dir} LIMIT {}",
        q.size + 1
    );
    let rows = db.rows(bind_all(db.q(&sql), &binds)).await?;
    let mut out: Vec<(String, String)> = Vec::with_capacity(rows.len().min(q.size));
    let mut next = None;
    for (i, row) in rows.iter().enumerate() {
        if i == q.size {
            let last = &rows[i - 1];
            next = Some(Cursor {
                kind: last.get(2),
                value: last.try_get::<String, _>(3).unwrap_or_default(),
                id: last.get(0),
            });
            break;
        }
        out.push((row.get(0), row.get(1)));
    }
    Ok((out, next.map(|c| next_link(collection, q, &c)), total))
}

fn cursor_bind(cursor: &Cursor) -> Bind {
    match cursor.kind.as_str() {
        "integer" => Bind::Int(cursor.value.parse().unwrap_or_default()),
        "real" => Bind::Real(cursor.value.parse().unwrap_or_default()),
        "blob" => Bind::Blob(Vec::new()),
        _ => Bind::Text(cursor.value.clone()),
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    binds: &[Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text.clone()),
            Bind::Int(n) => query.bind(*n),
            Bind::Real(x) => query.bind(*x),
            Bind::Blob(bytes) => query.bind(bytes.clone()),
        };
    }
    query
}

/// `links.self`: the collection's path with this request's parameters (filter, sort, page and
/// fields as the client gave them, in order), percent-encoded the one way.
pub(crate) fn self_link(collection: &CollectionConfig, q: &ListQuery) -> String {
    link(collection, q.raw.iter())
}

/// `links.next`: this request's parameters with the new cursor.
fn next_link(collection: &CollectionConfig, q: &ListQuery, cursor: &Cursor) -> String {
    let after = ("page[after]".to_owned(), cursor.encode());
    let kept = q.raw.iter().filter(|(n, _)| n != "page[after]");
    link(collection, kept.chain(std::iter::once(&after)))
}

fn link<'a>(
    collection: &CollectionConfig,
    params: impl Iterator<Item = &'a (String, String)>,
) -> String {
    let mut link = format!("/v1/{}", collection.name);
    for (i, (name, value)) in params.enumerate() {
        link.push(if i == 0 { '?' } else { '&' });
        link.push_str(&encode(name));
        link.push('=');
        link.push_str(&encode(value));
    }
    link
}

/// Percent-encodes everything but unreserved characters.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collection() -> CollectionConfig {
        CollectionConfig {
            name: "p".into(),
            sortable: vec!["price".into()],
            filterable: vec!["color".into()],
            ..CollectionConfig::default()
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn list_parameters_are_checked() {
        let q = ListQuery::parse(
            pairs(&[
                ("page[size]", "5"),
                ("sort", "-price"),
                ("filter[color]", "red"),
                ("fields[p]", "a,b"),
            ]),
            &collection(),
        )
        .unwrap();
        assert_eq!(q.size, 5);
        assert_eq!(q.sort, Some(("price".into(), true)));
        assert_eq!(q.filters, [("color".to_owned(), "red".to_owned())]);
        assert_eq!(q.fields, Some(vec!["a".into(), "b".into()]));
        let total = |v: &str| ListQuery::parse(pairs(&[("page[total]", v)]), &collection());
        assert!(total("true").unwrap().total);
        assert!(!total("false").unwrap().total);
        for bad in [
            vec![("page[size]", "0")],
            vec![("page[size]", "100000")],
            vec![("sort", "weight")],
            vec![("sort", "price,id")],
            vec![("filter[weight]", "1")],
            vec![("fields[q]", "a")],
            vec![("page[after]", "!!")],
            vec![("page[total]", "yes")],
            vec![("bogus", "1")],
        ] {
            assert!(
                ListQuery::parse(pairs(&bad), &collection()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn postgres_takes_only_cursors_issued_for_the_sort() {
        let query = |sort: &str, kind: &str, value: &str, id: &str| {
            let cursor = Cursor {
                kind: kind.into(),
                value: value.into(),
                id: id.into(),
            };
            ListQuery::parse(
                pairs(&[("sort", sort), ("page[after]", &cursor.encode())]),
                &collection(),
            )
            .unwrap()
        };
        let postgres = |q: ListQuery| q.check_cursor(false).is_ok();
        assert!(
            query("price", "text", "A6p", "a")
                .check_cursor(true)
                .is_ok()
        );
        assert!(postgres(query("-price", "jsonb", "12", "a")));
        assert!(postgres(query("price", "jsonb", "\"x\"", "a")));
        assert!(!postgres(query("price", "jsonb", "A6p", "a")));
        assert!(!postgres(query("price", "jsonb", "\"\\u0000\"", "a")));
        assert!(!postgres(query("price", "integer", "12", "a")));
        assert!(!postgres(query("price", "jsonb", "12", "a\0")));
        assert!(postgres(query("id", "text", "A6p", "a")));
        assert!(!postgres(query("id", "integer", "5", "a")));
        assert!(!postgres(query("id", "text", "a\0", "a")));
        assert!(postgres(ListQuery::default()));
    }

    #[test]
    fn cursors_round_trip_and_links_keep_the_query() {
        let cursor = Cursor {
            kind: "integer".into(),
            value: "42".into(),
            id: "a b".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor.clone()));
        let q = ListQuery::parse(
            pairs(&[("sort", "price"), ("filter[color]", "dark red")]),
            &collection(),
        )
        .unwrap();
        let link = next_link(&collection(), &q, &cursor);
        assert!(
            link.starts_with("/v1/p?sort=price&filter%5Bcolor%5D=dark%20red&page%5Bafter%5D="),
            "{link}"
        );
        assert_eq!(
            self_link(&collection(), &q),
            "/v1/p?sort=price&filter%5Bcolor%5D=dark%20red"
        );
        let plain = ListQuery::parse(Vec::new(), &collection()).unwrap();
        assert_eq!(self_link(&collection(), &plain), "/v1/p");
    }
}
