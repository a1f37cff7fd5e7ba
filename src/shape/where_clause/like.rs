//! PG `LIKE` / `ILIKE` matching.
//!
//! Semantics (PG, not a regex engine): `%` matches any sequence of characters and `_` exactly
//! one character (a code point), both across newlines; `\` escapes the next character; the
//! match is anchored at both ends with no special case for a trailing newline. A pattern that
//! ends in a lone `\` is an error.
//!
//! Invariants: iterative (one backtrack point, the classic glob algorithm, which is exact for
//! `%`/`_` patterns), so no recursion on attacker-controlled patterns; O(|text|·|pattern|)
//! worst case; no allocation.
//! ILIKE folds ASCII letters only. PG folds with the database locale, which for non-ASCII
//! letters depends on the locale, so `parse.rs` only accepts ILIKE with a constant pattern
//! whose letters are ASCII (a non-ASCII text character can then only match `_` or `%`, the
//! same under every locale, barring exotic mappings such as KELVIN SIGN → `k`).

/// The pattern ends with an escape character (PG: "LIKE pattern must not end with escape
/// character").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TrailingEscape;

pub(super) fn check_pattern(pattern: &str) -> Result<(), TrailingEscape> {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.next().is_none() {
            return Err(TrailingEscape);
        }
    }
    Ok(())
}

enum Token {
    AnySeq,
    AnyOne,
    Lit(char),
}

/// The token at byte `i` of the pattern and its length in bytes.
fn token_at(pattern: &str, i: usize) -> Result<Option<(Token, usize)>, TrailingEscape> {
    let mut chars = pattern.get(i..).unwrap_or("").chars();
    let Some(c) = chars.next() else {
        return Ok(None);
    };
    Ok(Some(match c {
        '%' => (Token::AnySeq, 1),
        '_' => (Token::AnyOne, 1),
        '\\' => {
            let escaped = chars.next().ok_or(TrailingEscape)?;
            (Token::Lit(escaped), 1 + escaped.len_utf8())
        }
        c => (Token::Lit(c), c.len_utf8()),
    }))
}

pub(super) fn like(
    text: &str,
    pattern: &str,
    case_insensitive: bool,
) -> Result<bool, TrailingEscape> {
    check_pattern(pattern)?;
    let eq = |a: char, b: char| a == b || (case_insensitive && a.eq_ignore_ascii_case(&b));
    let next_char = |i: usize| text.get(i..).and_then(|s| s.chars().next());
    let (mut ti, mut pi) = (0usize, 0usize);
    // After a `%`: where the pattern resumes and the text position it last tried.
    let mut star: Option<(usize, usize)> = None;
    loop {
        let step = match token_at(pattern, pi)? {
            Some((Token::AnySeq, len)) => {
                pi += len;
                star = Some((pi, ti));
                continue;
            }
            Some((Token::AnyOne, len)) => next_char(ti).map(|c| (c.len_utf8(), len)),
            Some((Token::Lit(p), len)) => next_char(ti)
                .filter(|&c| eq(c, p))
                .map(|c| (c.len_utf8(), len)),
            None if ti == text.len() => return Ok(true),
            None => None,
        };
        match step {
            Some((tlen, plen)) => {
                ti += tlen;
                pi += plen;
            }
            None => match star {
                Some((resume, tried)) => match next_char(tried) {
                    Some(c) => {
                        let next = tried + c.len_utf8();
                        star = Some((resume, next));
                        pi = resume;
                        ti = next;
                    }
                    None => return Ok(false),
                },
                None => return Ok(false),
            },
        }
    }
}
