//! JSON encoding of log messages: change messages, control messages and row keys, written
//! straight into byte buffers (the stored bytes are the served bytes).
//!
//! Invariant: the snapshot path and the replication path build keys and values with these same
//! functions, so a row has byte-identical keys in both (http-protocol.md §8.5 [REC]).

use std::fmt::Write as _;

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let mut tmp = String::new();
                let _ = write!(tmp, "\\u{:04x}", b);
                out.extend_from_slice(tmp.as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends an optional value: a JSON string or `null`.
pub fn write_opt(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends an unsigned integer in decimal.
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = itoa_buf(n);
    out.append(&mut buf);
}

fn itoa_buf(mut n: u64) -> Vec<u8> {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    tmp[i..].to_vec()
}

/// The relation prefix of keys: `"schema"."table"` with `/` and `.` doubled inside the names.
pub fn key_prefix(schema: &str, table: &str) -> String {
    let esc = |s: &str| s.replace('/', "//").replace('.', "..");
    format!("\"{}\".\"{}\"", esc(schema), esc(table))
}

/// Builds a row key from the prefix and the PK values in PK order (http-protocol.md §8.5).
pub fn row_key(prefix: &str, pk_values: impl Iterator<Item = Option<impl AsRef<str>>>) -> String {
    let mut key = String::with_capacity(prefix.len() + 16);
    key.push_str(prefix);
    for v in pk_values {
        key.push('/');
        match v {
            Some(s) => {
                key.push('"');
                let s = s.as_ref();
                if s.contains('/') {
                    key.push_str(&s.replace('/', "//"));
                } else {
                    key.push_str(s);
                }
                key.push('"');
            }
            None => key.push('_'),
        }
    }
    key
}

/// `{"headers":{"control":"snapshot-end","xmin":"…","xmax":"…","xip_list":[…]}}`
pub fn snapshot_end(xmin: u64, xmax: u64, xip: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(br#"{"headers":{"control":"snapshot-end","xmin":""#);
    write_u64(&mut out, xmin);
    out.extend_from_slice(br#"","xmax":""#);
    write_u64(&mut out, xmax);
    out.extend_from_slice(br#"","xip_list":["#);
    for (i, x) in xip.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        write_u64(&mut out, *x);
        out.push(b'"');
    }
    out.extend_from_slice(b"]}}");
    out
}

/// `{"headers":{"control":"up-to-date","global_last_seen_lsn":"<lsn>"}}`
pub fn up_to_date(out: &mut Vec<u8>, lsn: u64) {
    out.extend_from_slice(br#"{"headers":{"control":"up-to-date","global_last_seen_lsn":""#);
    write_u64(out, lsn);
    out.extend_from_slice(b"\"}}");
}

/// The body of every 409.
pub const MUST_REFETCH: &str = r#"[{"headers":{"control":"must-refetch"}}]"#;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_follow_the_spec_examples() {
        let p = key_prefix("public", "items");
        assert_eq!(
            row_key(&p, [Some("1")].into_iter()),
            r#""public"."items"/"1""#
        );
        assert_eq!(
            row_key(
                &key_prefix("public", "foo"),
                [Some("a"), Some("b"), Some("c")].into_iter()
            ),
            r#""public"."foo"/"a"/"b"/"c""#
        );
        assert_eq!(
            row_key(&key_prefix("public", "t"), [Some("a/b")].into_iter()),
            r#""public"."t"/"a//b""#
        );
        assert_eq!(
            row_key(
                &key_prefix("public", "t"),
                [Some("1"), None, Some("2")].into_iter()
            ),
            r#""public"."t"/"1"/_/"2""#
        );
        assert_eq!(
            row_key(&key_prefix("public", "t"), [Some("")].into_iter()),
            r#""public"."t"/"""#
        );
        assert_eq!(key_prefix("a.b", "c/d"), r#""a..b"."c//d""#);
    }

    #[test]
    fn snapshot_end_and_up_to_date_forms() {
        assert_eq!(
            String::from_utf8(snapshot_end(750, 752, &[751])).unwrap(),
            r#"{"headers":{"control":"snapshot-end","xmin":"750","xmax":"752","xip_list":["751"]}}"#
        );
        let mut out = Vec::new();
        up_to_date(&mut out, 27147048);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"headers":{"control":"up-to-date","global_last_seen_lsn":"27147048"}}"#
        );
    }

    proptest! {
        #[test]
        fn strings_round_trip_through_serde(s in ".*") {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            let back: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(back, s);
        }

        #[test]
        fn integers_print_in_decimal(n in any::<u64>()) {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            prop_assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }
}
