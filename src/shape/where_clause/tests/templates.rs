//! Compiling through the template cache gives exactly the full compile's result: the same
//! tree (hence the same SQL, routing keys and evaluation) or the same error, for generated
//! clauses with random constants, and for the cases that must fall back.

use parking_lot::Mutex;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use super::super::eval::Node;
use super::super::parse;
use super::super::template::{Cache, Path, compile_in, constant_spans};
use super::*;

/// Everything observable about a compile (the tree, SQL, routing keys, flags, and the
/// evaluation of `rows`), for comparison.
fn outcome(
    result: Result<Node, WhereError>,
    schema: &Schema,
    rows: &[Vec<Option<&str>>],
) -> Result<String, String> {
    match result {
        Ok(root) => {
            let w = WhereClause::from_root(root, schema);
            let evaluated: Vec<_> = rows.iter().map(|r| w.evaluate(r)).collect();
            Ok(format!(
                "{w:?}\nsql: {}\nindex: {:?}\nbytewise: {}\nrows: {evaluated:?}",
                w.sql(),
                w.index_entries(),
                w.needs_bytewise_default_collation()
            ))
        }
        Err(e) => Err(format!("{e}\n{e:?}")),
    }
}

/// Compiles `texts` in order through one fresh cache, checking each against a full compile;
/// returns the paths taken.
fn through_cache(texts: &[&str], params: &[&str]) -> Vec<Path> {
    through_cache_with(texts, params, &[])
}

fn through_cache_with(texts: &[&str], params: &[&str], tables: &[InnerTable]) -> Vec<Path> {
    let schema = items();
    let params: Vec<String> = params.iter().map(|p| (*p).to_owned()).collect();
    let cache = Mutex::new(Cache::new());
    let rows = [
        row(&schema, &[("priority", "1"), ("title", "a")]),
        row(
            &schema,
            &[("priority", "7"), ("title", "it's"), ("id", "3")],
        ),
    ];
    texts
        .iter()
        .map(|text| {
            let (cached, path) = compile_in(&cache, text, &params, &schema, tables);
            let full = parse::compile(text, &params, &schema, tables);
            assert_eq!(
                outcome(cached, &schema, &rows),
                outcome(full, &schema, &rows),
                "{text} ({path:?})"
            );
            path
        })
        .collect()
}

use Path::{FellBack, Hit, Miss, Uncacheable, Untemplated};

#[test]
fn clauses_differing_in_constants_share_a_parse() {
    let cases: &[(&[&str], &[Path])] = &[
        (
            // int4, int8 and numeric constants: typing runs again, so the comparison type
            // follows the constant.
            &[
                "priority = 1",
                "priority = 2",
                "priority = 3000000000",
                "priority = 1.5",
            ],
            &[Miss, Hit, Hit, Hit],
        ),
        (
            &["title = 'a'", "title = 'it''s'", "title = ''"],
            &[Miss, Hit, Hit],
        ),
        (
            &["id IN (1, 2)", "id IN (3, 4)", "id IN (1, 2, 3)"],
            &[Miss, Hit, Miss],
        ),
        (
            &[
                "priority BETWEEN SYMMETRIC 1 AND 5",
                "priority BETWEEN SYMMETRIC 9 AND 2",
            ],
            &[Miss, Hit],
        ),
        (
            &["due = DATE '2024-01-01'", "due = DATE '2024-02-29'"],
            &[Miss, Hit],
        ),
        (
            &[
                "lower(title) = 'a' AND tags @> ARRAY['x'] AND nums[1] > 2",
                "lower(title) = 'b' AND tags @> ARRAY['y'] AND nums[2] > 3",
            ],
            &[Miss, Hit],
        ),
        (
            &["priority = ANY('{1,2}')", "priority = ANY('{3}')"],
            &[Miss, Hit],
        ),
        (
            &["dur > interval '1 day'", "dur > interval '2 hours'"],
            &[Miss, Hit],
        ),
        (
            // Folding depends on the constants: the tree differs, and still matches.
            &["priority = 1 AND 1 = 1", "priority = 1 AND 1 = 2"],
            &[Miss, Hit],
        ),
    ];
    for (texts, paths) in cases {
        assert_eq!(through_cache(texts, &[]), *paths, "{texts:?}");
    }
    // Parameters are not part of the template.
    assert_eq!(
        through_cache(
            &[
                "priority = $1 AND title = 'x'",
                "priority = $1 AND title = 'y'"
            ],
            &["5"]
        ),
        [Miss, Hit]
    );
}

#[test]
fn a_constant_that_does_not_type_gets_the_full_compile_error() {
    let cases: &[(&[&str], &[Path])] = &[
        (
            // The error's location is in the second text, past a longer constant.
            &[
                "title = 'x' AND priority = '1'",
                "title = 'xxxxx' AND priority = 'abc'",
            ],
            &[Miss, FellBack],
        ),
        (&["kind = 'active'", "kind = 'nope'"], &[Miss, FellBack]),
        (
            &["due = '2024-01-01'", "due = '2024-02-30'"],
            &[Miss, FellBack],
        ),
        (
            &["priority = 1", "priority = 99999999999999999999"],
            &[Miss, Hit],
        ),
        (
            &["small = 1 + 1", "small = 2147483647 + 1"],
            &[Miss, FellBack],
        ),
        // A first clause that does not compile keeps no template.
        (
            &["priority = 'abc'", "priority = '1'", "priority = '2'"],
            &[Miss, Miss, Hit],
        ),
    ];
    for (texts, paths) in cases {
        assert_eq!(through_cache(texts, &[]), *paths, "{texts:?}");
    }
    // A missing parameter is an error on either path.
    assert_eq!(
        through_cache(
            &["priority = $1 OR id = 1", "priority = $2 OR id = 2"],
            &["1"]
        ),
        [Miss, Miss]
    );
}

#[test]
fn texts_the_lexer_is_unsure_of_or_templates_that_do_not_qualify_compile_in_full() {
    assert_eq!(
        through_cache(&["title = E'a'", "title = E'b'"], &[]),
        [Untemplated, Untemplated]
    );
    // `[3]` is a number the lexer reads as a constant but sqlparser as an array size.
    assert_eq!(
        through_cache(&["nums::int[3] = '{1}'", "nums::int[3] = '{2}'"], &[]),
        [Miss, Uncacheable]
    );
}

#[test]
fn subqueries_are_shared_only_without_constants_inside() {
    let col = |name: &str| Column {
        name: name.to_owned(),
        type_name: "int8".to_owned(),
        array_dims: 0,
        enum_labels: None,
        not_null: false,
    };
    let projects = InnerTable {
        oid: 10,
        schema: "public".into(),
        name: "projects".into(),
        columns: Schema {
            columns: vec![col("id"), col("org")],
        },
    };
    let tables = [projects];
    assert_eq!(
        through_cache_with(
            &[
                "priority = 1 AND id IN (SELECT id FROM projects)",
                "priority = 2 AND id IN (SELECT id FROM projects)",
            ],
            &[],
            &tables
        ),
        [Miss, Hit]
    );
    assert_eq!(
        through_cache_with(
            &[
                "id IN (SELECT id FROM projects WHERE org = 1)",
                "id IN (SELECT id FROM projects WHERE org = 2)",
            ],
            &[],
            &tables
        ),
        [Miss, Uncacheable]
    );
    // The table the caller did not supply is reported by either path.
    assert_eq!(
        through_cache_with(
            &[
                "priority = 1 AND id IN (SELECT id FROM projects)",
                "priority = 2 AND id IN (SELECT id FROM projects)",
            ],
            &[],
            &[]
        ),
        [Miss, Miss]
    );
}

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "7",
    "42",
    "2147483647",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "99999999999999999999999",
    "1.5",
    "0.0",
    "3.25",
    "10.000",
];

const STRINGS: &[&str] = &[
    "'1'",
    "'abc'",
    "''",
    "'it''s'",
    "'2024-01-01'",
    "'2024-02-30'",
    "'{1,2}'",
    "'{a,b}'",
    "'NaN'",
    "'Infinity'",
    "'active'",
    "'inactive'",
    "'{\"a\": 1}'",
    "'[1, 2]'",
    "'1 day'",
    "'\\x00ff'",
    "'t'",
    "'12:00'",
    "'a%'",
    "'%b%'",
    "'é'",
    "'a\\'",
    "'00000000-0000-0000-0000-000000000000'",
    "'2024-01-01 10:00:00+02'",
    "'UTC'",
    "'Europe/Paris'",
    "' '",
    "'-1'",
    "'1.5'",
    "'{}'",
];

/// How one constant is replaced: kept, from a pool of its kind, or random.
#[derive(Clone, Debug)]
struct Substitution {
    mode: u8,
    pick: prop::sample::Index,
    int: String,
    decimal: String,
    text: String,
}

impl Substitution {
    fn apply(&self, is_string: bool, original: &str) -> String {
        match (self.mode, is_string) {
            (0, _) => original.to_owned(),
            (1, false) => NUMBERS[self.pick.index(NUMBERS.len())].to_owned(),
            (1, true) => STRINGS[self.pick.index(STRINGS.len())].to_owned(),
            (2, false) => self.int.clone(),
            (_, false) => self.decimal.clone(),
            (_, true) => format!("'{}'", self.text),
        }
    }
}

fn substitution() -> impl Strategy<Value = Substitution> {
    (
        0..4u8,
        any::<prop::sample::Index>(),
        // Short: `amount ^ 700000` on a row with 1.5 is a legal 123k-digit numeric, seconds
        // of work in a debug build (as it is work for PG).
        "[0-9]{1,3}",
        "[0-9]{1,3}\\.[0-9]{1,3}",
        "[a-z0-9 %_{},:.-]{0,8}",
    )
        .prop_map(|(mode, pick, int, decimal, text)| Substitution {
            mode,
            pick,
            int,
            decimal,
            text,
        })
}

/// `text` with its constants replaced (`None` when it is not templated).
fn substituted(text: &str, subs: &[Substitution]) -> Option<String> {
    let spans = constant_spans(text)?;
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (k, (is_string, range)) in spans.into_iter().enumerate() {
        out.push_str(text.get(at..range.start)?);
        let sub = subs.get(k % subs.len().max(1))?;
        out.push_str(&sub.apply(is_string, text.get(range.clone())?));
        at = range.end;
    }
    out.push_str(text.get(at..)?);
    Some(out)
}

/// Primes a fresh cache with `first`, then compiles `second` through it; asserts the result
/// equals `second`'s full compile and returns the path taken.
fn second_matches_full(
    first: &str,
    second: &str,
    rows: &[Vec<Option<&str>>],
) -> Result<Path, TestCaseError> {
    let schema = items();
    let cache = Mutex::new(Cache::new());
    let _ = compile_in(&cache, first, &[], &schema, &[]);
    let (cached, path) = compile_in(&cache, second, &[], &schema, &[]);
    let full = parse::compile(second, &[], &schema, &[]);
    prop_assert_eq!(
        outcome(cached, &schema, rows),
        outcome(full, &schema, rows),
        "{} after {} ({:?})",
        second,
        first,
        path
    );
    Ok(path)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn cached_compile_equals_full_compile(
        c in clause(),
        subs in prop::collection::vec(substitution(), 1..8),
        picks in prop::collection::vec(gen_row(), 1..4),
    ) {
        let Some(c2) = substituted(&c, &subs) else {
            return Ok(());
        };
        let schema = items();
        let rows: Vec<_> = picks.iter().map(|p| materialise(&schema, p)).collect();
        second_matches_full(&c, &c2, &rows)?;
        // And the other way round (the first clause may be the one that does not compile).
        second_matches_full(&c2, &c, &rows)?;
    }
}

/// The property above is not vacuous: most generated clauses are templated, and most of
/// those reuse the first clause's parse.
#[test]
fn most_generated_clauses_take_the_template_path() {
    let mut runner = TestRunner::deterministic();
    let (mut templated, mut hits) = (0, 0);
    let n = 400;
    for _ in 0..n {
        let c = clause().new_tree(&mut runner).expect("generates").current();
        let subs = prop::collection::vec(substitution(), 1..8)
            .new_tree(&mut runner)
            .expect("generates")
            .current();
        let Some(c2) = substituted(&c, &subs) else {
            continue;
        };
        templated += 1;
        let path = second_matches_full(&c, &c2, &[]).expect("same result");
        if path == Hit {
            hits += 1;
        }
    }
    assert!(templated * 10 >= n * 7, "{templated} of {n} templated");
    assert!(hits * 10 >= templated * 3, "{hits} hits of {templated}");
}
