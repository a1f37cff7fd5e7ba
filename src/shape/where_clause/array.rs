//! Arrays: PG's array text grammar (`array_in`), canonical literal text, and the array
//! operators and functions (`= < …`, `@> <@ &&`, `||`, subscripts and slices, `ARRAY[…]`,
//! `array_cat/append/prepend/ndims`).
//!
//! Invariants:
//! * The parser is total and iterative over elements; nesting is bounded by [`MAX_DIMS`], so
//!   recursion is too. Anything `array_in` rejects (ragged arrays, stray quotes or braces,
//!   more than 6 dimensions, bad bounds decoration) is `None`.
//! * An array is its dimensions `(lower bound, length)` plus its elements in row-major order;
//!   the empty array has no dimensions. Every operation keeps `product(lengths) == elems.len()`.
//! * Comparison is PG's `array_cmp`: elements first (NULL equals NULL and sorts last), then
//!   the element count, the number of dimensions, the lengths and the lower bounds.
//! * `@>`, `<@` and `&&` work on the flattened arrays; a NULL element is never contained.

use std::cmp::Ordering;

use super::eval::EvalError;
use super::types::{CmpType, SqlType};
use super::values::{OwnedValue, compare, parse_as};

/// PG's MAXDIM.
pub(super) const MAX_DIMS: usize = 6;

/// An array value. `dims` is `(lower bound, length)` per dimension, outermost first.
#[derive(Clone, Debug, Default)]
pub(super) struct ArrayVal {
    pub dims: Vec<(i64, usize)>,
    pub elems: Vec<Option<OwnedValue>>,
}

impl ArrayVal {
    pub fn empty() -> ArrayVal {
        ArrayVal::default()
    }

    pub fn one_dim(elems: Vec<Option<OwnedValue>>) -> ArrayVal {
        if elems.is_empty() {
            return ArrayVal::empty();
        }
        ArrayVal {
            dims: vec![(1, elems.len())],
            elems,
        }
    }

    pub fn ndims(&self) -> usize {
        self.dims.len()
    }
}

/// An array literal's structure, elements still as text (`None` = unquoted `NULL`).
pub(super) struct RawArray {
    pub dims: Vec<(i64, usize)>,
    pub elems: Vec<Option<String>>,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

struct Scanner<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Scanner<'_> {
    fn skip_space(&mut self) {
        while self.s.get(self.pos).is_some_and(|&c| is_space(c)) {
            self.pos += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn int(&mut self) -> Option<i64> {
        self.skip_space();
        let start = self.pos;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let v = self.text.get(start..self.pos)?.parse::<i32>().ok()?;
        self.skip_space();
        Some(i64::from(v))
    }

    /// One element: quoted or unquoted, with backslash escapes.
    fn element(&mut self) -> Option<Option<String>> {
        let mut out = Vec::new();
        if self.eat(b'"') {
            loop {
                match self.peek()? {
                    b'"' => {
                        self.pos += 1;
                        break;
                    }
                    b'\\' => {
                        self.pos += 1;
                        out.push(self.peek()?);
                        self.pos += 1;
                    }
                    c => {
                        out.push(c);
                        self.pos += 1;
                    }
                }
            }
            self.skip_space();
            return String::from_utf8(out).ok().map(Some);
        }
        // Unquoted: up to a delimiter or brace; trailing unescaped blanks are dropped.
        let mut keep = 0;
        let mut escaped_any = false;
        loop {
            match self.peek()? {
                b',' | b'}' => break,
                b'{' | b'"' => return None,
                b'\\' => {
                    self.pos += 1;
                    out.push(self.peek()?);
                    self.pos += 1;
                    keep = out.len();
                    escaped_any = true;
                }
                c => {
                    out.push(c);
                    self.pos += 1;
                    if !is_space(c) {
                        keep = out.len();
                    }
                }
            }
        }
        out.truncate(keep);
        if out.is_empty() {
            return None;
        }
        if !escaped_any && out.eq_ignore_ascii_case(b"NULL") {
            return Some(None);
        }
        String::from_utf8(out).ok().map(Some)
    }
}

/// Parses PG array text (`{…}`, optionally preceded by `[lo:hi]…=` bounds).
pub(super) fn parse_raw(text: &str) -> Option<RawArray> {
    let mut sc = Scanner {
        s: text.as_bytes(),
        text,
        pos: 0,
    };
    sc.skip_space();
    let mut declared: Vec<(i64, usize)> = Vec::new();
    while sc.eat(b'[') {
        if declared.len() >= MAX_DIMS {
            return None;
        }
        let first = sc.int()?;
        let (lo, hi) = if sc.eat(b':') {
            (first, sc.int()?)
        } else {
            (1, first)
        };
        if !sc.eat(b']') || hi < lo {
            return None;
        }
        declared.push((lo, usize::try_from(hi - lo + 1).ok()?));
        sc.skip_space();
    }
    if !declared.is_empty() {
        if !sc.eat(b'=') {
            return None;
        }
        sc.skip_space();
    }
    if !sc.eat(b'{') {
        return None;
    }
    let mut elems = Vec::new();
    // Per nesting level: the item count seen in every group of that level so far.
    let mut lengths: Vec<Option<usize>> = vec![None];
    // Open groups: the item count of each.
    let mut counts: Vec<usize> = vec![0];
    let mut leaf_depth: Option<usize> = None;
    sc.skip_space();
    if sc.eat(b'}') {
        sc.skip_space();
        return (sc.pos == sc.s.len() && declared.is_empty()).then(|| RawArray {
            dims: Vec::new(),
            elems,
        });
    }
    loop {
        sc.skip_space();
        let depth = counts.len();
        if sc.eat(b'{') {
            if depth >= MAX_DIMS || leaf_depth.is_some_and(|l| l <= depth) {
                return None;
            }
            counts.push(0);
            if lengths.len() < depth + 1 {
                lengths.push(None);
            }
            continue;
        }
        if leaf_depth.is_some_and(|l| l != depth) {
            return None;
        }
        leaf_depth = Some(depth);
        elems.push(sc.element()?);
        if let Some(c) = counts.last_mut() {
            *c += 1;
        }
        // Close as many groups as end here.
        loop {
            sc.skip_space();
            if sc.eat(b',') {
                break;
            }
            if !sc.eat(b'}') {
                return None;
            }
            let n = counts.pop()?;
            let level = counts.len();
            match lengths.get_mut(level) {
                Some(slot @ None) => *slot = Some(n),
                Some(Some(m)) if *m == n => {}
                _ => return None,
            }
            match counts.last_mut() {
                Some(c) => *c += 1,
                None => {
                    sc.skip_space();
                    if sc.pos != sc.s.len() {
                        return None;
                    }
                    let dims: Vec<usize> = lengths.into_iter().collect::<Option<_>>()?;
                    let dims = if declared.is_empty() {
                        dims.into_iter().map(|n| (1, n)).collect()
                    } else {
                        let same = declared.len() == dims.len()
                            && declared.iter().zip(&dims).all(|((_, a), b)| a == b);
                        if !same {
                            return None;
                        }
                        declared
                    };
                    return Some(RawArray { dims, elems });
                }
            }
        }
    }
}

/// Parses array text with the element type's input function.
pub(super) fn parse_array(elem: &SqlType, text: &str) -> Option<ArrayVal> {
    let raw = parse_raw(text)?;
    let mut elems = Vec::with_capacity(raw.elems.len());
    for e in raw.elems {
        elems.push(match e {
            None => None,
            Some(t) => Some(OwnedValue::from_value(parse_as(elem, &t)?)?),
        });
    }
    Some(ArrayVal {
        dims: raw.dims,
        elems,
    })
}

/// Input text PG reads back as the same array (elements always quoted).
pub(super) fn canonical_text(a: &ArrayVal, elem: &SqlType) -> String {
    let mut out = String::new();
    if a.dims.iter().any(|(lb, _)| *lb != 1) {
        for (lb, len) in &a.dims {
            let hi = lb + i64::try_from(*len).unwrap_or(0) - 1;
            out.push_str(&format!("[{lb}:{hi}]"));
        }
        out.push('=');
    }
    if a.dims.is_empty() {
        out.push_str("{}");
        return out;
    }
    // Group sizes: how many elements one brace pair of each level encloses.
    let mut sizes = vec![1usize; a.dims.len()];
    let mut size = 1usize;
    for i in (0..a.dims.len()).rev() {
        size = size.saturating_mul(a.dims[i].1);
        sizes[i] = size;
    }
    for (k, e) in a.elems.iter().enumerate() {
        for &s in &sizes {
            if k % s == 0 {
                out.push('{');
            }
        }
        match e {
            None => out.push_str("NULL"),
            Some(v) => {
                out.push('"');
                for c in v.canonical_text(elem).chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
        for &s in sizes.iter().rev() {
            if (k + 1) % s == 0 {
                out.push('}');
            }
        }
        if k + 1 < a.elems.len() {
            out.push(',');
        }
    }
    out
}

fn elem_cmp(a: &Option<OwnedValue>, b: &Option<OwnedValue>, cmp: CmpType) -> Option<Ordering> {
    Some(match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => compare(&x.as_value(), &y.as_value(), cmp)?,
    })
}

/// PG `array_cmp` (also decides `=`).
pub(super) fn cmp_arrays(a: &ArrayVal, b: &ArrayVal, cmp: CmpType) -> Option<Ordering> {
    for (x, y) in a.elems.iter().zip(&b.elems) {
        let o = elem_cmp(x, y, cmp)?;
        if o != Ordering::Equal {
            return Some(o);
        }
    }
    Some(
        a.elems
            .len()
            .cmp(&b.elems.len())
            .then(a.dims.len().cmp(&b.dims.len()))
            .then_with(|| {
                for (x, y) in a.dims.iter().zip(&b.dims) {
                    let o = x.1.cmp(&y.1).then(x.0.cmp(&y.0));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            }),
    )
}

fn found(needle: &OwnedValue, hay: &ArrayVal, cmp: CmpType) -> Option<bool> {
    for h in hay.elems.iter().flatten() {
        if compare(&needle.as_value(), &h.as_value(), cmp)? == Ordering::Equal {
            return Some(true);
        }
    }
    Some(false)
}

/// `a @> b`: every element of `b` is a non-NULL element equal to some element of `a`.
pub(super) fn contains(a: &ArrayVal, b: &ArrayVal, cmp: CmpType) -> Option<bool> {
    for e in &b.elems {
        match e {
            None => return Some(false),
            Some(v) => {
                if !found(v, a, cmp)? {
                    return Some(false);
                }
            }
        }
    }
    Some(true)
}

/// `a && b`: some non-NULL element in both.
pub(super) fn overlaps(a: &ArrayVal, b: &ArrayVal, cmp: CmpType) -> Option<bool> {
    for v in a.elems.iter().flatten() {
        if found(v, b, cmp)? {
            return Some(true);
        }
    }
    Some(false)
}

fn incompatible() -> EvalError {
    EvalError::Message("cannot concatenate incompatible arrays")
}

/// `array_cat` / `anyarray || anyarray` (NULL operands are no-ops).
pub(super) fn cat(a: Option<ArrayVal>, b: Option<ArrayVal>) -> Result<Option<ArrayVal>, EvalError> {
    let (a, b) = match (a, b) {
        (None, b) => return Ok(b),
        (a, None) => return Ok(a),
        (Some(a), Some(b)) => (a, b),
    };
    if b.dims.is_empty() {
        return Ok(Some(a));
    }
    if a.dims.is_empty() {
        return Ok(Some(b));
    }
    let (n1, n2) = (a.dims.len(), b.dims.len());
    let dims = if n1 == n2 {
        if a.dims[1..] != b.dims[1..] {
            return Err(incompatible());
        }
        let mut d = a.dims.clone();
        d[0].1 += b.dims[0].1;
        d
    } else if n1 + 1 == n2 {
        if a.dims[..] != b.dims[1..] {
            return Err(incompatible());
        }
        let mut d = b.dims.clone();
        d[0].1 += 1;
        d
    } else if n1 == n2 + 1 {
        if a.dims[1..] != b.dims[..] {
            return Err(incompatible());
        }
        let mut d = a.dims.clone();
        d[0].1 += 1;
        d
    } else {
        return Err(incompatible());
    };
    let mut elems = a.elems;
    elems.extend(b.elems);
    Ok(Some(ArrayVal { dims, elems }))
}

/// `array_append` / `anyarray || anyelement`.
pub(super) fn append(
    a: Option<ArrayVal>,
    e: Option<OwnedValue>,
) -> Result<Option<ArrayVal>, EvalError> {
    let mut a = a.unwrap_or_default();
    match a.dims.len() {
        0 => Ok(Some(ArrayVal::one_dim(vec![e]))),
        1 => {
            a.dims[0].1 += 1;
            a.elems.push(e);
            Ok(Some(a))
        }
        _ => Err(EvalError::Message(
            "argument must be empty or one-dimensional array",
        )),
    }
}

/// `array_prepend` / `anyelement || anyarray` (the lower bound is kept).
pub(super) fn prepend(
    e: Option<OwnedValue>,
    a: Option<ArrayVal>,
) -> Result<Option<ArrayVal>, EvalError> {
    let mut a = a.unwrap_or_default();
    match a.dims.len() {
        0 => Ok(Some(ArrayVal::one_dim(vec![e]))),
        1 => {
            a.dims[0].1 += 1;
            a.elems.insert(0, e);
            Ok(Some(a))
        }
        _ => Err(EvalError::Message(
            "argument must be empty or one-dimensional array",
        )),
    }
}

/// `a[i][j]…`: NULL when the subscript count differs from the dimensions or is out of range.
pub(super) fn element(a: &ArrayVal, subs: &[i64]) -> Option<OwnedValue> {
    if subs.len() != a.dims.len() {
        return None;
    }
    let mut offset = 0usize;
    for (&(lb, len), &i) in a.dims.iter().zip(subs) {
        let k = usize::try_from(i.checked_sub(lb)?).ok()?;
        if k >= len {
            return None;
        }
        offset = offset * len + k;
    }
    a.elems.get(offset)?.clone()
}

/// `a[lo:hi]…` (missing bounds are the array's own); the result's lower bounds are 1.
pub(super) fn slice(a: &ArrayVal, bounds: &[(Option<i64>, Option<i64>)]) -> ArrayVal {
    if a.dims.is_empty() || a.dims.len() < bounds.len() {
        return ArrayVal::empty();
    }
    let mut ranges = Vec::with_capacity(a.dims.len());
    for (d, &(lb, len)) in a.dims.iter().enumerate() {
        let ub = lb + i64::try_from(len).unwrap_or(i64::MAX / 4) - 1;
        let (lo, hi) = match bounds.get(d) {
            Some(&(l, h)) => (l.unwrap_or(lb).max(lb), h.unwrap_or(ub).min(ub)),
            None => (lb, ub),
        };
        if lo > hi {
            return ArrayVal::empty();
        }
        let (Ok(from), Ok(to)) = (usize::try_from(lo - lb), usize::try_from(hi - lb)) else {
            return ArrayVal::empty();
        };
        ranges.push((from, to));
    }
    let mut elems = Vec::new();
    let mut index = vec![0usize; ranges.len()];
    for (i, r) in ranges.iter().enumerate() {
        index[i] = r.0;
    }
    loop {
        let mut offset = 0usize;
        for (d, &k) in index.iter().enumerate() {
            offset = offset * a.dims[d].1 + k;
        }
        elems.push(a.elems.get(offset).cloned().flatten());
        // Odometer increment, innermost first.
        let mut d = ranges.len();
        loop {
            if d == 0 {
                let dims = ranges.iter().map(|(f, t)| (1, t - f + 1)).collect();
                return ArrayVal { dims, elems };
            }
            d -= 1;
            if index[d] < ranges[d].1 {
                index[d] += 1;
                break;
            }
            index[d] = ranges[d].0;
        }
    }
}

/// `ARRAY[sub, …]` over array values: one more dimension.
pub(super) fn stack(subs: Vec<Option<ArrayVal>>) -> Result<ArrayVal, EvalError> {
    let mismatch = EvalError::Message(
        "multidimensional arrays must have array expressions with matching dimensions",
    );
    let n = subs.len();
    let mut first: Option<Vec<(i64, usize)>> = None;
    let mut any_empty = false;
    let mut elems = Vec::new();
    for sub in subs {
        match sub {
            Some(s) if !s.dims.is_empty() => {
                match &first {
                    None => first = Some(s.dims.clone()),
                    Some(d) if *d == s.dims => {}
                    Some(_) => return Err(mismatch),
                }
                elems.extend(s.elems);
            }
            _ => any_empty = true,
        }
    }
    match first {
        None => Ok(ArrayVal::empty()),
        Some(_) if any_empty => Err(mismatch),
        Some(inner) => {
            if inner.len() + 1 > MAX_DIMS {
                return Err(EvalError::Message(
                    "number of array dimensions exceeds the maximum allowed (6)",
                ));
            }
            let mut dims = vec![(1, n)];
            dims.extend(inner);
            Ok(ArrayVal { dims, elems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Dims = Vec<(i64, usize)>;

    fn ints(text: &str) -> Option<(Dims, Vec<Option<i64>>)> {
        let a = parse_array(&SqlType::Int4, text)?;
        let elems = a
            .elems
            .iter()
            .map(|e| match e {
                Some(OwnedValue::Int(i)) => Some(*i),
                _ => None,
            })
            .collect();
        Some((a.dims, elems))
    }

    #[test]
    fn array_in_grammar() {
        assert_eq!(ints("{}"), Some((vec![], vec![])));
        assert_eq!(
            ints(" { 1 , 2 } "),
            Some((vec![(1, 2)], vec![Some(1), Some(2)]))
        );
        assert_eq!(
            ints("{{1,2},{3,NULL}}"),
            Some((vec![(1, 2), (1, 2)], vec![Some(1), Some(2), Some(3), None]))
        );
        assert_eq!(
            ints("[0:1]={1,2}"),
            Some((vec![(0, 2)], vec![Some(1), Some(2)]))
        );
        assert_eq!(
            ints("[2]={1,2}"),
            Some((vec![(1, 2)], vec![Some(1), Some(2)]))
        );
        assert_eq!(
            ints("{\"1\", null}"),
            Some((vec![(1, 2)], vec![Some(1), None]))
        );
        for bad in [
            "{{1,2},{3}}",
            "{1,{2}}",
            "{{1},2}",
            "{1,,2}",
            "{1",
            "1,2",
            "{1}x",
            "{{{{{{{1}}}}}}}",
            "[1:3]={1,2}",
            "{\"NULL\"}",
            "{{}}",
        ] {
            assert!(ints(bad).is_none(), "{bad}");
        }
        let t = parse_raw(r#"{ a , "b c" , NULL, "NULL", a\ , "q\"x"}"#).unwrap();
        let got: Vec<Option<&str>> = t.elems.iter().map(|e| e.as_deref()).collect();
        assert_eq!(
            got,
            vec![
                Some("a"),
                Some("b c"),
                None,
                Some("NULL"),
                Some("a "),
                Some("q\"x")
            ]
        );
    }

    #[test]
    fn canonical_text_round_trips() {
        for text in [
            "{}",
            "{1,2}",
            "{{1,2},{3,NULL}}",
            "[0:1]={1,2}",
            "[0:1][2:2]={{1},{2}}",
        ] {
            let a = parse_array(&SqlType::Int4, text).unwrap();
            let again = parse_array(&SqlType::Int4, &canonical_text(&a, &SqlType::Int4)).unwrap();
            assert_eq!(
                cmp_arrays(&a, &again, CmpType::Int),
                Some(Ordering::Equal),
                "{text}"
            );
        }
    }

    #[test]
    fn slices_and_elements() {
        let a = parse_array(&SqlType::Int4, "[2:3][5:6]={{1,2},{3,4}}").unwrap();
        assert!(matches!(element(&a, &[3, 6]), Some(OwnedValue::Int(4))));
        assert!(element(&a, &[1, 6]).is_none());
        let s = slice(&a, &[(Some(2), Some(2))]);
        assert_eq!(s.dims, vec![(1, 1), (1, 2)]);
        let s = slice(&a, &[(Some(5), None)]);
        assert!(s.dims.is_empty());
    }
}
