//! Decoder for `COPY … TO STDOUT` text format rows (tab-separated fields, `\N` = NULL,
//! backslash escapes). Pure and total: malformed input is an error, never a panic.
//!
//! COPY text output uses each type's output function, the same text pgoutput sends, so snapshot
//! values and replicated values are byte-identical (including `bpchar` padding).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CopyError {
    #[error("COPY row has {got} fields, expected {expected}")]
    FieldCount { got: usize, expected: usize },
    #[error("COPY field is not valid UTF-8")]
    NotUtf8,
    #[error("COPY field ends with a lone backslash")]
    DanglingEscape,
}

/// Splits one line (without its `\n`) into `expected` decoded fields, reusing `out`.
pub fn decode_line(
    line: &[u8],
    expected: usize,
    out: &mut Vec<Option<String>>,
) -> Result<(), CopyError> {
    out.clear();
    for raw in line.split(|&b| b == b'\t') {
        if out.len() == expected {
            return Err(CopyError::FieldCount {
                got: out.len() + 1,
                expected,
            });
        }
        out.push(decode_field(raw)?);
    }
    if out.len() != expected {
        return Err(CopyError::FieldCount {
            got: out.len(),
            expected,
        });
    }
    Ok(())
}

fn decode_field(raw: &[u8]) -> Result<Option<String>, CopyError> {
    if raw == b"\\N" {
        return Ok(None);
    }
    if !raw.contains(&b'\\') {
        return std::str::from_utf8(raw)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| CopyError::NotUtf8);
    }
    let mut v = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' {
            v.push(b);
            i += 1;
            continue;
        }
        let Some(&c) = raw.get(i + 1) else {
            return Err(CopyError::DanglingEscape);
        };
        i += 2;
        match c {
            b'b' => v.push(0x08),
            b'f' => v.push(0x0c),
            b'n' => v.push(b'\n'),
            b'r' => v.push(b'\r'),
            b't' => v.push(b'\t'),
            b'v' => v.push(0x0b),
            b'0'..=b'7' => {
                let mut n = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            n = n * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                v.push(u8::try_from(n & 0xff).unwrap_or(0));
            }
            b'x' => {
                let mut n = 0u32;
                let mut digits = 0;
                while digits < 2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            n = n * 16 + d;
                            i += 1;
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    v.push(b'x');
                } else {
                    v.push(u8::try_from(n).unwrap_or(0));
                }
            }
            other => v.push(other),
        }
    }
    String::from_utf8(v)
        .map(Some)
        .map_err(|_| CopyError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(v: &Option<String>) -> Vec<u8> {
        match v {
            None => b"\\N".to_vec(),
            Some(s) => {
                let mut o = Vec::new();
                for &b in s.as_bytes() {
                    match b {
                        b'\\' => o.extend_from_slice(b"\\\\"),
                        b'\t' => o.extend_from_slice(b"\\t"),
                        b'\n' => o.extend_from_slice(b"\\n"),
                        b'\r' => o.extend_from_slice(b"\\r"),
                        _ => o.push(b),
                    }
                }
                o
            }
        }
    }

    #[test]
    fn decodes_nulls_and_escapes() {
        let mut out = Vec::new();
        decode_line(b"1\t\\N\ta\\tb\\\\c\\nd\t", 4, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                Some("1".into()),
                None,
                Some("a\tb\\c\nd".into()),
                Some(String::new())
            ]
        );
        assert!(decode_line(b"1\t2", 3, &mut out).is_err());
        assert!(decode_line(b"1\t2\t3", 2, &mut out).is_err());
        assert_eq!(
            decode_line(b"x\\", 1, &mut out),
            Err(CopyError::DanglingEscape)
        );
    }

    proptest! {
        #[test]
        fn round_trips(fields in proptest::collection::vec(proptest::option::of(".*"), 1..6)) {
            let line: Vec<u8> = fields.iter().map(encode).collect::<Vec<_>>().join(&b'\t');
            let mut out = Vec::new();
            decode_line(&line, fields.len(), &mut out).unwrap();
            prop_assert_eq!(out, fields);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..5) {
            let mut out = Vec::new();
            let _ = decode_line(&bytes, n, &mut out);
        }
    }
}
