//! Parsing and validating `/v1/shape` query parameters (http-protocol.md §3) into our own request
//! type. Pure and total: any query string yields either parameters or Electric's error map.
//!
//! Rules kept from Electric: unknown parameters are ignored; the last duplicate wins; empty or
//! whitespace-only strings count as absent; `live` and `live_sse` are true when present unless
//! exactly `false`; validation stops at the first failing step (except that type errors and a
//! missing offset accumulate).

use std::collections::BTreeMap;

use crate::offset::{RequestOffset, parse_offset};
use crate::shape::definition::ShapeRequest;

/// Validation errors: field → messages, rendered as `{"message":"Invalid request","errors":…}`.
pub type Errors = BTreeMap<String, Vec<String>>;

/// The raw query: plain keys plus the `params[n]` map.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RawQuery {
    pub fields: BTreeMap<String, String>,
    /// `params[k]=v` entries; `None` when `params` was given as a plain value (invalid).
    pub params: Option<BTreeMap<String, String>>,
    pub params_invalid: bool,
    /// Keys whose value was not valid UTF-8 once percent-decoded (refused, never replaced).
    pub not_utf8: Vec<String>,
}

impl RawQuery {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }

    /// A string field after "empty → absent" normalisation.
    pub fn non_empty(&self, k: &str) -> Option<&str> {
        self.get(k).filter(|v| !v.trim().is_empty())
    }
}

/// Splits and percent-decodes a query string (`+` is a space).
pub fn parse_query(q: &str) -> RawQuery {
    let mut raw = RawQuery::default();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k);
        let v = match percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8() {
            Ok(v) => v.into_owned(),
            Err(_) => {
                raw.not_utf8.push(k.clone());
                continue;
            }
        };
        if let Some(inner) = k.strip_prefix("params[").and_then(|r| r.strip_suffix(']')) {
            raw.params
                .get_or_insert_with(BTreeMap::new)
                .insert(inner.to_owned(), v);
        } else if k == "params" {
            raw.params_invalid = true;
        } else {
            raw.fields.insert(k, v);
        }
    }
    raw
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Validated parameters of a shape request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeParams {
    pub request: ShapeRequest,
    pub offset: RequestOffset,
    pub handle: Option<String>,
    pub live: bool,
    pub live_sse: bool,
    pub cursor: Option<String>,
    /// `If-None-Match` values, quotes stripped (filled in by the HTTP adapter).
    pub if_none_match: Vec<String>,
}

fn add(errors: &mut Errors, k: &str, msg: &str) {
    errors.entry(k.to_owned()).or_default().push(msg.to_owned());
}

fn live_flag(raw: &RawQuery, k: &str) -> Option<bool> {
    raw.get(k).map(|v| v != "false")
}

/// Validates a shape GET request in Electric's order.
pub fn validate(raw: &RawQuery) -> Result<ShapeParams, Errors> {
    let mut errors = Errors::new();
    // Step 1: type casts.
    let replica_full = match raw.non_empty("replica") {
        None | Some("default") => false,
        Some("full") => true,
        Some(_) => {
            add(&mut errors, "replica", "is invalid");
            false
        }
    };
    let changes_only = match raw.non_empty("log") {
        None | Some("full") => false,
        Some("changes_only") => true,
        Some(_) => {
            add(&mut errors, "log", "is invalid");
            false
        }
    };
    if raw.params_invalid {
        add(&mut errors, "params", "is invalid");
    }
    for k in &raw.not_utf8 {
        let key = if k.starts_with("params[") {
            "params"
        } else {
            k.as_str()
        };
        if matches!(
            key,
            "table"
                | "where"
                | "columns"
                | "offset"
                | "handle"
                | "replica"
                | "log"
                | "params"
                | "cursor"
                | "live"
                | "live_sse"
        ) || key.starts_with("subset__")
        {
            add(&mut errors, key, "is invalid");
        }
    }
    let columns = match raw.non_empty("columns") {
        Some(c) => match parse_columns(c) {
            Ok(cols) => Some(cols),
            Err(msg) => {
                add(&mut errors, "columns", &msg);
                None
            }
        },
        None => None,
    };
    let live_sse_raw = match live_flag(raw, "live_sse") {
        Some(v) => Some(v),
        None => match raw.get("experimental_live_sse") {
            None => None,
            Some("true" | "1") => Some(true),
            Some("false" | "0") => Some(false),
            Some(_) => {
                add(&mut errors, "experimental_live_sse", "is invalid");
                None
            }
        },
    };
    // Step 2: offset required.
    let offset_raw = raw.non_empty("offset");
    if offset_raw.is_none() {
        add(&mut errors, "offset", "can't be blank");
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Step 3: offset format.
    let Some(offset) = offset_raw.and_then(parse_offset) else {
        add(&mut errors, "offset", "has invalid format");
        return Err(errors);
    };
    // Step 4: handle vs offset.
    let handle = match offset {
        RequestOffset::Initial | RequestOffset::Now => None,
        RequestOffset::At(_) => match raw.non_empty("handle") {
            Some(h) => Some(h.to_owned()),
            None => {
                add(&mut errors, "handle", "can't be blank when offset != -1");
                return Err(errors);
            }
        },
    };
    // Step 5: live vs offset.
    let live = live_flag(raw, "live").unwrap_or(false);
    if live {
        match offset {
            RequestOffset::Initial => {
                add(&mut errors, "live", "can't be true when offset == -1");
                return Err(errors);
            }
            RequestOffset::Now => {
                add(&mut errors, "live", "can't be true when offset is 'now'");
                return Err(errors);
            }
            RequestOffset::At(_) => {}
        }
    }
    // Step 6: SSE requires live.
    let live_sse = live_sse_raw.unwrap_or(false);
    if live_sse && !live {
        add(
            &mut errors,
            "live_sse",
            "can't be true unless live is also true",
        );
        return Err(errors);
    }
    // Step 7: table.
    let Some(table) = raw.non_empty("table") else {
        add(&mut errors, "table", "can't be blank");
        return Err(errors);
    };
    let (schema, table) = match parse_relation(table) {
        Ok(r) => r,
        Err(msg) => {
            add(&mut errors, "table", &msg);
            return Err(errors);
        }
    };
    let where_text = raw.non_empty("where").map(str::to_owned);
    let params = if where_text.is_some() {
        match ordered_params(raw.params.as_ref()) {
            Ok(p) => p,
            Err(msg) => {
                add(&mut errors, "params", msg);
                return Err(errors);
            }
        }
    } else {
        Vec::new()
    };
    Ok(ShapeParams {
        request: ShapeRequest {
            schema: schema.into(),
            table: table.into(),
            where_text,
            params,
            columns,
            replica_full,
            changes_only,
        },
        offset,
        handle,
        live,
        live_sse,
        cursor: raw.get("cursor").map(str::to_owned),
        if_none_match: Vec::new(),
    })
}

/// `params[1..n]` in order; keys must be integers forming exactly 1..n.
pub fn ordered_params(p: Option<&BTreeMap<String, String>>) -> Result<Vec<String>, &'static str> {
    let Some(p) = p else { return Ok(Vec::new()) };
    let mut numbered: Vec<(u64, &String)> = Vec::with_capacity(p.len());
    for (k, v) in p {
        let n: u64 = k
            .parse()
            .map_err(|_| "Parameters can only use numbers as keys")?;
        numbered.push((n, v));
    }
    numbered.sort_by_key(|(n, _)| *n);
    for (i, (n, _)) in numbered.iter().enumerate() {
        if *n != i as u64 + 1 {
            return Err("Parameters must be numbered sequentially, starting from 1");
        }
    }
    Ok(numbered.into_iter().map(|(_, v)| v.clone()).collect())
}

/// Splits on `sep` outside double quotes.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == '"' {
            in_quotes = !in_quotes;
        } else if c == sep && !in_quotes {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Parses one identifier (shape-semantics.md §1.1 step 2).
pub fn parse_identifier(s: &str) -> Result<String, String> {
    let name = if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        let inner = &s[1..s.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    out.push('"');
                } else {
                    return Err(format!("Invalid identifier with unescaped quote: {inner}"));
                }
            } else {
                out.push(c);
            }
        }
        out
    } else {
        if s.is_empty() {
            return Err("Invalid zero-length delimited identifier".into());
        }
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_');
        let rest_ok = chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$' || is_mark(c));
        if !(first_ok && rest_ok) {
            return Err(format!(
                "Invalid unquoted identifier contains special characters: {s}"
            ));
        }
        s.to_ascii_lowercase()
    };
    if name.is_empty() {
        return Err("Invalid zero-length delimited identifier".into());
    }
    if name.chars().count() > 63 {
        return Err("Identifier is too long (max length is 63)".into());
    }
    Ok(name)
}

fn is_mark(c: char) -> bool {
    // Combining marks (\p{M}) commonly seen in identifiers.
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// Parses `table` into (schema, name); unqualified means `public`.
pub fn parse_relation(s: &str) -> Result<(String, String), String> {
    let parts = split_outside_quotes(s, '.');
    match parts.as_slice() {
        [t] => Ok(("public".into(), parse_identifier(t)?)),
        [sch, t] => Ok((parse_identifier(sch)?, parse_identifier(t)?)),
        _ => Err(format!(
            "Invalid relation identifier, too many delimiters: {s}"
        )),
    }
}

/// Parses `columns`.
pub fn parse_columns(s: &str) -> Result<Vec<String>, String> {
    split_outside_quotes(s, ',')
        .into_iter()
        .map(parse_identifier)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(q: &str) -> Result<ShapeParams, Errors> {
        validate(&parse_query(q))
    }

    fn err(q: &str) -> Errors {
        v(q).unwrap_err()
    }

    fn e1(k: &str, m: &str) -> Errors {
        Errors::from([(k.to_owned(), vec![m.to_owned()])])
    }

    #[test]
    fn checklist_validation_cases() {
        assert_eq!(err("table=items"), e1("offset", "can't be blank"));
        for bad in ["abc", "0_-1", "1_2_3", "10"] {
            assert_eq!(
                err(&format!("table=items&offset={bad}")),
                e1("offset", "has invalid format")
            );
        }
        for ok in ["-1", "now"] {
            assert!(v(&format!("table=items&offset={ok}")).is_ok());
        }
        assert!(v("table=items&offset=0_inf&handle=h").is_ok());
        assert_eq!(
            err("table=items&offset=0_0"),
            e1("handle", "can't be blank when offset != -1")
        );
        assert_eq!(
            err("table=items&offset=-1&live=true"),
            e1("live", "can't be true when offset == -1")
        );
        assert_eq!(
            err("table=items&offset=now&live=true"),
            e1("live", "can't be true when offset is 'now'")
        );
        assert_eq!(
            err("table=items&offset=0_0&handle=h&live_sse=true"),
            e1("live_sse", "can't be true unless live is also true")
        );
        assert_eq!(err("offset=-1"), e1("table", "can't be blank"));
        assert_eq!(err("table=&offset=-1"), e1("table", "can't be blank"));
        assert_eq!(
            err("table=items&offset=-1&replica=bogus"),
            e1("replica", "is invalid")
        );
        assert_eq!(
            err("table=items&offset=-1&log=bogus"),
            e1("log", "is invalid")
        );
        // Type errors and a missing offset accumulate.
        let e = err("table=items&log=bogus");
        assert_eq!(e.len(), 2);
        assert!(
            v("table=items&offset=-1&cursor=1&cache-buster=x&expired_handle=y&foo=bar").is_ok()
        );
        assert!(v("table=items&offset=0_0&handle=h&live").unwrap().live);
        assert!(v("table=items&offset=0_0&handle=h&live=1").unwrap().live);
        assert!(
            !v("table=items&offset=0_0&handle=h&live=false")
                .unwrap()
                .live
        );
        assert!(
            v("table=items&offset=0_0&handle=h&live=true&experimental_live_sse=true")
                .unwrap()
                .live_sse
        );
        assert_eq!(
            v("table=items&offset=-1&handle=garbage").unwrap().handle,
            None
        );
    }

    #[test]
    fn relations_and_columns() {
        assert_eq!(
            parse_relation("Items"),
            Ok(("public".into(), "items".into()))
        );
        assert_eq!(
            parse_relation("\"Items\""),
            Ok(("public".into(), "Items".into()))
        );
        assert_eq!(parse_relation("s.t"), Ok(("s".into(), "t".into())));
        assert_eq!(
            parse_relation("\"foo.bar\".\"baz\""),
            Ok(("foo.bar".into(), "baz".into()))
        );
        assert_eq!(
            parse_relation("\"foo.bar.baz\""),
            Ok(("public".into(), "foo.bar.baz".into()))
        );
        assert_eq!(
            parse_relation(".x"),
            Err("Invalid zero-length delimited identifier".into())
        );
        assert_eq!(
            parse_relation("a.b.c"),
            Err("Invalid relation identifier, too many delimiters: a.b.c".into())
        );
        assert_eq!(
            parse_relation(&"a".repeat(64)),
            Err("Identifier is too long (max length is 63)".into())
        );
        assert_eq!(
            parse_columns("id,\"Status-Check\""),
            Ok(vec!["id".into(), "Status-Check".into()])
        );
        assert_eq!(
            parse_columns("\"id\",\"title\""),
            Ok(vec!["id".into(), "title".into()])
        );
        assert!(parse_columns("id,foo@").is_err());
        assert!(parse_columns("id,").is_err());
    }

    #[test]
    fn invalid_utf8_is_refused_not_replaced() {
        assert_eq!(
            err("table=items&offset=-1&where=title%20%3D%20%27%FF%FE%27"),
            e1("where", "is invalid")
        );
        assert!(
            v("table=items&offset=-1&foo=%FF").is_ok(),
            "unknown parameters are ignored"
        );
    }

    #[test]
    fn params_numbering() {
        let q = parse_query("table=t&offset=-1&where=a%3D%241&params%5B1%5D=x");
        assert_eq!(validate(&q).unwrap().request.params, vec!["x".to_string()]);
        assert_eq!(
            err("table=t&offset=-1&where=a&params[a]=1"),
            e1("params", "Parameters can only use numbers as keys")
        );
        assert_eq!(
            err("table=t&offset=-1&where=a&params[2]=1"),
            e1(
                "params",
                "Parameters must be numbered sequentially, starting from 1"
            )
        );
        assert_eq!(
            err("table=t&offset=-1&where=a&params=foo"),
            e1("params", "is invalid")
        );
    }

    proptest! {
        #[test]
        fn never_panics(q in ".{0,200}") {
            let _ = validate(&parse_query(&q));
        }

        #[test]
        fn never_panics_on_plausible_queries(
            parts in proptest::collection::vec(
                (prop_oneof![Just("table"), Just("offset"), Just("handle"), Just("live"), Just("where"),
                             Just("columns"), Just("replica"), Just("log"), Just("params[1]"), Just("live_sse")],
                 "[-a-z0-9_\"., %]{0,12}"),
                0..8)
        ) {
            let q: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = validate(&parse_query(&q.join("&")));
        }
    }
}
