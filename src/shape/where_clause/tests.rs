//! Tests: the spec's conformance cases (sections A and B) that fall in the supported
//! subset, parser hardening, routing keys, normalised SQL, and property tests for the
//! module invariants (no panics, never-miss index, idempotent SQL).

use proptest::prelude::*;

use super::*;

/// A where clause, a row (column, text) and the expected inclusion.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);

/// The spec's `items` table.
fn items() -> Schema {
    let col = |name: &str, ty: &str| Column {
        name: name.to_owned(),
        type_name: ty.to_owned(),
        array_dims: 0,
        enum_labels: None,
        not_null: false,
    };
    let mut columns = vec![
        Column {
            not_null: true,
            ..col("id", "int8")
        },
        col("title", "text"),
        col("status", "text"),
        col("priority", "int4"),
        col("score", "float8"),
        col("amount", "numeric"),
        col("flag", "bool"),
        Column {
            array_dims: 1,
            ..col("tags", "text")
        },
        Column {
            array_dims: 1,
            ..col("nums", "int4")
        },
        col("created_at", "timestamptz"),
        col("due", "date"),
        col("uid", "uuid"),
        col("bin", "bytea"),
        col("code", "bpchar"),
        Column {
            enum_labels: Some(vec!["active".to_owned(), "inactive".to_owned()]),
            ..col("kind", "my_enum")
        },
        col("dur", "interval"),
        col("Status-Check", "text"),
        col("f4", "float4"),
        col("small", "int2"),
        col("note", "varchar"),
        col("at", "timestamp"),
        col("t", "time"),
        col("data", "jsonb"),
        col("doc", "json"),
        Column {
            array_dims: 1,
            ..col("jdocs", "jsonb")
        },
    ];
    columns.shrink_to_fit();
    Schema { columns }
}

fn index_of(schema: &Schema, name: &str) -> usize {
    schema
        .columns
        .iter()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

/// A row of `items` with the given columns set (everything else NULL).
fn row<'a>(schema: &Schema, values: &[(&str, &'a str)]) -> Vec<Option<&'a str>> {
    let mut r = vec![None; schema.columns.len()];
    for (name, v) in values {
        r[index_of(schema, name)] = Some(*v);
    }
    r
}

fn compile(text: &str) -> WhereClause {
    WhereClause::compile(text, &[], &items()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn compile_err(text: &str, params: &[&str]) -> String {
    let params: Vec<String> = params.iter().map(|p| (*p).to_owned()).collect();
    match WhereClause::compile(text, &params, &items()) {
        Ok(w) => panic!("{text}: expected an error, got {}", w.sql()),
        Err(e) => e.to_string(),
    }
}

/// Checks inclusion, and that a matching row is routed by the index.
fn check(text: &str, values: &[(&str, &str)], expected: bool) {
    let schema = items();
    let w = compile(text);
    let r = row(&schema, values);
    assert_eq!(
        w.matches(&r),
        expected,
        "{text} on {values:?} (sql: {})",
        w.sql()
    );
    assert_never_misses(&w, &r);
    // The normal form is a fixpoint and evaluates the same.
    let again = compile(w.sql());
    assert_eq!(again.sql(), w.sql(), "{text}");
    assert_eq!(
        again.matches(&r),
        expected,
        "{text} re-compiled as {}",
        w.sql()
    );
}

fn assert_never_misses(w: &WhereClause, r: &[Option<&str>]) {
    if !w.matches(r) {
        return;
    }
    if let Some(entries) = w.index_entries() {
        let hit = entries
            .iter()
            .any(|e| e.may_match(r.get(e.column).copied().flatten()));
        assert!(
            hit,
            "index misses a matching row: {} {entries:?} {r:?}",
            w.sql()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Conformance A (evaluation), the cases within the supported subset.

#[test]
fn conformance_a_evaluation() {
    let cases: &[Case<'_>] = &[
        // E01
        ("priority = 5", &[("priority", "5")], true),
        ("priority = 5", &[], false),
        ("priority = 5", &[("priority", "6")], false),
        ("5 = priority", &[("priority", "5")], true),
        // E02
        ("priority IS DISTINCT FROM 5", &[], true),
        ("priority IS DISTINCT FROM 5", &[("priority", "5")], false),
        ("priority IS NOT DISTINCT FROM NULL", &[], true),
        // E03
        ("status IN ('todo','done')", &[("status", "todo")], true),
        ("status IN ('todo','done')", &[("status", "x")], false),
        ("status IN ('todo','done')", &[], false),
        // E04
        ("status IN ('todo', NULL)", &[("status", "x")], false),
        ("status IN ('todo', NULL)", &[("status", "todo")], true),
        // E05
        ("status NOT IN ('todo', NULL)", &[("status", "x")], false),
        ("status NOT IN ('todo', NULL)", &[("status", "todo")], false),
        // E06
        ("NOT (priority > 5)", &[], false),
        ("NOT (priority > 5)", &[("priority", "3")], true),
        // E07
        ("priority > 5 OR flag", &[("flag", "t")], true),
        ("priority > 5 OR flag", &[("flag", "f")], false),
        // E08
        ("priority > 5 AND flag", &[("flag", "f")], false),
        ("priority > 5 AND flag", &[("flag", "t")], false),
        // E09
        ("flag IS NOT TRUE", &[], true),
        ("flag IS NOT TRUE", &[("flag", "t")], false),
        ("flag IS UNKNOWN", &[], true),
        // E10
        (
            "priority BETWEEN SYMMETRIC 10 AND 1",
            &[("priority", "5")],
            true,
        ),
        ("priority BETWEEN SYMMETRIC 10 AND 1", &[], false),
        ("priority BETWEEN 10 AND 1", &[("priority", "5")], false),
        // E11
        ("priority NOT BETWEEN 1 AND 10", &[], false),
        ("priority NOT BETWEEN 1 AND 10", &[("priority", "11")], true),
        // E12
        ("title LIKE 'foo_'", &[("title", "foo")], false),
        ("title LIKE 'foo_'", &[("title", "fooX")], true),
        ("title LIKE 'foo_'", &[("title", "Foox")], false),
        // E13
        ("title LIKE 'a\\%'", &[("title", "a%")], true),
        ("title LIKE 'a\\%'", &[("title", "a\\%")], false),
        // E14
        ("title LIKE 'a_c'", &[("title", "a\nc")], true),
        // E15
        ("title LIKE '_'", &[("title", "é")], true),
        // E16
        ("title LIKE 'abc'", &[("title", "abc\n")], false),
        // E17
        ("lower(title) = 'hello'", &[("title", "HeLLo")], true),
        // E18
        ("greatest(priority, 3) = 3", &[], true),
        ("greatest(priority, 3) = 3", &[("priority", "5")], false),
        // E19
        ("concat(title, status) = 'ab'", &[("title", "ab")], true),
        ("title || status IS NULL", &[("title", "ab")], true),
        // E25
        ("score = 1", &[("score", "1.0")], true),
        // E26
        ("amount + 0.1 = 0.3", &[("amount", "0.2")], true),
        // E33 (PG raises `integer out of range`; the row is not included)
        ("priority + 1 > 0", &[("priority", "2147483647")], false),
        ("score = 1", &[("score", "1")], true),
        // E27
        (
            "amount = 12345678901234567.2",
            &[("amount", "12345678901234567.1")],
            false,
        ),
        (
            "amount = 12345678901234567.1",
            &[("amount", "12345678901234567.10")],
            true,
        ),
        // E28
        ("code = 'abc'", &[("code", "abc  ")], true),
        // E29
        ("code LIKE 'abc'", &[("code", "abc  ")], false),
        // E30
        (
            "created_at > '2024-01-01 09:00:00+02'",
            &[("created_at", "2024-01-01 08:00:00+00")],
            true,
        ),
        // E32 (C collation; the SQL pins COLLATE "C")
        ("title > 'B'", &[("title", "a")], true),
        // E34
        ("score > 1e308", &[("score", "NaN")], true),
        // E35
        ("id = 3000000000", &[("id", "3000000000")], true),
    ];
    for (text, values, expected) in cases {
        check(text, values, *expected);
    }
}

#[test]
fn conformance_a_outside_the_subset_is_a_clean_error() {
    assert!(WhereClause::compile("title SIMILAR TO 'a'", &[], &items()).is_err());
}

#[test]
fn conformance_a_arrays() {
    let cases: &[Case<'_>] = &[
        // E20
        ("tags @> '{a}'", &[("tags", "{a,b}")], true),
        ("tags @> '{a}'", &[], false),
        ("tags @> '{a}'", &[("tags", "{}")], false),
        // E21
        ("'a' = ANY(tags)", &[("tags", "{a,b}")], true),
        ("'a' = ANY(tags)", &[("tags", "{c,NULL}")], false),
        ("'a' = ANY(tags)", &[("tags", "{}")], false),
        // E22
        ("NOT ('c' = ANY(tags))", &[("tags", "{a,NULL}")], false),
        // E23
        ("nums = '{1,2}'", &[("nums", "{2,1}")], false),
        ("nums = '{1,2}'", &[("nums", "{1,2}")], true),
        // E24
        ("tags @> '{a,NULL}'", &[("tags", "{a,NULL}")], false),
    ];
    for (text, values, expected) in cases {
        check(text, values, *expected);
    }
}

#[test]
fn array_semantics() {
    let cases: &[Case<'_>] = &[
        // ANY/ALL three-valued rules (spec 3.2).
        ("NOT ('c' = ANY(tags))", &[("tags", "{a,b}")], true),
        ("(priority = ANY(nums)) IS NULL", &[("nums", "{1}")], true),
        ("(priority = ANY(nums)) IS FALSE", &[("nums", "{}")], true),
        ("(priority = ALL(nums)) IS TRUE", &[("nums", "{}")], true),
        (
            "priority > ALL(nums)",
            &[("priority", "5"), ("nums", "{1,4}")],
            true,
        ),
        (
            "(priority > ALL(nums)) IS NULL",
            &[("priority", "5"), ("nums", "{1,NULL}")],
            true,
        ),
        (
            "priority < ALL(nums)",
            &[("priority", "5"), ("nums", "{1,NULL}")],
            false,
        ),
        ("priority = ANY('{1,5}')", &[("priority", "5")], true),
        (
            "score = ANY(nums)",
            &[("score", "1"), ("nums", "{1,2}")],
            true,
        ),
        (
            "priority IN (1, 2) AND 2 = ANY(nums)",
            &[("priority", "1"), ("nums", "{2}")],
            true,
        ),
        (
            "title = ANY(ARRAY['x', status])",
            &[("title", "s"), ("status", "s")],
            true,
        ),
        ("priority = ANY(ARRAY[1, 2.5])", &[("priority", "1")], true),
        // Containment and overlap over flattened arrays; NULL elements never match.
        ("nums @> '{{1,2},{3,4}}'", &[("nums", "{4,3,2,1}")], true),
        ("nums <@ '{1,2,3}'", &[("nums", "{{1,2},{3,1}}")], true),
        ("nums <@ '{1,2,3}'", &[("nums", "{1,NULL}")], false),
        ("'{}' <@ nums", &[("nums", "{}")], true),
        ("nums && '{5,6}'", &[("nums", "{1,6}")], true),
        ("nums && '{}'", &[("nums", "{1,6}")], false),
        ("nums && '{NULL}'", &[("nums", "{NULL}")], false),
        (
            "tags @> ARRAY[title]",
            &[("tags", "{\"a b\",c}"), ("title", "a b")],
            true,
        ),
        // Equality: NULL elements equal, dimensions and bounds matter.
        ("nums = '{1,NULL}'", &[("nums", "{1,NULL}")], true),
        ("nums = '{{1,2}}'", &[("nums", "{1,2}")], false),
        ("nums = '[0:1]={1,2}'", &[("nums", "[0:1]={1,2}")], true),
        ("nums <> '{1,2}'", &[("nums", "[0:1]={1,2}")], true),
        ("nums < '{1,2,3}'", &[("nums", "{1,2}")], true),
        ("nums > '{1,NULL}'", &[("nums", "{1,2}")], false),
        // Subscripts and slices.
        ("nums[2] = 20", &[("nums", "{10,20}")], true),
        ("nums[3] IS NULL", &[("nums", "{10,20}")], true),
        ("nums[1] IS NULL", &[("nums", "{{1,2}}")], true),
        ("nums[1][2] = 2", &[("nums", "{{1,2}}")], true),
        ("nums[1] = 10", &[("nums", "[0:1]={10,20}")], false),
        ("nums[2:] = '{20,30}'", &[("nums", "{10,20,30}")], true),
        ("nums[:1] = '{10}'", &[("nums", "{10,20,30}")], true),
        (
            "nums[1:1][2] = '{{1,2}}'",
            &[("nums", "{{1,2},{3,4}}")],
            true,
        ),
        ("nums[5:9] = '{}'", &[("nums", "{1}")], true),
        ("nums[1.6] = 2", &[("nums", "{1,2}")], true),
        ("nums[NULL] IS NULL", &[("nums", "{1,2}")], true),
        (
            "nums[priority] = 2",
            &[("nums", "{1,2}"), ("priority", "2")],
            true,
        ),
        ("(ARRAY[1,2,3])[2] = priority", &[("priority", "2")], true),
        // || and the array functions.
        ("nums || 3 = '{1,3}'", &[("nums", "{1}")], true),
        ("0 || nums = '[0:1]={0,1}'", &[("nums", "[0:0]={1}")], true),
        ("0 || nums = '{0,1}'", &[("nums", "{1}")], true),
        ("nums || '{2,3}' = '{1,2,3}'", &[("nums", "{1}")], true),
        ("nums || NULL::int4[] = nums", &[("nums", "{1}")], true),
        (
            "(nums || NULL::int4) = '{1,NULL}'",
            &[("nums", "{1}")],
            true,
        ),
        ("nums || '{{2}}' = '{{1},{2}}'", &[("nums", "{{1}}")], true),
        ("array_ndims(nums) = 2", &[("nums", "{{1}}")], true),
        ("array_ndims(nums) IS NULL", &[("nums", "{}")], true),
        ("array_append(nums, 2) = '{2}'", &[], true),
        ("array_prepend(0, nums) = '{0,1}'", &[("nums", "{1}")], true),
        ("array_cat(nums, nums) = '{1,1}'", &[("nums", "{1}")], true),
        (
            "ARRAY[nums, nums] = '{{1,2},{1,2}}'",
            &[("nums", "{1,2}")],
            true,
        ),
        (
            "ARRAY[[1,2],[3,4]] = nums",
            &[("nums", "{{1,2},{3,4}}")],
            true,
        ),
        // Casts.
        ("nums::int8[] @> '{3000000000}'", &[("nums", "{1}")], false),
        ("nums::text = '{1,2}'", &[("nums", "{1,2}")], true),
        ("title::int4[] = '{1}'", &[("title", "{1}")], true),
        (
            "tags = '{\"a,b\",NULL,\"NULL\"}'",
            &[("tags", "{\"a,b\",NULL,\"NULL\"}")],
            true,
        ),
    ];
    for (text, values, expected) in cases {
        check(text, values, *expected);
    }
    // Errors PG also raises (at parse time here).
    for text in [
        "nums = '{1}'::int8[]",
        "tags || 'x' IS NULL",
        "nums @> tags",
        "priority = ANY(priority)",
        "nums[1:2:3] = '{}'",
        "ARRAY[] = nums",
        "ARRAY[1, 'x'::text] = nums",
        "title[1] = 'a'",
        "nums = '{1,{2}}'",
    ] {
        assert!(WhereClause::compile(text, &[], &items()).is_err(), "{text}");
    }
}

#[test]
fn intervals_and_date_time_arithmetic() {
    let cases: &[Case<'_>] = &[
        // E31: compared by the normalised span.
        ("dur = '24 hours'", &[("dur", "P1D")], true),
        ("dur = '1 mon'", &[("dur", "P30D")], true),
        ("dur > interval '1 day'", &[("dur", "PT25H")], true),
        ("dur < '-1 day'", &[("dur", "P-1Y")], true),
        (
            "dur BETWEEN '1 hour' AND '2 hours'",
            &[("dur", "PT1H30M")],
            true,
        ),
        ("dur IN ('1 day', '2 days')", &[("dur", "PT48H")], true),
        ("dur::text = 'P1DT2H'", &[("dur", "P1DT2H")], true),
        (
            "justify_hours(dur) = '1 day 1 hour'",
            &[("dur", "PT25H")],
            true,
        ),
        (
            "justify_days(dur) = '1 mon 5 days'",
            &[("dur", "P35D")],
            true,
        ),
        (
            "justify_interval(dur) = '29 days'",
            &[("dur", "P1M-1D")],
            true,
        ),
        ("dur + '1 hour' = '1 day'", &[("dur", "PT23H")], true),
        ("dur - interval '1 day' = '0'", &[("dur", "P1D")], true),
        // interval * float8, float8 * interval, interval / float8, unary minus.
        ("dur * 2 = '2 days'", &[("dur", "P1D")], true),
        ("2 * dur = '2 days'", &[("dur", "P1D")], true),
        ("dur * 1.5 = '1 mon 15 days'", &[("dur", "P1M")], true),
        (
            "dur * priority = '3 days'",
            &[("dur", "P1D"), ("priority", "3")],
            true,
        ),
        (
            "dur * score > '0'",
            &[("dur", "P1D"), ("score", "NaN")],
            false,
        ),
        ("dur * '0.5' = '12 hours'", &[("dur", "P1D")], true),
        ("dur / 7 = 'P4DT6H51M25.6896S'", &[("dur", "P1M")], true),
        ("dur / 0 = '1 day'", &[("dur", "P1D")], false),
        ("dur / 0 IS NULL", &[("dur", "P1D")], false),
        ("dur / small IS NULL", &[("small", "2")], true),
        ("-dur = '-1 day'", &[("dur", "P1D")], true),
        ("- - dur = '1 day'", &[("dur", "P1D")], true),
        (
            "at + dur * 2 = '2024-01-03'",
            &[("at", "2024-01-01 00:00"), ("dur", "P1D")],
            true,
        ),
        // Dates and timestamps.
        ("due + 1 = '2024-03-01'", &[("due", "2024-02-29")], true),
        ("1 + due = '2024-03-01'", &[("due", "2024-02-29")], true),
        ("due - 1 = '2024-02-28'", &[("due", "2024-02-29")], true),
        ("due - '2024-01-01' = 59", &[("due", "2024-02-29")], true),
        (
            "due + interval '1 month' = '2024-02-29 00:00'",
            &[("due", "2024-01-31")],
            true,
        ),
        (
            "due + t = '2024-01-31 10:00'",
            &[("due", "2024-01-31"), ("t", "10:00:00")],
            true,
        ),
        (
            "at + '1 mon' = '2024-02-29 10:00'",
            &[("at", "2024-01-31 10:00:00")],
            true,
        ),
        (
            "at - interval '1 year' = '2023-02-28'",
            &[("at", "2024-02-29 00:00:00")],
            true,
        ),
        (
            "created_at + '1 day' > '2024-01-02'",
            &[("created_at", "2024-01-01 12:00:00+00")],
            true,
        ),
        (
            "at - '2023-01-01 01:00' = '364 days 23 hours'",
            &[("at", "2024-01-01 00:00:00")],
            true,
        ),
        (
            "at - '2023-01-01' = '365 days'",
            &[("at", "2024-01-01 00:00:00")],
            true,
        ),
        ("t + '2 hours' = '01:00'", &[("t", "23:00:00")], true),
        ("t - '01:00' = '22 hours'", &[("t", "23:00:00")], true),
        ("due + 1 > '2024-01-01'", &[("due", "infinity")], true),
        (
            "(due - '2024-01-01') IS NULL",
            &[("due", "infinity")],
            false,
        ),
    ];
    for (text, values, expected) in cases {
        check(text, values, *expected);
    }
    for text in [
        "due + '1'",
        "due + 3000000000 > due",
        "dur * dur > dur",
        "dur / dur > dur",
        "2 / dur > dur",
        "+dur > dur",
        "dur = '1.5 days'",
        "dur > 5",
    ] {
        assert!(WhereClause::compile(text, &[], &items()).is_err(), "{text}");
    }
    let e = compile("dur = '1 day'").index_entries().unwrap();
    assert!(e[0].may_match(Some("PT24H")));
    assert!(!e[0].may_match(Some("PT23H")));
    let e = compile("dur > '1 day'").index_entries().unwrap();
    assert!(e[0].may_match(Some("P1M")));
}

#[test]
fn error_locations_point_at_the_offending_node() {
    for (text, want) in [
        (
            "priority = 1 AND (title || 1) > 'a'",
            "At location 24: Could not select an operator overload",
        ),
        (
            "'a' = ANY(priority)",
            "At location 10: argument of ANY must be an array",
        ),
        (
            "priority = ANY(tags)",
            "At location 9: Could not select an operator overload",
        ),
        (
            "priority IN ('a', 'b')",
            "At location 13: invalid syntax for type int4: a",
        ),
        (
            "title LIKE 1",
            "At location 6: Could not select an operator overload",
        ),
        (
            "uid BETWEEN 1 AND 2",
            "At location 4: Could not select an operator overload",
        ),
        (
            "status = $1 AND foo = 2",
            "At location 16: unknown reference foo",
        ),
        (
            "data -> 1.5 IS NULL",
            "At location 5: Could not select an operator overload",
        ),
    ] {
        assert_eq!(compile_err(text, &["x"]), want, "{text}");
    }
}

#[test]
fn function_style_casts() {
    let cases: &[Case<'_>] = &[
        ("int4('5') = priority", &[("priority", "5")], true),
        ("int8(priority) = 5", &[("priority", "5")], true),
        ("text(priority) = '5'", &[("priority", "5")], true),
        ("date('2024-01-01') = due", &[("due", "2024-01-01")], true),
        ("float8(amount) > 1", &[("amount", "1.5")], true),
        ("jsonb(doc) @> '{\"a\": 1}'", &[("doc", r#"{"a":1}"#)], true),
    ];
    for (text, values, expected) in cases {
        check(text, values, *expected);
    }
    assert!(compile_err("int4('x') = 1", &[]).contains("invalid syntax for type int4: x"));
    assert!(compile_err("int4(1, 2) = 1", &[]).contains("unknown or unsupported function int4/2"));
}

#[test]
fn json_and_jsonb() {
    let cases: &[Case<'_>] = &[
        ("data->>'kind' = 'a'", &[("data", r#"{"kind": "a"}"#)], true),
        (
            "data->>'kind' = 'a'",
            &[("data", r#"{"kind": null}"#)],
            false,
        ),
        (
            "(data->>'kind') IS NULL",
            &[("data", r#"{"kind": null}"#)],
            true,
        ),
        (
            "data->'kind' = '\"a\"'",
            &[("data", r#"{"kind": "a"}"#)],
            true,
        ),
        (
            "data->'a'->>'b' = 'c'",
            &[("data", r#"{"a": {"b": "c"}}"#)],
            true,
        ),
        ("data->>0 = 'x'", &[("data", r#"["x", 1]"#)], true),
        ("data->> -1 = '1'", &[("data", r#"["x", 1]"#)], true),
        ("data->>'n' = '1.50'", &[("data", r#"{"n": 1.50}"#)], true),
        (
            "data @> '{\"n\": 1.5}'",
            &[("data", r#"{"n": 1.50, "m": 2}"#)],
            true,
        ),
        (
            "data <@ '{\"n\": 1.5}'",
            &[("data", r#"{"n": 1.50, "m": 2}"#)],
            false,
        ),
        ("data ? 'm'", &[("data", r#"{"n": 1.50, "m": 2}"#)], true),
        (
            "data = '{\"m\":2, \"n\":1.5}'",
            &[("data", r#"{"m": 2, "n": 1.50}"#)],
            true,
        ),
        ("data <> '[]'", &[("data", "[]")], false),
        (
            "doc->>'kind' = 'b'",
            &[("doc", r#"{"kind":"a","kind":"b"}"#)],
            true,
        ),
        ("doc->>'n' = '1.50'", &[("doc", r#"{ "n" : 1.50 }"#)], true),
        (
            "doc->'a'->>'b' = '1'",
            &[("doc", r#"{"a":{ "b" : 1 }}"#)],
            true,
        ),
        ("data->>0 = 'a'", &[("data", r#""a""#)], true),
        ("doc->>0 IS NULL", &[("doc", r#""a""#)], true),
        (
            "doc::jsonb @> '{\"kind\": \"b\"}'",
            &[("doc", r#"{"kind":"a","kind":"b"}"#)],
            true,
        ),
        (
            "data::text = '{\"a\": 1}'",
            &[("data", r#"{"a": 1}"#)],
            true,
        ),
    ];
    for (text, values, expected) in cases {
        check(text, values, *expected);
    }
    // jsonb ordering (checked against PG 15), and #> / #>> paths.
    let ordered: &[Case<'_>] = &[
        ("data > '[]'", &[("data", "1")], true),
        ("data < '[1]'", &[("data", "1")], true),
        ("data < '[1, 2]'", &[("data", "1")], true),
        ("data < '1'", &[("data", r#""a""#)], true),
        ("data < '\"a\"'", &[("data", "null")], true),
        ("data > '2'", &[("data", "true")], true),
        ("data < '{}'", &[("data", "[]")], true),
        (
            "data > '{\"b\": 1, \"d\": 1}'",
            &[("data", r#"{"aa": 1, "c": 1}"#)],
            true,
        ),
        (
            "data < '{\"a\": 1, \"b\": 2}'",
            &[("data", r#"{"a": 1}"#)],
            true,
        ),
        ("data > '[\"a\", [1]]'", &[("data", r#"[[1], "a"]"#)], true),
        ("data = '1'", &[("data", "1.0")], true),
        ("data > '[1, 2, 3]'", &[("data", "{}")], true),
        (
            "data BETWEEN '\"a\"' AND '\"c\"'",
            &[("data", r#""b""#)],
            true,
        ),
        ("greatest(data, '1') = '[]'", &[("data", "[]")], false),
        (
            "'1' < ANY (jdocs)",
            &[("jdocs", r#"{"[1]","\"a\""}"#)],
            true,
        ),
        (
            "jdocs @> '{\"{\\\"a\\\": 1}\"}'",
            &[("jdocs", r#"{"{\"a\": 1.0}"}"#)],
            true,
        ),
        (
            "doc #> '{a,b}' IS NOT NULL",
            &[("doc", r#"{"a":{"b":1},"a":{"c":2}}"#)],
            true,
        ),
        (
            "doc #>> '{a,c}' = '2'",
            &[("doc", r#"{"a":{"b":1},"a":{"c":2}}"#)],
            true,
        ),
        ("(data #> '{0}') IS NULL", &[("data", r#""a""#)], true),
        ("data #>> '{}' = 'a'", &[("data", r#""a""#)], true),
        ("data #>> '{-1}' = '3'", &[("data", "[1, 2, 3]")], true),
        ("data #>> '{ 1}' = '2'", &[("data", "[1, 2, 3]")], true),
        ("data #>> '{+0}' = '1'", &[("data", "[1, 2, 3]")], true),
        ("data #>> '{-4}' IS NULL", &[("data", "[1, 2, 3]")], true),
        (
            "data #>> '{a,1,b}' IS NULL",
            &[("data", r#"{"a": [1, {"b": null}]}"#)],
            true,
        ),
        (
            "data #> ARRAY['a', NULL] IS NULL",
            &[("data", r#"{"a": 1}"#)],
            true,
        ),
        ("doc #>> '{-1}' = '2'", &[("doc", "[1,2]")], true),
        (
            "data #> '{}' = '{\"a\": [1, 2]}'",
            &[("data", r#"{"a": [1, 2]}"#)],
            true,
        ),
    ];
    for (text, values, expected) in ordered {
        check(text, values, *expected);
    }
    assert!(compile("data > '{}'").needs_text_ordering());
    assert_eq!(
        compile("data #>> '{a,b}' = 'x'").sql(),
        "((\"data\" #>> '{\"a\",\"b\"}'::text[]) = 'x'::text)"
    );
    for text in [
        "doc = '{}'",
        "doc < '{}'",
        "data && '{}'",
        "data->'a' = 1",
        "data #> 1 IS NULL",
        "title #> '{a}' IS NULL",
    ] {
        assert!(WhereClause::compile(text, &[], &items()).is_err(), "{text}");
    }
    let e = compile("data->>'kind' = 'a' OR doc->'x'->>0 = 'b'")
        .index_entries()
        .unwrap();
    assert_eq!(e.len(), 2);
    assert!(e[0].may_match(Some(r#"{"kind": "a", "z": 1}"#)));
    assert!(!e[0].may_match(Some(r#"{"kind": "b"}"#)));
    assert!(e[0].may_match(Some("not json")));
    assert!(e[1].may_match(Some(r#"{"x": ["b"]}"#)));
}

#[test]
fn array_index_forms() {
    let entries = |text: &str| compile(text).index_entries();
    let e = entries("tags @> '{a,b}'").unwrap();
    assert_eq!(e.len(), 1);
    assert!(matches!(&e[0].cond, Condition::Contains(k) if k.len() == 2));
    assert!(e[0].may_match(Some("{b,x,a}")));
    assert!(!e[0].may_match(Some("{b,x}")));
    assert!(!e[0].may_match(None));
    let e = entries("'a' = ANY(tags)").unwrap();
    assert!(e[0].may_match(Some("{\"a\"}")));
    assert!(!e[0].may_match(Some("{b}")));
    let e = entries("'{1,2}' <@ nums").unwrap();
    assert!(e[0].may_match(Some("{{2,1}}")));
    assert_eq!(entries("nums && '{1,2}'").unwrap().len(), 2);
    assert_eq!(entries("priority = ANY('{1,2,NULL}')").unwrap().len(), 2);
    assert_eq!(entries("tags @> '{a,NULL}'"), Some(Vec::new()));
    assert_eq!(entries("tags @> '{}'"), None);
    assert_eq!(entries("NULL = ANY(tags)"), Some(Vec::new()));
    // An element cast in the comparison would change the key: not indexed.
    assert_eq!(entries("1.5 = ANY(nums)"), None);
}

// ---------------------------------------------------------------------------------------------
// Conformance B (validation messages) and other errors.

#[test]
fn conformance_b_validation() {
    assert_eq!(
        compile_err("foo = 1", &[]),
        "At location 0: unknown reference foo"
    );
    assert_eq!(
        compile_err("items.status = 'a'", &[]),
        "At location 0: unknown reference items.status"
    );
    assert_eq!(
        compile_err("priority", &[]),
        "WHERE clause must return a boolean"
    );
    assert_eq!(
        compile_err("status = $2", &["x"]),
        "At location 9: parameter $2 was not provided"
    );
    assert_eq!(
        compile_err("now() > created_at", &[]),
        "At location 0: unknown or unsupported function now/0"
    );
    assert_eq!(
        compile_err("status = 'a'; DROP TABLE items", &[]),
        "unescaped \";\" causing statement split"
    );
    assert_eq!(
        compile_err("priority % 2 = 0", &[]),
        "At location 9: unknown binary operator %"
    );
    assert_eq!(
        compile_err("\"Foo\" = 1", &[]),
        "At location 0: unknown reference \"Foo\""
    );
    assert_eq!(
        compile_err("priority = 'abc'", &[]),
        "At location 11: invalid syntax for type int4: abc"
    );
    assert_eq!(
        compile_err("kind = 'nope'", &[]),
        "At location 7: invalid syntax for type enum my_enum: nope"
    );
    assert_eq!(
        compile_err("title + 1 > 10", &[]),
        "At location 6: Could not select an operator overload"
    );
    assert_eq!(
        compile_err("1 / 0 = 1", &[]),
        "At location 2: division by zero"
    );
    assert!(
        compile_err("sum(priority) > 1", &[]).contains("unknown or unsupported function sum/1")
    );
    assert_eq!(
        compile_err("priority IS TRUE", &[]),
        "At location 0: argument of IS TRUE must be bool, not int4"
    );
    assert_eq!(
        compile_err("priority = title", &[]),
        "At location 9: Could not select an operator overload"
    );
    assert_eq!(
        compile_err("flag > true", &[]),
        "At location 5: Could not select an operator overload"
    );
    assert_eq!(
        compile_err("x=1 ORDER BY x", &[]),
        "malformed query ending with SQL clauses"
    );
    assert_eq!(
        compile_err("priority=1 ORDER BY id", &[]),
        "malformed query ending with SQL clauses"
    );
    assert!(compile_err("title LIKE 'a\\'", &[]).contains("must not end with escape"));
    assert!(compile_err("title LIKE 'a' ESCAPE '#'", &[]).contains("like_escape"));
    assert!(compile_err("title ILIKE 'é%'", &[]).contains("ILIKE"));
    assert!(compile_err("title ILIKE status", &[]).contains("ILIKE"));
    assert!(compile_err("title COLLATE \"en_US\" > 'a'", &[]).contains("COLLATE"));
    assert!(
        compile_err("priority COLLATE \"C\" > 1", &[])
            .contains("collations are not supported by type int4")
    );
    assert!(compile_err("CASE WHEN flag THEN true END", &[]).contains("CASE"));
    assert!(compile_err("id IN (SELECT id FROM items)", &[]).contains("does not exist"));
    assert!(
        compile_err("priority::numeric(10,2) = 1", &[]).contains("unsupported type numeric(10,2)")
    );
    assert!(compile_err("title::char(3) = 'a'", &[]).contains("unsupported type"));
    assert!(
        compile_err("amount::int4 = 1", &[])
            .contains("unknown cast from type numeric to type int4")
    );
    assert!(compile_err("uid IS NULL AND uid > 1", &[]).contains("operator overload"));
}

#[test]
fn parameters_are_literals_never_sql() {
    let schema = items();
    let p = vec!["x' OR TRUE".to_owned()];
    let w = WhereClause::compile("status = $1", &p, &schema).expect("compiles");
    assert_eq!(w.sql(), "(\"status\" = 'x'' OR TRUE'::text)");
    assert!(w.matches(&row(&schema, &[("status", "x' OR TRUE")])));
    assert!(!w.matches(&row(&schema, &[("status", "y")])));
    // Parameter and literal forms share one normal form.
    let lit = compile("STATUS   =  'x'' OR TRUE'");
    assert_eq!(lit.sql(), w.sql());
    let p = vec!["05".to_owned()];
    let w = WhereClause::compile("priority = $1", &p, &schema).expect("compiles");
    assert_eq!(w.sql(), compile("priority = 5").sql());
    assert_eq!(w.sql(), "(\"priority\" = '5'::int4)");
    // Unused parameters are fine; a bad one reports its type.
    let p = vec!["abc".to_owned(), "unused".to_owned()];
    let e = WhereClause::compile("priority > $1", &p, &schema)
        .map(|_| ())
        .expect_err("bad int");
    assert_eq!(
        e.to_string(),
        "At location 11: invalid syntax for type int4: abc"
    );
}

#[test]
fn trailing_input_and_limits_are_rejected() {
    for text in [
        "priority = 1 ) foo",
        "priority = 1 foo",
        "priority = 1; drop table t",
        "priority = 1;;",
        "(priority = 1",
        "",
        "priority = ",
        "priority = 1 -- fine comment\n)",
    ] {
        assert!(
            WhereClause::compile(text, &[], &items()).is_err(),
            "{text:?}"
        );
    }
    // A trailing comment is fine.
    compile("priority = 1 -- comment");
    let long = format!("title = '{}'", "x".repeat(70_000));
    assert!(compile_err(&long, &[]).contains("bigger than maximum size"));
}

/// Deep inputs must fail cleanly (not overflow the stack) on a default-sized thread.
#[test]
fn deep_nesting_is_rejected_without_overflow() {
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let schema = items();
            let parens = format!("{}priority = 1{}", "(".repeat(100_000), ")".repeat(100_000));
            let max = MAX_WHERE_BYTES_FOR_TESTS;
            let inputs = [
                "(".repeat(max),
                parens.chars().take(max).collect::<String>(),
                format!("priority = 1{}", " = true".repeat((max - 20) / 7)),
                format!("{}flag", "NOT ".repeat((max - 10) / 4)),
                format!("flag{}", " IS NULL".repeat((max - 10) / 8)),
                format!("priority::int4{}", "::int4".repeat((max - 20) / 6)),
                format!("{}1", "-".repeat(max - 2)),
            ];
            for input in inputs {
                assert!(input.len() <= max);
                assert!(WhereClause::compile(&input, &[], &schema).is_err());
            }
            // Long but flat inputs are fine.
            let ors = vec!["priority = 1"; 3000].join(" OR ");
            let w = WhereClause::compile(&ors, &[], &schema).expect("flat OR chain");
            assert!(w.matches(&row(&schema, &[("priority", "1")])));
            let ids: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
            let w = WhereClause::compile(&format!("id IN ({})", ids.join(",")), &[], &schema)
                .expect("IN list");
            assert!(w.matches(&row(&schema, &[("id", "4999")])));
            assert_eq!(w.index_entries().map(|e| e.len()), Some(5000));
        })
        .expect("spawn");
    handle.join().expect("no stack overflow");
}

const MAX_WHERE_BYTES_FOR_TESTS: usize = 65_536;

// ---------------------------------------------------------------------------------------------
// Types and semantics beyond the conformance table.

#[test]
fn typed_semantics() {
    let cases: &[Case<'_>] = &[
        ("amount = 5", &[("amount", "5.00")], true),
        ("amount = '5.000'", &[("amount", "5")], true),
        ("amount = 0.3", &[("amount", "0.30")], true),
        (
            "amount > 0.29999999999999999999",
            &[("amount", "0.3")],
            true,
        ),
        ("amount < -1", &[("amount", "-1.5")], true),
        ("amount = 'NaN'", &[("amount", "NaN")], true),
        ("amount > 1e30", &[("amount", "NaN")], true),
        ("amount = 0", &[("amount", "-0.000")], true),
        ("priority = 1.5", &[("priority", "1")], false),
        ("priority < 1.5", &[("priority", "1")], true),
        ("priority = 1.0", &[("priority", "1")], true),
        (
            "id = 9223372036854775807",
            &[("id", "9223372036854775807")],
            true,
        ),
        (
            "id < 9223372036854775808",
            &[("id", "9223372036854775807")],
            true,
        ),
        (
            "priority = -2147483648",
            &[("priority", "-2147483648")],
            true,
        ),
        ("score = 'NaN'", &[("score", "NaN")], true),
        ("score = '-0'", &[("score", "0")], true),
        ("score = 'Infinity'", &[("score", "Infinity")], true),
        ("score < 'Infinity'", &[("score", "-Infinity")], true),
        ("score = 0.1", &[("score", "0.1")], true),
        ("f4 = 1.5", &[("f4", "1.5")], true),
        ("f4 = 0.1", &[("f4", "0.1")], true),
        ("f4 = 0.1::float8", &[("f4", "0.1")], false),
        ("small = 3", &[("small", "3")], true),
        ("small < id", &[("small", "3"), ("id", "4")], true),
        ("flag = 'yes'", &[("flag", "t")], true),
        ("flag", &[("flag", "t")], true),
        ("NOT flag", &[("flag", "f")], true),
        ("flag <> false", &[("flag", "t")], true),
        (
            "uid = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
            &[("uid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")],
            true,
        ),
        (
            "uid = '{a0eebc999c0b4ef8bb6d6bb9bd380a11}'",
            &[("uid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")],
            true,
        ),
        ("due = '2024-01-01'", &[("due", "2024-01-01")], true),
        ("due = date '2024-01-01'", &[("due", "2024-01-01")], true),
        ("due < '2024-01-01'", &[("due", "0044-03-15 BC")], true),
        ("due > '2024-01-01'", &[("due", "infinity")], true),
        (
            "due = '2024-01-01 00:00:00'::timestamp",
            &[("due", "2024-01-01")],
            true,
        ),
        (
            "due < at",
            &[("due", "2024-01-01"), ("at", "2024-01-01 00:00:01")],
            true,
        ),
        (
            "created_at = '2024-01-01T10:00:00Z'",
            &[("created_at", "2024-01-01 10:00:00+00")],
            true,
        ),
        (
            "created_at = '2024-01-01 12:30:00+02:30'",
            &[("created_at", "2024-01-01 10:00:00+00")],
            true,
        ),
        (
            "created_at = '2024-01-01 10:00'",
            &[("created_at", "2024-01-01 10:00:00+00")],
            true,
        ),
        (
            "created_at < '2024-01-01 10:00:00.000001+00'",
            &[("created_at", "2024-01-01 10:00:00+00")],
            true,
        ),
        (
            "at = '2024-01-01 10:00:00.5'",
            &[("at", "2024-01-01 10:00:00.5")],
            true,
        ),
        ("t > '09:59'", &[("t", "10:00:00")], true),
        ("t = '24:00'", &[("t", "24:00:00")], true),
        ("code = 'abc  '", &[("code", "abc")], true),
        ("code = 'abc'::text", &[("code", "abc  ")], true),
        ("code = 'abc '::text", &[("code", "abc  ")], false),
        ("code < 'abd'", &[("code", "abc  ")], true),
        ("code LIKE 'abc%'", &[("code", "abc  ")], true),
        ("note = 'v'", &[("note", "v")], true),
        ("note < title", &[("note", "a"), ("title", "b")], true),
        ("kind = 'active'", &[("kind", "active")], true),
        ("kind < 'inactive'", &[("kind", "active")], true),
        ("kind::text = 'active'", &[("kind", "active")], true),
        ("kind::text < 'b'", &[("kind", "active")], true),
        ("kind IN ('active', NULL)", &[("kind", "active")], true),
        ("title ILIKE 'HE%'", &[("title", "hello")], true),
        ("title NOT ILIKE 'HE%'", &[("title", "hello")], false),
        ("title ~~ 'h%'", &[("title", "hello")], true),
        ("title !~~* 'H%'", &[("title", "hello")], false),
        ("title LIKE '%'", &[("title", "")], true),
        ("title LIKE 'a%b%c'", &[("title", "aXbYbZc")], true),
        ("title LIKE 'a%b%c'", &[("title", "aXbYbZ")], false),
        ("title LIKE '\\\\%'", &[("title", "\\x")], true),
        (
            "title LIKE status",
            &[("title", "abc"), ("status", "a%")],
            true,
        ),
        ("title = E'a\\nb'", &[("title", "a\nb")], true),
        ("title = $$it's$$", &[("title", "it's")], true),
        ("\"Status-Check\" = 'ok'", &[("Status-Check", "ok")], true),
        ("TITLE = 'x'", &[("title", "x")], true),
        ("priority::text = '5'", &[("priority", "5")], true),
        ("title::int4 = 5", &[("title", " 5 ")], true),
        ("title::int4 = 5", &[("title", "five")], false),
        ("NOT (title::int4 = 5)", &[("title", "five")], false),
        ("flag::text = 'true'", &[("flag", "t")], true),
        ("flag::int4 = 1", &[("flag", "t")], true),
        ("priority::bool", &[("priority", "7")], true),
        ("CAST(priority AS bigint) = 5", &[("priority", "5")], true),
        ("priority::int8::text = '5'", &[("priority", "5")], true),
        ("id::int4 = 1", &[("id", "3000000000")], false),
        ("tags IS NOT NULL", &[("tags", "{a,b}")], true),
        ("dur IS NULL", &[("dur", "P1D")], false),
        ("tags::text = '{a,b}'", &[("tags", "{a,b}")], true),
        ("'a' = 'a'", &[], true),
        ("NULL = 1", &[], false),
        ("priority = NULL", &[("priority", "1")], false),
        ("priority IN (1, 2.5)", &[("priority", "1")], true),
        ("priority IN (1.5, 2)", &[("priority", "2")], true),
        ("priority IN (1, '2')", &[("priority", "2")], true),
        ("NOT (priority IN (1, 2))", &[("priority", "3")], true),
        (
            "priority BETWEEN 1 AND 10 AND flag IS NOT FALSE",
            &[("priority", "5")],
            true,
        ),
        (
            "priority NOT BETWEEN SYMMETRIC 10 AND 1",
            &[("priority", "5")],
            false,
        ),
        (
            "priority BETWEEN SYMMETRIC '7' AND 1",
            &[("priority", "5")],
            true,
        ),
        ("title BETWEEN 'A' AND 'c'", &[("title", "b")], true),
        (
            "(priority = 1 OR priority = 2) AND status = 'x'",
            &[("priority", "2"), ("status", "x")],
            true,
        ),
        ("true", &[], true),
        ("'t'", &[], true),
        ("NULL", &[], false),
        ("false OR priority = 1", &[("priority", "1")], true),
        ("priority = 1 AND true", &[("priority", "1")], true),
        ("priority = 1 AND NULL", &[("priority", "1")], false),
        ("priority = 1 OR NULL", &[("priority", "1")], true),
        ("-priority_missing_is_error IS NULL OR true", &[], true),
    ];
    for (text, values, expected) in cases.iter().filter(|c| !c.0.contains("missing")) {
        check(text, values, *expected);
    }
}

#[test]
fn undecodable_values_mean_not_included() {
    let schema = items();
    let w = compile("priority = 5");
    assert!(!w.matches(&row(&schema, &[("priority", "five")])));
    assert!(w.evaluate(&row(&schema, &[("priority", "five")])).is_err());
    assert!(!w.matches(&[]));
    let w = compile("NOT (priority = 5)");
    assert!(!w.matches(&row(&schema, &[("priority", "five")])));
}

#[test]
fn normalised_sql() {
    let cases = [
        ("priority = 5", "(\"priority\" = '5'::int4)"),
        ("title > 'B'", "(((\"title\") COLLATE \"C\") > 'B'::text)"),
        (
            "title COLLATE \"C\" > 'B'",
            "(((\"title\") COLLATE \"C\") > 'B'::text)",
        ),
        ("score = 1", "(\"score\" = '1e0'::float8)"),
        ("priority = 1.5", "(\"priority\"::numeric = '1.5'::numeric)"),
        ("code = 'abc'", "(\"code\" = 'abc'::bpchar)"),
        ("code = title", "(\"code\"::text = \"title\")"),
        ("kind = 'active'", "(\"kind\" = 'active')"),
        (
            "status in ('a', 'b')",
            "(\"status\" IN ('a'::text, 'b'::text))",
        ),
        ("status not in ('a')", "(NOT (\"status\" IN ('a'::text)))"),
        ("title like 'a\\_%'", "(\"title\" LIKE E'a\\\\_%'::text)"),
        (
            "priority between 1 and 2",
            "((\"priority\" >= '1'::int4) AND (\"priority\" <= '2'::int4))",
        ),
        (
            "created_at > '2024-01-01 09:00:00+02'",
            "(\"created_at\" > '2024-01-01 07:00:00+00'::timestamptz)",
        ),
        ("due = '2024-1-5'", "(\"due\" = '2024-01-05'::date)"),
        ("amount = 5.00", "(\"amount\" = '5.00'::numeric)"),
        ("amount = 1e50", "(\"amount\" = '0.1e51'::numeric)"),
        ("flag is not true", "(\"flag\" IS NOT TRUE)"),
        (
            "dur * priority > '1 day'",
            "((\"dur\" * \"priority\"::float8) > 'P0M1DT0S'::interval)",
        ),
        ("-dur = '0'", "((- \"dur\") = 'P0M0DT0S'::interval)"),
        ("priority = NULL", "NULL::bool"),
        ("1 = 2 or flag", "\"flag\""),
        ("id = 3000000000", "(\"id\" = '3000000000'::int8)"),
        ("\"Status-Check\" = 'x'", "(\"Status-Check\" = 'x'::text)"),
    ];
    for (text, sql) in cases {
        let w = compile(text);
        assert_eq!(w.sql(), sql, "{text}");
        assert_eq!(compile(w.sql()).sql(), sql, "{text} is not a fixpoint");
    }
    assert!(compile("title > 'B'").needs_text_ordering());
    assert!(compile("code BETWEEN 'a' AND 'b'").needs_text_ordering());
    assert!(!compile("title = 'B'").needs_text_ordering());
    assert!(!compile("kind < 'inactive'").needs_text_ordering());
    // Only jsonb ordering depends on the database's default collation (text is pinned).
    assert!(compile("data < '{\"a\": \"b\"}'").needs_bytewise_default_collation());
    assert!(compile("greatest(data, '1') = '1'").needs_bytewise_default_collation());
    assert!(!compile("title > 'B'").needs_bytewise_default_collation());
    assert!(!compile("data = '{}'").needs_bytewise_default_collation());
    assert_eq!(
        compile("priority = 1 AND title = status").referenced_columns(),
        &[1, 2, 3]
    );
}

// ---------------------------------------------------------------------------------------------
// Routing keys.

#[test]
fn index_entries_follow_the_spec_rules() {
    let schema = items();
    let priority = index_of(&schema, "priority");
    let entries = |text: &str| compile(text).index_entries();
    assert_eq!(
        entries("priority = 5"),
        Some(vec![IndexEntry {
            column: priority,
            key_type: KeyType::Int,
            cond: Condition::Eq(IndexKey::Int(5))
        }])
    );
    assert_eq!(entries("5 = priority"), entries("priority = 5"));
    assert_eq!(
        entries("status IN ('todo','done')").map(|e| e.len()),
        Some(2)
    );
    assert_eq!(
        entries("priority = 1 OR priority = 1").map(|e| e.len()),
        Some(1)
    );
    assert_eq!(
        entries("(priority = 1 OR priority = 2) AND status = 'x'").map(|e| e.len()),
        Some(1)
    );
    assert_eq!(
        entries("status = 'x' AND priority > 2").map(|e| e.len()),
        Some(1)
    );
    assert_eq!(
        entries("priority = 1 OR (status = 'a' AND flag)").map(|e| e.len()),
        Some(2)
    );
    assert_eq!(entries("false").map(|e| e.len()), Some(0));
    // Beyond Electric: ranges (intersected in an AND), LIKE prefixes, IS NULL.
    assert_eq!(
        entries("priority BETWEEN 2 AND 7"),
        Some(vec![IndexEntry {
            column: priority,
            key_type: KeyType::Int,
            cond: Condition::Range {
                lo: RangeKey::Num(2),
                hi: RangeKey::Num(7)
            }
        }])
    );
    assert_eq!(entries("priority > 7 AND priority < 2"), Some(vec![]));
    assert_eq!(
        entries("title LIKE 'ab\\_c%'").map(|e| e[0].cond.clone()),
        Some(Condition::Prefix("ab_c".to_owned()))
    );
    assert_eq!(
        entries("title IS NULL").map(|e| e[0].cond.clone()),
        Some(Condition::IsNull)
    );
    // Other LIKE/ILIKE patterns: the longest literal run, folded for ILIKE.
    assert_eq!(
        entries("title LIKE '%ab%abc\\%d_e'").map(|e| e[0].cond.clone()),
        Some(Condition::Substring {
            fragment: "abc%d".to_owned(),
            case_insensitive: false
        })
    );
    assert_eq!(
        entries("title ILIKE 'Ab%'").map(|e| e[0].cond.clone()),
        Some(Condition::Substring {
            fragment: "ab".to_owned(),
            case_insensitive: true
        })
    );
    // An equality conjunct is preferred to a substring one.
    assert_eq!(
        entries("title ILIKE '%x%' AND priority = 3").map(|e| e[0].cond.clone()),
        Some(Condition::Eq(IndexKey::Int(3)))
    );
    assert_eq!(
        entries("priority = 1 OR title > 'b'").map(|e| e.len()),
        Some(2)
    );
    for none in [
        "NOT (priority = 1)",
        "priority <> 1",
        "title LIKE '%_%'",
        "title ILIKE '%'",
        "title NOT ILIKE '%a%'",
        "title IS NOT NULL",
        "kind > 'active'",
        "title = status",
        "flag",
        "true",
        "flag::text = 'true'",
        "status NOT IN ('a')",
    ] {
        assert_eq!(entries(none), None, "{none}");
    }
    // Keys are canonical in the comparison type.
    let key_of = |text: &str| {
        let e = entries(text).expect("indexed");
        assert_eq!(e.len(), 1, "{text}");
        e.into_iter().next().expect("one")
    };
    let e = key_of("score = 1");
    assert_eq!(index_key(e.key_type, "1.0"), e.eq_key().cloned());
    assert_eq!(index_key(e.key_type, "1"), e.eq_key().cloned());
    let e = key_of("score = '-0'");
    assert_eq!(index_key(e.key_type, "0"), e.eq_key().cloned());
    let e = key_of("score = 'NaN'");
    assert_eq!(index_key(e.key_type, "NaN"), e.eq_key().cloned());
    let e = key_of("amount = 5");
    assert_eq!(index_key(e.key_type, "5.00"), e.eq_key().cloned());
    assert_ne!(index_key(e.key_type, "5.01"), e.eq_key().cloned());
    let e = key_of("priority = 1.5");
    assert_eq!(e.key_type, KeyType::Numeric);
    assert_ne!(index_key(e.key_type, "1"), e.eq_key().cloned());
    assert_ne!(index_key(e.key_type, "2"), e.eq_key().cloned());
    let e = key_of("created_at = '2024-01-01 12:00:00+02'");
    assert_eq!(
        index_key(e.key_type, "2024-01-01 10:00:00+00"),
        e.eq_key().cloned()
    );
    let e = key_of("uid = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'");
    assert_eq!(
        index_key(e.key_type, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        e.eq_key().cloned()
    );
    let e = key_of("code = 'abc'");
    assert_eq!(index_key(e.key_type, "abc  "), e.eq_key().cloned());
    let e = key_of("code = 'abc'::text");
    assert_eq!(index_key(e.key_type, "abc  "), e.eq_key().cloned());
    let e = key_of("kind = 'active'");
    assert_eq!(index_key(e.key_type, "active"), e.eq_key().cloned());
    let e = key_of("f4 = 0.1");
    assert_eq!(index_key(e.key_type, "0.1"), e.eq_key().cloned());
    let e = key_of("due = '2024-01-01 00:00'::timestamp");
    assert_eq!(index_key(e.key_type, "2024-01-01"), e.eq_key().cloned());
    let e = key_of("kind::text = 'active'");
    assert_eq!(index_key(e.key_type, "active"), e.eq_key().cloned());
    assert_eq!(index_key(KeyType::Int, "x"), None);
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// Columns used by the generators, with row values and literals of interest for each.
const GEN_COLUMNS: &[(&str, &[&str], &[&str])] = &[
    (
        "bin",
        &[
            "\\x", "\\x00", "\\x01", "\\x0100", "\\xff", "\\x0A0b", "abc", "\\x6162", "\\000",
            "a\\\\b", "\\x01 02",
        ],
        &[
            "'\\x01'",
            "'\\x'",
            "'\\x0100'",
            "'\\xFF'",
            "'abc'",
            "'\\x61 62\t63'",
            "'a\\\\b'",
            "'\\001'",
            "'\\x0a0b'::bytea",
            "CAST('\\x00' AS bytea)",
        ],
    ),
    (
        "priority",
        &["1", "-3", "0", "2147483647", "5"],
        &["1", "1.5", "'1'", "2147483648", "-3", "5", "1.0"],
    ),
    (
        "id",
        &["1", "3000000000", "-9223372036854775808"],
        &["1", "3000000000", "'1'", "1e3"],
    ),
    (
        "score",
        &[
            "1",
            "1.5",
            "NaN",
            "-0",
            "0",
            "Infinity",
            "-Infinity",
            "1e+308",
            "0.1",
        ],
        &[
            "1",
            "1.0",
            "'NaN'",
            "1e308",
            "0",
            "'-0'",
            "0.1",
            "'Infinity'",
        ],
    ),
    (
        "amount",
        &[
            "5",
            "5.00",
            "0.1",
            "NaN",
            "12345678901234567.1",
            "0.000",
            "-2.50",
            "1.50",
            "3",
            "0.333",
            "-12.5",
            "98765432109876543210.123456789",
            "0.000000001234",
            "Infinity",
            "-Infinity",
            "-7",
        ],
        &[
            "5",
            "5.000",
            "0.1",
            "'NaN'",
            "12345678901234567.1",
            "0",
            "-2.5",
            "'Infinity'",
            "3",
            "1.50",
            "0.333",
            "-12.5",
            "0.33333333333333333333",
        ],
    ),
    (
        "f4",
        &["0.1", "1.5", "NaN", "-0"],
        &["0.1", "1.5", "0.1::float8", "'NaN'", "0"],
    ),
    (
        "title",
        &["a", "B", "a ", "", "é", "a%", "ab\nc"],
        &["'a'", "'B'", "'a '", "''", "'é'", "'a%'"],
    ),
    (
        "code",
        &["a    ", "B    ", "     ", "ab   "],
        &["'a'", "'B'", "'a  '", "''", "'ab'", "'a'::text"],
    ),
    ("flag", &["t", "f"], &["TRUE", "FALSE", "'t'", "'no'"]),
    (
        "due",
        &["2024-01-01", "infinity", "0044-03-15 BC", "2000-02-29"],
        &[
            "'2024-01-01'",
            "date '2024-01-01'",
            "'infinity'",
            "'2000-02-29'",
        ],
    ),
    (
        "created_at",
        &[
            "2024-01-01 07:00:00+00",
            "2024-01-01 08:00:00+00",
            "-infinity",
            "2024-03-10 07:30:00+00",
            "2024-11-03 06:30:00+00",
            "1850-06-01 12:00:00+00",
        ],
        &[
            "'2024-01-01 09:00:00+02'",
            "'2024-01-01 07:00:00+00'",
            "'2024-01-01 07:00'",
        ],
    ),
    (
        "uid",
        &[
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "00000000-0000-0000-0000-000000000000",
        ],
        &[
            "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
            "'00000000000000000000000000000000'",
        ],
    ),
    ("kind", &["active", "inactive"], &["'active'", "'inactive'"]),
    (
        "small",
        &["1", "-32768", "32767", "0", "7"],
        &["1", "'2'", "32767", "-1", "0.5"],
    ),
    (
        "status",
        &["todo", "Done", "", "ÉTÉ"],
        &["'todo'", "'done'", "'DONE'", "'été'"],
    ),
    (
        "data",
        &[
            r#"{"kind": "a", "n": 1}"#,
            r#"{"kind": "b", "n": 1.50, "tags": ["x", "y"]}"#,
            r#"[1, 2, "a"]"#,
            r#""a""#,
            "null",
            r#"{"kind": null}"#,
            r#"{"a": {"b": "c"}}"#,
            r#"{"n": 2, "kind": "a", "kind": "b"}"#,
            "[]",
            "1",
            "true",
            r#"[[1], "a"]"#,
            r#"{"aa": 1, "c": 1}"#,
            r#"{"b": 1, "d": 1}"#,
            r#"{"tags": ["x", "y"]}"#,
        ],
        &[
            r#"'{"kind": "a"}'"#,
            r#"'{"n": 1.5}'"#,
            "'[1]'",
            r#"'"a"'"#,
            "'{}'",
            r#"'{"a": {}}'"#,
        ],
    ),
    (
        "doc",
        &[
            r#"{"kind":"a","kind":"b"}"#,
            r#"{ "n" : 1.50 }"#,
            "[1,2]",
            r#"{"a": {"b": "c"}}"#,
            r#"{"a":{"b":1},"a":{"c":2}}"#,
            r#""a""#,
            r#"[[1,2],{"x":3}]"#,
            r#"{"tags": ["x", "y"], "kind": null}"#,
        ],
        &["'{}'"],
    ),
    (
        "jdocs",
        &[
            r#"{"{\"kind\": \"a\"}","[1]"}"#,
            "{}",
            r#"{NULL,"{}"}"#,
            r#"{"\"a\"","1","null"}"#,
        ],
        &["'{}'"],
    ),
    (
        "dur",
        &[
            "P1D",
            "PT24H",
            "P1M",
            "P30D",
            "P-1Y2M",
            "PT1H30M",
            "PT0S",
            "P1DT-1H",
            "PT-0.5S",
            "P1M3DT4H",
            "P1Y1M1DT1.000001S",
            "P178956970Y",
        ],
        &[
            "'1 day'",
            "'24 hours'",
            "interval '1 mon'",
            "'P1D'",
            "'-1 year +2 mons'",
            "'1:30'",
            "'0'",
            "'1 day ago'",
        ],
    ),
    (
        "at",
        &[
            "2024-01-31 10:00:00",
            "2024-02-29 00:00:00",
            "infinity",
            "2023-12-31 23:59:59.5",
            "2024-03-10 02:30:00",
            "2024-11-03 01:30:00",
            "2100-07-01 12:00:00",
        ],
        &[
            "'2024-01-31 10:00'",
            "'2024-03-01'",
            "'infinity'",
            "'2024-01-01 00:00:00'",
        ],
    ),
    (
        "t",
        &["10:00:00", "23:30:00", "00:00:00", "12:00:00.25"],
        &["'10:00'", "'23:30:00'", "'00:00'", "'12:00:00.25'"],
    ),
    (
        "tags",
        &[
            "{a,b}",
            "{}",
            "{c,NULL}",
            "{a,NULL}",
            "{\"a b\",c}",
            "{{a,b},{c,d}}",
            "[0:1]={a,b}",
            "{todo}",
        ],
        &[
            "'{a}'",
            "'{a,b}'",
            "'{}'",
            "'{a,NULL}'",
            "ARRAY['a', 'c']",
            "'{{a,b},{c,d}}'",
        ],
    ),
    (
        "nums",
        &[
            "{1,2}",
            "{2,1}",
            "{}",
            "{1,NULL}",
            "{{1,2},{3,4}}",
            "[0:1]={1,2}",
            "{5}",
            "{NULL}",
        ],
        &[
            "'{1,2}'",
            "'{1}'",
            "'{}'",
            "'{1,NULL}'",
            "ARRAY[1, 5]",
            "'[0:1]={1,2}'",
            "'{{1,2},{3,4}}'",
        ],
    ),
];

/// Leaves over json and jsonb.
fn json_leaf() -> impl Strategy<Value = String> {
    let lits = prop::sample::select(vec![
        r#"'{"kind": "a"}'"#,
        r#"'{"n": 1.5}'"#,
        "'[1]'",
        r#"'"a"'"#,
        "'{}'",
        r#"'{"a": {}}'"#,
        r#"'{"kind": "b", "n": 1.5}'"#,
        "'[]'",
        "'1'",
        "'[1, 2]'",
        "'true'",
        "'null'",
        r#"'"b"'"#,
        r#"'{"kind": "a", "n": 1}'"#,
        r#"'[[1], "a"]'"#,
        r#"'{"aa": 1, "c": 1}'"#,
    ]);
    let keys = prop::sample::select(vec!["'kind'", "'n'", "'a'", "'x'", "0", "-1", "2"]);
    let vals = prop::sample::select(vec!["'a'", "'b'", "'1.50'", "'1'", "'c'", "'2'"]);
    let ops = prop::sample::select(vec!["=", "<>", "<", ">", "<=", ">="]);
    let paths = prop::sample::select(vec![
        "'{}'",
        "'{kind}'",
        "'{a,b}'",
        "'{tags,0}'",
        "'{tags,-1}'",
        "'{0}'",
        "'{-1}'",
        "'{ 1}'",
        "'{n}'",
        "ARRAY['a', NULL]",
        "'{x,y}'",
        "'{2}'",
        "'{+0}'",
        "'{-3}'",
    ]);
    (lits, keys, vals, ops, paths, any::<bool>(), 0..20u8).prop_map(
        |(lit, key, val, op, path, doc, form)| {
            let col = if doc { "doc" } else { "data" };
            match form {
                12 => format!("data {op} {lit}"),
                13 => format!("{col} #>> {path} = {val}"),
                14 => format!("({col} #> {path}) IS NULL"),
                15 => format!("data #> {path} {op} {lit}"),
                16 => format!("{col} #>> {path} IS NULL"),
                17 => format!("greatest(data, {lit}) {op} {lit}"),
                18 => format!("{lit} {op} ANY (jdocs)"),
                19 => format!("jdocs @> ARRAY[{lit}::jsonb]"),
                0 => format!("{col}->> {key} = {val}"),
                1 => format!("{val} = {col} ->> {key}"),
                2 => format!("{col}->'a'->>'b' = 'c'"),
                3 => format!("data @> {lit}"),
                4 => format!("{lit} <@ data"),
                5 => format!("data ? {val}"),
                6 => "data ? 'kind'".to_owned(),
                7 => format!("data = {lit}"),
                8 => format!("(data-> {key}) = {lit}"),
                9 => "data->'tags' ? 'x'".to_owned(),
                10 => format!("({col}->> {key}) IS NULL"),
                _ => format!("{col}->> {key} IN ({val}, 'a')"),
            }
        },
    )
}

/// Leaves over date/time arithmetic and intervals.
fn datetime_leaf() -> impl Strategy<Value = String> {
    let ops = prop::sample::select(vec!["=", "<>", "<", ">", "<=", ">="]);
    let ivs = prop::sample::select(vec![
        "'1 day'",
        "interval '1 mon'",
        "'-1 year'",
        "'25 hours'",
        "'1 mon -1 day'",
        "'P1Y2M3DT4H5M6.5S'",
        "dur",
    ]);
    let dates = prop::sample::select(vec!["'2024-01-31'", "'2024-03-01'", "due"]);
    let stamps = prop::sample::select(vec!["'2024-02-29 10:00'", "'2023-12-31 23:00'", "at"]);
    let factors = prop::sample::select(vec![
        "1.5", "2", "-0.5", "score", "priority", "small", "amount", "f4", "'2'", "1e-7", "0",
        "1e10", "7", "0.1", "-3",
    ]);
    let zones = prop::sample::select(vec![
        "'America/New_York'",
        "'Europe/London'",
        "'UTC'",
        "'Asia/Kolkata'",
        "'Australia/Lord_Howe'",
        "'PST'",
        "'+05:30'",
        "'Pacific/Chatham'",
        "'america/new_york'",
        "interval '-05:30'",
    ]);
    (ops, ivs, dates, stamps, -40i32..40, factors, zones, 0..26u8).prop_map(
        |(op, iv, date, ts, n, f, zone, form)| match form {
            0 => format!("due + {n} {op} {date}"),
            1 => format!("due - {n} {op} {date}"),
            2 => format!("due - {date} {op} {n}"),
            3 => format!("due + interval {iv} {op} {ts}").replace("interval dur", "dur"),
            4 => format!("at + {iv} {op} {ts}"),
            5 => format!("at - {iv} {op} {ts}"),
            6 => format!("at - {ts} {op} {iv}"),
            7 => format!("created_at + {iv} {op} '2024-01-01 00:00+00'"),
            8 => format!("t + {iv} {op} '10:00'"),
            9 => format!("t - '09:00' {op} {iv}"),
            10 => format!("justify_hours(dur) {op} {iv}"),
            11 => format!("justify_interval(dur + {iv}) {op} '1 mon'"),
            12 => format!("dur - {iv} {op} '0'"),
            13 => format!("dur * {f} {op} {iv}"),
            14 => format!("{f} * dur {op} {iv}"),
            15 => format!("dur / {f} {op} {iv}"),
            16 => format!("-dur {op} {iv}"),
            17 => format!("at + dur * {f} {op} {ts}"),
            18 => format!("justify_interval(dur / {f}) {op} {iv}"),
            19 => format!("created_at AT TIME ZONE {zone} {op} {ts}"),
            20 => format!("at AT TIME ZONE {zone} {op} created_at"),
            21 => format!("timezone({zone}, at) {op} '2024-03-10 07:30+00'"),
            22 => format!("(at AT TIME ZONE {zone}) AT TIME ZONE 'Europe/London' {op} at"),
            23 => format!("(created_at AT TIME ZONE {zone}) - at {op} {iv}"),
            24 => format!("'2024-11-03 05:30+00' AT TIME ZONE {zone} {op} at"),
            _ => format!("justify_days(dur) = {iv}"),
        },
    )
}

/// Leaves over array columns: ANY/ALL, containment, subscripts, `||` and the functions.
fn array_leaf() -> impl Strategy<Value = String> {
    let ops = prop::sample::select(vec!["=", "<>", "<", ">", "<=", ">="]);
    (
        any::<bool>(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        ops,
        -1i32..4,
        -1i32..4,
        0..16u8,
    )
        .prop_map(|(text, l1, l2, e, op, i, j, form)| {
            let (arr, scalar, lits, elems): (&str, &str, &[&str], &[&str]) = if text {
                (
                    "tags",
                    "status",
                    GEN_COLUMNS[GEN_COLUMNS.len() - 2].2,
                    &["'a'", "'b'", "'c'", "'todo'", "NULL"],
                )
            } else {
                (
                    "nums",
                    "priority",
                    GEN_COLUMNS[GEN_COLUMNS.len() - 1].2,
                    &["1", "2", "5", "1.0", "NULL", "'1'"],
                )
            };
            let a = lits[l1.index(lits.len())];
            let b = lits[l2.index(lits.len())];
            let x = elems[e.index(elems.len())];
            match form {
                0 => format!("{x} {op} ANY({arr})"),
                1 => format!("{x} {op} ALL({arr})"),
                2 => format!("{scalar} {op} ANY({arr})"),
                3 => format!("{arr} @> {a}"),
                4 => format!("{a} <@ {arr}"),
                5 => format!("{arr} && {a}"),
                6 => format!("{arr} {op} {a}"),
                7 => format!("{arr}[{i}] {op} {x}"),
                8 => format!("{arr}[{i}:{j}] = {a}"),
                9 => format!("{arr}[{i}][{j}] IS NULL"),
                10 => format!("array_ndims({arr}) = {i}"),
                11 => format!("{arr} || {x} = {a}"),
                12 => format!("array_cat({arr}, {a}) {op} {b}"),
                13 => format!("{x} || {arr} @> {a}"),
                14 => format!("{scalar} = ANY({a})"),
                _ => format!("NOT ({x} = ANY({arr}))"),
            }
        })
}

/// Leaves over bytea: comparisons, `||`, casts from and to text, lists and arrays.
fn bytea_leaf() -> impl Strategy<Value = String> {
    let ops = prop::sample::select(vec!["=", "<>", "<", ">", "<=", ">="]);
    let lits = GEN_COLUMNS[0].2;
    let texts = prop::sample::select(vec![
        "'\\x0102'",
        "'\\x'",
        "' \\x01'",
        "'\\x0'",
        "'\\xzz'",
        "'ab\\'",
        "'\\\\\\001'",
        "'\\x 0 1'",
        "'\\X01'",
        "title",
    ]);
    (
        ops,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        texts,
        0..12u8,
    )
        .prop_map(|(op, i, j, text, form)| {
            let a = lits[i.index(lits.len())];
            let b = lits[j.index(lits.len())];
            match form {
                0 => format!("bin || {a} {op} {b}"),
                1 => format!("{a} || bin {op} bin"),
                2 => format!("bin {op} {text}::bytea"),
                3 => format!("bin::text {op} {text}"),
                4 => format!("CAST({text} AS bytea) {op} {a}"),
                5 => format!("bin IS NOT DISTINCT FROM {a}"),
                6 => format!("bin IN ({a}, {b}, NULL)"),
                7 => format!("bin = ANY(ARRAY[{a}, {b}]::bytea[])"),
                8 => format!("bin::text = ({a}::bytea)::text"),
                9 => format!("({a}::bytea || {b}::bytea) {op} bin"),
                10 => format!("title::bytea {op} {a}"),
                _ => format!("bin {op} {a}"),
            }
        })
}

/// Leaves over `LIKE`/`ILIKE` with `ANY`/`ALL`.
fn like_leaf() -> impl Strategy<Value = String> {
    let texts = prop::sample::select(vec![
        "title",
        "code",
        "status",
        "note",
        "kind::text",
        "'abc'",
    ]);
    let arrays = prop::sample::select(vec![
        "ARRAY['a%', 'b%']",
        "'{a%,%b%}'",
        "'{}'",
        "ARRAY['a%', NULL]",
        "tags",
        "'{_,%}'",
        "'{a,\"a \"}'",
        "ARRAY['%c', 'é%', '_']",
        "NULL",
        "ARRAY[title, 'x%']",
    ]);
    let ci_arrays = prop::sample::select(vec!["'{A%,b_}'", "ARRAY['%E', NULL]", "'{}'", "'{%}'"]);
    let ops = prop::sample::select(vec!["LIKE", "NOT LIKE", "~~", "!~~"]);
    let ci_ops = prop::sample::select(vec!["ILIKE", "NOT ILIKE", "~~*", "!~~*"]);
    let quant = prop::sample::select(vec!["ANY", "ALL", "SOME"]);
    (texts, arrays, ci_arrays, ops, ci_ops, quant, any::<bool>()).prop_map(
        |(text, array, ci_array, op, ci_op, quant, ci)| {
            if ci {
                format!("{text} {ci_op} {quant} ({ci_array})")
            } else {
                format!("{text} {op} {quant} ({array})")
            }
        },
    )
}

/// Numeric columns, for arithmetic forms.
const GEN_NUMERIC: &[&str] = &["priority", "id", "score", "amount", "f4", "small"];
/// Text-like columns, for string functions.
const GEN_TEXT: &[&str] = &["title", "code", "status"];

fn leaf() -> impl Strategy<Value = String> {
    let ops = prop::sample::select(vec!["=", "<>", "<", ">", "<=", ">="]);
    let patterns = prop::sample::select(vec![
        "'a%'", "'A%'", "'%'", "'_'", "'a\\%'", "'%b%'", "'é%'", "'a _'",
    ]);
    (
        0..GEN_COLUMNS.len(),
        0..GEN_COLUMNS.len(),
        ops,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        0..16u8,
        patterns,
    )
        .prop_map(|(c, other, op, i, j, form, pattern)| {
            let (name, _, lits) = GEN_COLUMNS[c];
            let other = GEN_COLUMNS[other].0;
            let a = lits[i.index(lits.len())];
            let b = lits[j.index(lits.len())];
            match form {
                0 => format!("{name} IN ({a}, {b})"),
                1 => format!("{name} IS NULL"),
                2 => format!("{name} BETWEEN {a} AND {b}"),
                3 => format!("{a} {op} {name}"),
                4 => format!("{name} = {a}"),
                5 => format!("{name} IS DISTINCT FROM {a}"),
                6 => format!("{name} NOT IN ({a}, {b})"),
                7 => format!("{name} BETWEEN SYMMETRIC {a} AND {b}"),
                8 => format!("{name} {op} {other}"),
                9 => format!("({name} {op} {a}) IS NOT TRUE"),
                10 => format!("{name}::text {op} {b}"),
                11 => format!("{name}::text LIKE {pattern}"),
                12 => format!("title ILIKE {pattern}"),
                13 => format!("code NOT LIKE {pattern}"),
                _ => format!("{name} {op} {a}"),
            }
        })
}

/// Leaves over computed values: arithmetic and function calls.
fn computed_leaf() -> impl Strategy<Value = String> {
    let ops = prop::sample::select(vec!["=", "<>", "<", ">", "<=", ">="]);
    let aops = prop::sample::select(vec!["+", "-", "*", "/", "&", "|", "#", "^"]);
    (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        ops,
        aops,
        any::<prop::sample::Index>(),
        0..16u8,
    )
        .prop_map(|(n1, n2, t, op, aop, lit, form)| {
            let a = GEN_NUMERIC[n1.index(GEN_NUMERIC.len())];
            let b = GEN_NUMERIC[n2.index(GEN_NUMERIC.len())];
            let text = GEN_TEXT[t.index(GEN_TEXT.len())];
            let text2 = GEN_TEXT[n1.index(GEN_TEXT.len())];
            let lits_a = GEN_COLUMNS
                .iter()
                .find(|c| c.0 == a)
                .map_or(&[][..], |c| c.2);
            let la = lits_a[lit.index(lits_a.len())];
            let lits_t = GEN_COLUMNS
                .iter()
                .find(|c| c.0 == text)
                .map_or(&[][..], |c| c.2);
            let lt = lits_t[lit.index(lits_t.len())];
            match form {
                0 => format!("{a} {aop} {b} {op} {la}"),
                1 => format!("{a} {aop} {la} {op} {b}"),
                2 => format!("-{a} {op} {la}"),
                3 => format!("coalesce({a}, {b}) {op} {la}"),
                4 => format!("greatest({a}, {la}) {op} {b}"),
                5 => format!("least({a}, {b}, {la}) {op} {la}"),
                6 => format!("lower({text}) {op} {lt}"),
                7 => format!("upper({text}) = upper({lt})"),
                8 => format!("concat({text}, {text2}) {op} {lt}"),
                9 => format!("{text} || {text2} {op} {lt}"),
                10 => format!("coalesce({text}, {lt}) LIKE 'a%'"),
                12 => format!("|/ {a} {op} {la}"),
                13 => format!("@ {a} {op} {la}"),
                14 => format!("(@ {a}) * {b} {op} {la}"),
                15 => format!("{a} ^ {la} {op} {b}"),
                _ => format!("({a} {aop} {b}) {aop} {la} IS NULL"),
            }
        })
}

/// Leaves over numeric `/` and `^`, whose result scale follows the operands' display scale,
/// so they compare results that differ only in the last digits PG keeps.
fn numeric_leaf() -> impl Strategy<Value = String> {
    let ops = prop::sample::select(vec!["=", "<>", "<", ">", "<=", ">="]);
    let lits = prop::sample::select(vec![
        "3",
        "3.0",
        "7",
        "-2",
        "0.5",
        "1.50",
        "0.333",
        "-12.5",
        "0",
        "1e20",
        "0.000001",
        "'NaN'",
        "'Infinity'",
        "0.33333333333333333333",
        "0.3333333333333333",
        "1234.5678",
        "1.0001",
        "1e-10",
        "priority",
        "small",
        "id",
    ]);
    let exps = prop::sample::select(vec![
        "0",
        "1",
        "2",
        "3",
        "5",
        "-1",
        "10",
        "2.0",
        "'NaN'",
        "'-Infinity'",
        "'Infinity'",
        "17",
        "0.0",
        "0.5",
        "1.5",
        "-0.5",
        "-2",
        "-3",
        "0.333",
        "2.5",
        "-10",
        "amount",
        "priority",
    ]);
    (ops, lits.clone(), lits.clone(), lits, exps, 0..12u8).prop_map(|(op, x, y, z, e, form)| {
        match form {
            0 => format!("amount / {x} {op} {y}"),
            1 => format!("{x} / amount {op} {y}"),
            2 => format!("amount / {x} * {x} {op} amount"),
            3 => format!("amount * {x} / {y} {op} {z}"),
            4 => format!("(amount + {x}) / ({y} - amount) {op} {z}"),
            5 => format!("amount ^ {e} {op} {y}"),
            6 => format!("{x}::numeric ^ {e} {op} amount"),
            7 => format!("amount ^ {e} / {x} {op} {y}"),
            8 => format!("amount / {x} = amount / {y}"),
            9 => format!("(amount - {x}) ^ {e} {op} (amount * {y}) ^ {e}"),
            10 => format!("{x}::numeric / {y} {op} amount / {z}"),
            _ => format!("(amount * amount) ^ {e} / (amount - {x}) {op} {y}"),
        }
    })
}

fn clause() -> impl Strategy<Value = String> {
    prop_oneof![3 => leaf(), 1 => computed_leaf(), 1 => numeric_leaf(), 1 => array_leaf(), 1 => datetime_leaf(), 1 => json_leaf(), 1 => like_leaf(), 1 => bytea_leaf()].prop_recursive(
        3,
        12,
        3,
        |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) OR ({b})")),
                inner.prop_map(|a| format!("NOT ({a})")),
            ]
        },
    )
}

fn gen_row() -> impl Strategy<Value = Vec<(usize, Option<prop::sample::Index>)>> {
    prop::collection::vec(
        prop::option::weighted(0.85, any::<prop::sample::Index>()),
        GEN_COLUMNS.len(),
    )
    .prop_map(|v| v.into_iter().enumerate().collect())
}

fn materialise<'a>(
    schema: &Schema,
    picks: &[(usize, Option<prop::sample::Index>)],
) -> Vec<Option<&'a str>> {
    let mut r = vec![None; schema.columns.len()];
    for (c, pick) in picks {
        let (name, values, _) = GEN_COLUMNS[*c];
        r[index_of(schema, name)] = pick.as_ref().map(|i| values[i.index(values.len())]);
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn compile_never_panics_on_arbitrary_text(text in ".{0,200}") {
        let _ = WhereClause::compile(&text, &["1".to_owned()], &items());
    }

    #[test]
    fn compile_never_panics_on_sqlish_text(
        parts in prop::collection::vec(prop::sample::select(vec![
            "priority", "title", "(", ")", "=", "<", "AND", "OR", "NOT", "'a'", "1", "1.5", "NULL",
            "IN", ",", "BETWEEN", "SYMMETRIC", "IS", "TRUE", "::", "int4", "text", "LIKE", "$1", "$2",
            ";", "-", "E'\\\\'", "\"Status-Check\"", "kind", "code", "CAST", "AS", "date", "'2024-01-01'",
            "DISTINCT", "FROM", "ILIKE", "ESCAPE", "score", "'NaN'", "amount", "1e400", "'\\'",
        ]), 0..30)
    ) {
        let text = parts.join(" ");
        let _ = WhereClause::compile(&text, &["x".to_owned()], &items());
    }

    #[test]
    fn compile_never_panics_on_mutated_clauses(c in clause(), pos in any::<prop::sample::Index>(), junk in ".{0,3}", cut in any::<bool>()) {
        let mut text = c;
        let at = pos.index(text.len() + 1);
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        if cut {
            text.truncate(at);
        } else {
            text.insert_str(at, &junk);
        }
        let _ = WhereClause::compile(&text, &[], &items());
    }

    #[test]
    fn generated_clauses_keep_the_invariants(c in clause(), rows in prop::collection::vec(gen_row(), 1..8)) {
        let schema = items();
        let Ok(w) = WhereClause::compile(&c, &[], &schema) else {
            // Some generated combinations are type errors (e.g. bool < bool); that is fine.
            return Ok(());
        };
        let again = WhereClause::compile(w.sql(), &[], &schema).expect("sql() re-compiles");
        prop_assert_eq!(again.sql(), w.sql());
        for picks in &rows {
            let r = materialise(&schema, picks);
            prop_assert_eq!(again.evaluate(&r), w.evaluate(&r), "{} / {}", c, w.sql());
            assert_never_misses(&w, &r);
        }
    }
}

#[test]
fn sqrt_abs_power_and_precedence() {
    let cases: &[Case<'_>] = &[
        ("|/ score = 3", &[("score", "9")], true),
        ("|/ priority = 3", &[("priority", "9")], true),
        ("|/ score IS NULL", &[("score", "-1")], false),
        ("@ priority = 5", &[("priority", "-5")], true),
        ("@ priority = 5", &[("priority", "-2147483648")], false),
        ("@ amount = 2.5", &[("amount", "-2.50")], true),
        ("@ score = 'Infinity'", &[("score", "-Infinity")], true),
        ("score ^ 2 = 9", &[("score", "-3")], true),
        ("priority ^ 2 = 81", &[("priority", "9")], true),
        ("score ^ 0.5 IS NULL", &[("score", "-4")], false),
        ("score ^ -1 IS NULL", &[("score", "0")], false),
        ("score ^ 400 IS NULL", &[("score", "10")], false),
        ("score ^ 0 = 1", &[("score", "NaN")], true),
        ("(- score) ^ 2 = 4", &[("score", "2")], true),
        ("(@ priority) + 1 = 6", &[("priority", "-5")], true),
        ("@ (priority + 1) = 4", &[("priority", "-5")], true),
        (
            "array_append(tags, 'x') = '{a,x}'",
            &[("tags", "{a}")],
            true,
        ),
        (
            "array_prepend('x', tags) = '{x,a}'",
            &[("tags", "{a}")],
            true,
        ),
    ];
    for (text, values, expected) in cases {
        check(text, values, *expected);
    }
    assert_eq!(
        compile("|/ score > 1").sql(),
        "((|/ \"score\") > '1e0'::float8)"
    );
    assert_eq!(compile("@ small > 1").sql(), "((@ \"small\") > '1'::int4)");
    for (text, needle) in [
        ("@ priority + 1 > 0", "ambiguous operator precedence"),
        ("~ priority + 2 > 0", "ambiguous operator precedence"),
        ("|/ score - 2 > 0", "ambiguous operator precedence"),
        ("- score ^ 2 > 0", "ambiguous operator precedence"),
        ("concat(VARIADIC ARRAY['a']) = 'a'", "explicit VARIADIC"),
        ("|/ title > 0", "operator overload"),
        ("dur ^ 2 > dur", "operator overload"),
        ("'x' || tags = '{x}'", "invalid syntax for type text[]: x"),
    ] {
        let e = compile_err(text, &[]);
        assert!(e.contains(needle), "{text}: {e}");
    }
}

/// The value and display scale of a constant numeric expression, as PG prints it.
/// (read back from the folded constant in the normalised SQL).
fn numeric_text(expr: &str) -> Result<String, String> {
    let w = WhereClause::compile(&format!("amount = ({expr})"), &[], &items())
        .map_err(|e| e.to_string())?;
    let sql = w.sql();
    let start = sql.find('\'').ok_or_else(|| sql.to_owned())? + 1;
    let len = sql[start..].find('\'').ok_or_else(|| sql.to_owned())?;
    Ok(sql[start..start + len].to_owned())
}

#[test]
fn numeric_division_and_power_match_pg() {
    // PG 15's documented results (display scale included).
    let cases = [
        ("1::numeric / 3", "0.33333333333333333333"),
        ("10.0 / 4", "2.5000000000000000"),
        ("1 / 3.000", "0.33333333333333333333"),
        ("2 / 3.0", "0.66666666666666666667"),
        ("-2 / 3.0", "-0.66666666666666666667"),
        ("1.50 / 0.5", "3.0000000000000000"),
        ("123456789012345678 / 7.0", "17636684144620811.1"),
        ("0.000001 / 3", "0.000000333333333333333333"),
        ("0 / 3.5", "0.00000000000000000000"),
        ("'NaN'::numeric / 0", "NaN"),
        ("1 / 'Infinity'::numeric", "0"),
        ("'Infinity'::numeric / -2.0", "-Infinity"),
        ("1.5 + 2.25", "3.75"),
        ("1.50 * 2.0", "3.000"),
        ("2::numeric ^ 3", "8.0000000000000000"),
        ("2.0 ^ 10", "1024.0000000000000000"),
        ("1.5 ^ 2", "2.2500000000000000"),
        ("(-3.0) ^ 3", "-27.0000000000000000"),
        ("2.0 ^ (-1)", "0.5000000000000000"),
        ("3 ^ (-1)::numeric", "0.3333333333333333"),
        ("1.1 ^ 17", "5.0544702849929377"),
        ("0.12345678901234567890 ^ 5", "0.00002867971861733704"),
        ("12.5 ^ 7", "47683715.8203125000000000"),
        ("0::numeric ^ 0", "1.0000000000000000"),
        ("0::numeric ^ 3", "0.0000000000000000"),
        ("0::numeric ^ 0.5", "0.0000000000000000"),
        ("'NaN'::numeric ^ 0", "1"),
        ("1::numeric ^ 'NaN'", "1"),
        ("2::numeric ^ 'NaN'", "NaN"),
        ("0.5 ^ 'Infinity'::numeric", "0"),
        ("(-1)::numeric ^ 'Infinity'", "1"),
        ("'-Infinity'::numeric ^ 3", "-Infinity"),
        ("'-Infinity'::numeric ^ 2", "Infinity"),
        ("2 ^ 0.5", "1.4142135623730950"),
        ("2.0 ^ (-2)", "0.2500000000000000"),
    ];
    for (expr, expected) in cases {
        assert_eq!(numeric_text(expr).as_deref(), Ok(expected), "{expr}");
    }
    for (expr, error) in [
        ("1 / 0::numeric", "division by zero"),
        (
            "0::numeric ^ -1",
            "zero raised to a negative power is undefined",
        ),
        (
            "(-8)::numeric ^ (1.0 / 3)",
            "a negative number raised to a non-integer power yields a complex result",
        ),
        ("10.0 ^ 2700.5", "value overflows numeric format"),
        ("10.0 ^ 1000000", "value overflows numeric format"),
    ] {
        let e = numeric_text(expr).expect_err(expr);
        assert!(e.contains(error), "{expr}: {e}");
    }
    // Display scale never takes part in comparisons.
    check("amount / 3 * 3 = 1", &[("amount", "1")], false);
    check("amount / 2 = 0.75", &[("amount", "1.50")], true);
    check("amount ^ 2 = 2.25", &[("amount", "1.50")], true);
    check(
        "amount / priority > 0.3",
        &[("amount", "1"), ("priority", "3")],
        true,
    );
    check("amount / 0 IS NULL", &[("amount", "1")], false);
    // Non-constant exponents take PG's ln/exp path at run time; its errors are row errors.
    check("2.0 ^ amount > 1.41", &[("amount", "0.5")], true);
    check("amount ^ 0.5 = 1.5", &[("amount", "2.25")], true);
    check("(- amount) ^ 0.5 IS NULL", &[("amount", "2")], false);
}

#[test]
fn like_any_all() {
    let cases: &[Case<'_>] = &[
        (
            "title LIKE ANY (ARRAY['a%', 'b%'])",
            &[("title", "banana")],
            true,
        ),
        (
            "title LIKE ANY (ARRAY['a%', 'b%'])",
            &[("title", "cherry")],
            false,
        ),
        ("title ~~ ANY ('{a%,b%}')", &[("title", "apple")], true),
        ("title LIKE ALL ('{a%,%e}')", &[("title", "apple")], true),
        ("title LIKE ALL ('{a%,%x}')", &[("title", "apple")], false),
        ("title LIKE SOME ('{%p%}')", &[("title", "apple")], true),
        (
            "title NOT LIKE ALL ('{a%,b%}')",
            &[("title", "cherry")],
            true,
        ),
        ("title !~~ ANY ('{a%,b%}')", &[("title", "apple")], true),
        ("title ILIKE ANY ('{A%}')", &[("title", "apple")], true),
        ("title !~~* ALL ('{A%}')", &[("title", "apple")], false),
        // PG's NULL rules: the empty array decides, a NULL element can only make it NULL.
        ("title LIKE ANY ('{}') IS FALSE", &[], true),
        ("title LIKE ALL ('{}')", &[], true),
        (
            "title LIKE ANY ('{a%,NULL}') IS NULL",
            &[("title", "x")],
            true,
        ),
        ("title LIKE ANY ('{a%,NULL}')", &[("title", "a")], true),
        (
            "title LIKE ALL ('{a%,NULL}') IS NULL",
            &[("title", "a")],
            true,
        ),
        (
            "title LIKE ANY (tags)",
            &[("title", "ab"), ("tags", "{x,a%}")],
            true,
        ),
        ("title LIKE ANY (tags) IS NULL", &[("title", "ab")], true),
        ("code LIKE ANY ('{a}')", &[("code", "a    ")], false),
        ("code LIKE ANY ('{a%}')", &[("code", "a    ")], true),
    ];
    for (text, values, expected) in cases {
        check(text, values, *expected);
    }
    assert_eq!(
        compile("title NOT LIKE ANY (ARRAY['a%', 'b%'])").sql(),
        "(\"title\" NOT LIKE ANY ('{\"a%\",\"b%\"}'::text[]))"
    );
    assert!(compile_err("title LIKE ANY ('{a\\\\}')", &[]).contains("escape character"));
    assert!(compile_err("priority LIKE ANY ('{1}')", &[]).contains("operator overload"));
    assert!(compile_err("title LIKE ANY (nums)", &[]).contains("operator overload"));
    assert!(
        compile_err("title LIKE ANY ('a')", &[]).contains("malformed")
            || compile_err("title LIKE ANY ('a')", &[]).contains("invalid syntax")
    );
    assert!(compile_err("title ILIKE ANY (tags)", &[]).contains("ILIKE ANY/ALL is only supported"));
    assert!(
        compile_err("title ILIKE ANY ('{é%}')", &[]).contains("ILIKE ANY/ALL is only supported")
    );
    assert!(compile_err("title LIKE ANY (title)", &[]).contains("must be an array"));
    // Routing: one prefix per pattern (ANY), the longest prefix (ALL).
    let w = compile("title LIKE ANY ('{ab%,c%}')");
    let e = w.index_entries().expect("indexable");
    assert_eq!(e.len(), 2);
    let w = compile("title LIKE ALL ('{a%,abc%}')");
    let e = w.index_entries().expect("indexable");
    assert_eq!(e.len(), 1);
    assert!(!e[0].may_match(Some("ab")));
    assert!(
        compile("title LIKE ANY ('{ab%,%}')")
            .index_entries()
            .is_none()
    );
}

#[test]
fn at_time_zone() {
    let cases: &[Case<'_>] = &[
        (
            "created_at AT TIME ZONE 'America/New_York' = '2024-03-10 03:30'",
            &[("created_at", "2024-03-10 07:30:00+00")],
            true,
        ),
        (
            "timezone('America/New_York', at) = '2024-03-10 07:30+00'",
            &[("at", "2024-03-10 02:30:00")],
            true,
        ),
        (
            "at AT TIME ZONE 'america/new_york' = '2024-11-03 06:30+00'",
            &[("at", "2024-11-03 01:30:00")],
            true,
        ),
        (
            "at AT TIME ZONE 'CET' = '2024-07-01 11:00+00'",
            &[("at", "2024-07-01 12:00:00")],
            true,
        ),
        (
            "at AT TIME ZONE 'UTC+3' = '2024-07-01 15:00+00'",
            &[("at", "2024-07-01 12:00:00")],
            true,
        ),
        (
            "at AT TIME ZONE '+05:30' = '2024-07-01 17:30+00'",
            &[("at", "2024-07-01 12:00:00")],
            true,
        ),
        (
            "at AT TIME ZONE interval '+05:30' = '2024-07-01 06:30+00'",
            &[("at", "2024-07-01 12:00:00")],
            true,
        ),
        (
            "at AT TIME ZONE 'Asia/Kolkata' = created_at",
            &[
                ("at", "2024-07-01 12:00:00"),
                ("created_at", "2024-07-01 06:30:00+00"),
            ],
            true,
        ),
        (
            "at AT TIME ZONE 'UTC' = 'infinity'",
            &[("at", "infinity")],
            true,
        ),
        ("at AT TIME ZONE 'UTC' IS NULL", &[], true),
        (
            "at AT TIME ZONE NULL IS NULL",
            &[("at", "2024-07-01 12:00:00")],
            true,
        ),
        (
            "'2024-07-01 12:00+00' AT TIME ZONE 'Europe/London' = at",
            &[("at", "2024-07-01 13:00:00")],
            true,
        ),
    ];
    for (text, values, expected) in cases {
        check(text, values, *expected);
    }
    let params = ["Pacific/Chatham".to_owned()];
    let w = WhereClause::compile(
        "created_at AT TIME ZONE $1 > '2024-01-01'",
        &params,
        &items(),
    )
    .expect("compiles");
    assert_eq!(
        w.sql(),
        "(timezone('Pacific/Chatham'::text, \"created_at\") > '2024-01-01 00:00:00'::timestamp)"
    );
    assert!(w.index_entries().is_none());
    assert_eq!(
        compile_err("at AT TIME ZONE 'Mars/Olympus' > created_at", &[]),
        "At location 16: time zone \"Mars/Olympus\" not recognized"
    );
    assert!(
        compile_err(
            "timezone('UTC', at) > created_at AND at AT TIME ZONE title > created_at",
            &[]
        )
        .contains("constant time zone")
    );
    assert!(compile_err("t AT TIME ZONE 'UTC' IS NULL", &[]).contains("time values"));
    assert!(compile_err("due AT TIME ZONE 'UTC' IS NULL", &[]).contains("explicit cast"));
    assert!(compile_err("at AT TIME ZONE 'MSK' IS NULL", &[]).contains("depends on the date"));
    assert!(
        compile_err("at AT TIME ZONE interval '1 day' IS NULL", &[])
            .contains("must not include months or days")
    );
    assert!(compile_err("priority AT TIME ZONE 'UTC' IS NULL", &[]).contains("function overload"));
    assert!(compile_err("at AT TIME ZONE 5 IS NULL", &[]).contains("operator overload"));
    assert!(
        compile_err("at AT TIME ZONE '../zoneinfo/UTC' IS NULL", &[]).contains("not recognized")
    );
}

#[test]
fn like_matches_pg() {
    use super::like::like;
    let cases = [
        ("abc", "abc", true),
        ("abc", "a%", true),
        ("abc", "%c", true),
        ("abc", "%b%", true),
        ("abc", "a_c", true),
        ("ac", "a_c", false),
        ("abc", "ab", false),
        ("a\nb", "a%", true),
        ("", "%", true),
        ("", "_", false),
        ("%", "\\%", true),
        ("x", "\\%", false),
        ("\\", "\\\\", true),
        ("aaa", "%%a", true),
        ("ab", "%_b", true),
        ("b", "%_b", false),
        ("mississippi", "%iss%ppi", true),
        ("mississippi", "m%ss%s_i", false),
        ("日本語", "日_語", true),
    ];
    for (text, pattern, expected) in cases {
        assert_eq!(
            like(text, pattern, false),
            Ok(expected),
            "{text:?} LIKE {pattern:?}"
        );
    }
    assert_eq!(like("ABC", "a_c", true), Ok(true));
    assert_eq!(like("ÉTÉ", "été", true), Ok(false));
    assert_eq!(like("été", "_T_", true), Ok(true));
    assert!(like("a", "a\\", false).is_err());
}

// ---------------------------------------------------------------------------------------------
// Differential test against a real Postgres.

/// Clauses that once disagreed with Postgres (or nearly did): always part of the differential
/// corpus, on every generated row.
const DIFFERENTIAL_REGRESSIONS: &[&str] = &[
    "title > 'B'",
    "code = 'abc'",
    "code LIKE 'a%'",
    "score > 1e308",
    "amount = 5",
    "kind < 'inactive'",
    "kind::text = 'active'",
    "flag::int4 = 1",
    "priority::text = '5'",
    "title ILIKE 'A%'",
    "due < '2024-01-01 00:00:00'::timestamp",
    "created_at = '2024-01-01 09:00'",
    "amount + 0.1 = 0.2",
    "priority + 1 > 0",
    "small * small > 0",
    "-small < 0",
    "score * 1e308 > 0",
    "f4 + 1 > 1",
    "f4 * 1e30::float4 > 0",
    "lower(title) = 'a'",
    "upper(status) = 'ÉTÉ'",
    "concat(code, title) = 'a    a'",
    "code || title = 'aa'",
    "greatest(title, status) > 'a'",
    "least(priority, small) = -32768",
    "coalesce(priority, 1) = 1",
    "id / -1 > 0",
    "priority / 0 = 1",
    "amount * amount = 25",
    "amount - amount = 0",
    "'c' = ANY(tags)",
    "NOT ('c' = ANY(tags))",
    "nums @> '{1,NULL}'",
    "nums[0] = 1",
    "nums[1:1][2:2] = '{{2}}'",
    "nums || 3 = '[0:2]={1,2,3}'",
    "tags < '{a,b,c}'",
    "dur = '24 hours'",
    "at + '1 mon' = '2024-02-29 10:00'",
    "at - '2023-01-01' > '1 year'",
    "justify_interval(dur) < '1 mon'",
    "data->>'kind' = 'b'",
    "doc->>'kind' = 'b'",
    "data->>'n' = '1.50'",
    "doc->>'n' = '1.50'",
    "data @> '{\"n\": 1.5}'",
    "created_at AT TIME ZONE 'America/New_York' > '2024-03-10 02:30'",
    "at AT TIME ZONE 'Australia/Lord_Howe' = created_at",
    "dur * score > '1 day'",
    "title LIKE ANY (tags)",
    "|/ score > 1",
    "score ^ priority > 1",
    "@ amount = 5",
];

/// How one clause came out on one row in Postgres: a value, or an error.
type PgOutcome = Result<Option<bool>, String>;

/// Evaluates `clauses` (normalised SQL) on every row of `items`, ordered by `rid`.
/// Batches many clauses per query; a batch that raises is split, and a clause that raises
/// is evaluated row by row (`try_eval`), so per-row errors are outcomes too.
async fn pg_outcomes(
    client: &tokio_postgres::Client,
    clauses: &[String],
    rows: usize,
) -> Vec<Vec<PgOutcome>> {
    const BATCH: usize = 64;
    let mut out = Vec::with_capacity(clauses.len());
    for chunk in clauses.chunks(BATCH) {
        let select: Vec<String> = chunk.iter().map(|c| format!("({c})")).collect();
        let sql = format!("SELECT {} FROM items ORDER BY rid", select.join(", "));
        if let Ok(result) = client.query(&sql, &[]).await {
            for i in 0..chunk.len() {
                out.push(
                    result
                        .iter()
                        .map(|r| Ok(r.get::<_, Option<bool>>(i)))
                        .collect(),
                );
            }
            continue;
        }
        for clause in chunk {
            let sql = format!("SELECT ({clause}) FROM items ORDER BY rid");
            if let Ok(result) = client.query(&sql, &[]).await {
                out.push(
                    result
                        .iter()
                        .map(|r| Ok(r.get::<_, Option<bool>>(0)))
                        .collect(),
                );
                continue;
            }
            let result = client
                .query("SELECT r, err FROM try_eval($1)", &[clause])
                .await
                .expect("try_eval");
            assert_eq!(result.len(), rows);
            out.push(
                result
                    .iter()
                    .map(|r| match r.get::<_, Option<String>>(1) {
                        Some(err) => Err(err),
                        None => Ok(r.get::<_, Option<bool>>(0)),
                    })
                    .collect(),
            );
        }
    }
    out
}

/// Generated rows × generated clauses (every supported type and construct), evaluated by us
/// and by a real Postgres, must agree: the same TRUE/FALSE/NULL where both evaluate, and
/// "not included" where Postgres raises. `AMPERE_LONG_TESTS=1` runs a much larger corpus.
#[test]
fn differential_against_postgres() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};

    let long = std::env::var("AMPERE_LONG_TESTS").is_ok_and(|v| v == "1");
    let (row_count, clause_count) = if long { (600, 30_000) } else { (200, 3_000) };
    let cluster = crate::pg::local_cluster::LocalCluster::start_temp().expect("temp cluster");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
            .batch_execute(
                "SET TimeZone='UTC'; SET DateStyle='ISO, DMY'; SET extra_float_digits=1; SET IntervalStyle='iso_8601';
                 CREATE TYPE my_enum AS ENUM ('active','inactive');
                 CREATE TABLE items (id int8, title text, status text, priority int4, score float8, amount numeric,
                   flag bool, tags text[], nums int4[], created_at timestamptz, due date, uid uuid, bin bytea, code char(5),
                   kind my_enum, dur interval, \"Status-Check\" text, f4 float4, small int2, note varchar,
                   at timestamp, t time, data jsonb, doc json, jdocs jsonb[], rid serial PRIMARY KEY);
                 CREATE FUNCTION try_eval(clause text) RETURNS TABLE(r bool, err text) LANGUAGE plpgsql AS $f$
                 DECLARE row_id int;
                 BEGIN
                   FOR row_id IN SELECT i.rid FROM items i ORDER BY 1 LOOP
                     BEGIN
                       EXECUTE format('SELECT (%s) FROM items WHERE rid = $1', clause) INTO r USING row_id;
                       err := NULL;
                     EXCEPTION WHEN OTHERS THEN
                       r := NULL; err := SQLERRM;
                     END;
                     RETURN NEXT;
                   END LOOP;
                 END $f$;",
            )
            .await
            .expect("schema");
        let schema = items();
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
        );
        // Rows: generated values, inserted as literals, then read back as PG's text output.
        for _ in 0..row_count {
            let picks = gen_row().new_tree(&mut runner).expect("row").current();
            let mut cols = Vec::new();
            let mut vals = Vec::new();
            for (c, pick) in &picks {
                let (name, values, _) = GEN_COLUMNS[*c];
                if let Some(i) = pick {
                    cols.push(format!("\"{name}\""));
                    vals.push(format!("'{}'", values[i.index(values.len())].replace('\'', "''")));
                }
            }
            let sql = if cols.is_empty() {
                "INSERT INTO items DEFAULT VALUES".to_owned()
            } else {
                format!("INSERT INTO items ({}) VALUES ({})", cols.join(","), vals.join(","))
            };
            client.batch_execute(&sql).await.expect("insert");
        }
        let select_cols: Vec<String> = schema
            .columns
            .iter()
            .map(|c| {
                let q = format!("\"{}\"", c.name);
                // `::text` would strip bpchar padding, and concat() alone turns NULL into ''.
                if c.type_name == "bpchar" {
                    format!("(CASE WHEN {q} IS NULL THEN NULL ELSE concat({q}, '') END)")
                } else {
                    format!("{q}::text")
                }
            })
            .collect();
        let rows = client
            .query(&format!("SELECT {} FROM items ORDER BY rid", select_cols.join(", ")), &[])
            .await
            .expect("read back");
        let table: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|r| (0..schema.columns.len()).map(|i| r.get::<_, Option<String>>(i)).collect())
            .collect();

        let mut texts: Vec<String> = DIFFERENTIAL_REGRESSIONS.iter().map(|s| (*s).to_owned()).collect();
        for _ in 0..clause_count {
            texts.push(clause().new_tree(&mut runner).expect("clause").current());
        }
        let compiled: Vec<(String, WhereClause)> = texts
            .into_iter()
            .filter_map(|t| WhereClause::compile(&t, &[], &schema).ok().map(|w| (t, w)))
            .collect();
        let sqls: Vec<String> = compiled.iter().map(|(_, w)| w.sql().to_owned()).collect();
        let outcomes = pg_outcomes(&client, &sqls, table.len()).await;

        let (mut cases, mut pg_errors, mut our_errors) = (0usize, 0usize, 0usize);
        let mut disagreements = Vec::new();
        for ((text, w), per_row) in compiled.iter().zip(&outcomes) {
            for (values, pg) in table.iter().zip(per_row) {
                let row: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
                let ours = w.evaluate(&row);
                cases += 1;
                if let (Ok(Some(true)), Some(entries)) = (&ours, w.index_entries()) {
                    assert!(
                        entries.iter().any(|e| e.may_match(row.get(e.column).copied().flatten())),
                        "index misses a matching row: {text} {entries:?} {row:?}"
                    );
                }
                let agree = match (pg, &ours) {
                    (Ok(p), Ok(o)) => p == o,
                    (Err(_), _) => {
                        pg_errors += 1;
                        !w.matches(&row)
                    }
                    (Ok(p), Err(_)) => {
                        our_errors += 1;
                        *p != Some(true)
                    }
                };
                if !agree && disagreements.len() < 20 {
                    let shown: Vec<String> = w
                        .referenced_columns()
                        .iter()
                        .map(|&c| format!("{}={:?}", schema.columns[c].name, values[c]))
                        .collect();
                    disagreements.push(format!(
                        "{text}\n  sql: {}\n  row: {}\n  pg: {pg:?}  ours: {ours:?}",
                        w.sql(),
                        shown.join(", ")
                    ));
                }
            }
        }
        eprintln!(
            "differential: {} clauses × {} rows = {cases} cases; PG raised on {pg_errors}, we raised on {our_errors}",
            compiled.len(),
            table.len()
        );
        // How many compiled clauses exercise the newer constructs (in the normalised SQL).
        let features = [
            ("AT TIME ZONE", "timezone("),
            ("LIKE ANY/ALL", "LIKE A"),
            ("interval * / float8", "\"dur\" *"),
            ("#> / #>>", " #>"),
            ("jsonb[]", "\"jdocs\""),
            ("numeric /", "\"amount\" /"),
            ("numeric ^", "\"amount\" ^"),
            ("bytea", "::bytea"),
        ];
        let counts: Vec<String> = features
            .iter()
            .map(|(label, needle)| {
                let n = compiled.iter().filter(|(_, w)| w.sql().contains(needle)).count();
                format!("{label}: {n}")
            })
            .collect();
        eprintln!("differential clauses by construct: {}", counts.join(", "));
        assert!(disagreements.is_empty(), "disagreements with Postgres:\n{}", disagreements.join("\n"));
        assert!(compiled.len() > clause_count / 2, "too few clauses compiled: {}", compiled.len());
    });
}

#[test]
fn compiled_clauses_are_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<WhereClause>();
    assert_send_sync::<WhereError>();
}

#[test]
fn differential_regressions_compile() {
    for text in DIFFERENTIAL_REGRESSIONS {
        if let Err(e) = WhereClause::compile(text, &[], &items()) {
            panic!("{text}: {e}");
        }
    }
}

/// 2000-term flat clauses of every list-like shape compile (this took ~2 s in a debug build
/// when every node's location was found by scanning its line from the start).
#[test]
fn long_flat_clauses_compile() {
    let n = 2000;
    let list = |f: &dyn Fn(usize) -> String, sep: &str| (0..n).map(f).collect::<Vec<_>>().join(sep);
    let forms = [
        vec!["priority = 1"; n].join(" AND "),
        vec!["priority = 1"; n].join(" OR "),
        format!("priority IN ({})", list(&|i| i.to_string(), ",")),
        format!("title IN ({})", list(&|i| format!("'{i}'"), ",")),
        list(&|i| format!("(small = {i} AND flag)"), " OR "),
        format!("priority = ANY('{{{}}}')", list(&|i| i.to_string(), ",")),
    ];
    for w in &forms {
        match WhereClause::compile(w, &[], &items()) {
            Ok(c) => assert!(c.index_entries().is_some(), "{}", &w[..60]),
            Err(e) => panic!("{}: {e}", &w[..60]),
        }
    }
}

#[test]
fn huge_literals_are_refused() {
    let max = super::parse::MAX_LITERAL_BYTES;
    let ok = "x".repeat(max);
    let big = "x".repeat(max + 1);
    assert!(WhereClause::compile(&format!("title = '{ok}'"), &[], &items()).is_ok());
    let e = compile_err(&format!("title = '{big}'"), &[]);
    assert_eq!(
        e,
        format!(
            "At location 8: string literal is too long ({} bytes; at most {max} bytes are accepted)",
            max + 1
        )
    );
    let e = compile_err("title = $1", &[&big]);
    assert!(
        e.starts_with("At location 8: parameter value is too long"),
        "{e}"
    );
    let e = compile_err(&format!("amount = {}", "1".repeat(max + 1)), &[]);
    assert!(e.contains("number is too long"), "{e}");
    let e = compile_err(&format!("dur = interval '{big}'"), &[]);
    assert!(e.contains("string literal is too long"), "{e}");
}

/// `AT TIME ZONE` against a real Postgres 15 on the same machine (same tzdata): for each
/// zone, instants sampled across 1850–2105 plus windows around every transition up to 2100
/// and a few far-future and pre-1900 ones, converted both ways. Every result must be equal.
#[test]
fn time_zones_match_postgres() {
    use super::tz::lookup;
    const ZONES: &[&str] = &[
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Pacific/Chatham",
        "America/Sao_Paulo",
        "Africa/Casablanca",
        "UTC",
        "Etc/GMT+5",
        "Europe/Dublin",
        "Antarctica/Troll",
        "Pacific/Apia",
        "America/St_Johns",
        "Asia/Kathmandu",
        "America/Santiago",
        "Asia/Gaza",
        "America/Nuuk",
        "Europe/Moscow",
        "Asia/Tehran",
        "Australia/Sydney",
        "Pacific/Kiritimati",
        "america/new_york",
        "EUROPE/PARIS",
        "CET",
        "PST",
        "zulu",
        "UTC+3",
        "+05:30",
        "<+03>-3",
        "-03",
        "AAA3BBB",
        "EST5EDT",
        "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
        "XXX-2YYY,M3.5.0/-1,M10.5.0/25",
        "Factory",
        "posixrules",
        ":Europe/Berlin",
    ];
    if !std::path::Path::new("/usr/share/zoneinfo/America/New_York").exists() {
        eprintln!("no system tzdata; skipped");
        return;
    }
    let cluster = crate::pg::local_cluster::LocalCluster::start_temp().expect("temp cluster");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let unix_to_pg_us = |secs: i64| (secs - 946_684_800) * 1_000_000;
    let (mut compared, mut mismatches) = (0usize, Vec::new());
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
            .batch_execute("SET TimeZone='UTC'; SET DateStyle='ISO, DMY'; SET IntervalStyle='iso_8601';")
            .await
            .expect("settings");
        for name in ZONES {
            let zone = lookup(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            // Sample instants, in PG µs.
            let mut samples: Vec<i64> = Vec::new();
            let (from, to) = (unix_to_pg_us(-3_786_825_600), unix_to_pg_us(4_291_747_200));
            let step = ((11 * 24 + 5) * 60 + 13) * 60 * 1_000_000i64;
            samples.extend((0..).map(|i| from + i * step).take_while(|t| *t < to));
            for at in zone.transition_instants(2100) {
                let at = unix_to_pg_us(at);
                for m in [-1500, -180, -91, -90, -61, -60, -59, -45, -31, -30, -29, -1, 0, 1, 29, 30, 31, 59, 60, 61, 90, 91, 180, 1500] {
                    samples.push(at + m * 60_000_000);
                }
                samples.push(at - 1);
                samples.push(at + 500_000);
            }
            for s in ["1700-06-15 12:00:00", "1883-11-18 17:00:00", "2050-07-01 12:00:00", "2100-03-14 07:00:00", "2100-11-07 06:30:00", "2400-02-29 01:30:00", "9999-12-31 23:59:59.999999", "0044-03-15 12:00:00 BC"] {
                samples.push(super::values::parse_timestamp(s, false).expect("sample"));
            }
            samples.push(i64::MAX);
            samples.push(i64::MIN);
            let texts: Vec<String> = samples
                .iter()
                .map(|&us| super::values::format_timestamp(us, false))
                .collect();
            let rows = client
                .query(
                    "SELECT (x::timestamptz AT TIME ZONE $1)::text, (x::timestamp AT TIME ZONE $1)::text
                     FROM unnest($2::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n",
                    &[name, &texts],
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(rows.len(), samples.len());
            for (us, row) in samples.iter().zip(&rows) {
                let pg_local: String = row.get(0);
                let pg_utc: String = row.get(1);
                let pg_local = super::values::parse_timestamp(&pg_local, false).expect("pg local");
                let pg_utc = super::values::parse_timestamp(&pg_utc, true).expect("pg utc");
                let ours = (zone.to_local(*us), zone.to_utc(*us));
                compared += 2;
                if ours != (Ok(pg_local), Ok(pg_utc)) && mismatches.len() < 20 {
                    mismatches.push(format!(
                        "{name} at {}: pg local {} utc {}, ours {:?}",
                        super::values::format_timestamp(*us, false),
                        super::values::format_timestamp(pg_local, false),
                        super::values::format_timestamp(pg_utc, true),
                        ours
                    ));
                }
            }
        }
        // Names PG refuses are refused here too, with its message.
        for name in ["America", "foo", "America/../UTC", "../zoneinfo/UTC", "UTC+", "<+03"] {
            let err = client
                .query("SELECT now() AT TIME ZONE $1", &[&name])
                .await
                .expect_err(name);
            let pg = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
            assert_eq!(lookup(name).map_err(|e| e.to_string()), Err(pg), "{name}");
        }
    });
    eprintln!(
        "time zones: {compared} conversions compared with Postgres, {} mismatches",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "AT TIME ZONE disagrees with Postgres:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn bytea_input_output_and_comparison() {
    use super::values::parse_bytea;
    // Hex format: either case, blanks between pairs, canonical input borrowed as is.
    assert_eq!(parse_bytea("\\x").as_deref(), Some(""));
    assert_eq!(parse_bytea("\\x0a0B").as_deref(), Some("0a0b"));
    assert_eq!(parse_bytea("\\x 0a\t0b\n\r").as_deref(), Some("0a0b"));
    assert!(matches!(
        parse_bytea("\\x0a0b"),
        Some(std::borrow::Cow::Borrowed("0a0b"))
    ));
    // Odd digit count, a blank inside a pair, a non-hex digit, `\X`: errors.
    for bad in [
        "\\x0", "\\x012", "\\x0 1", "\\xzz", "\\X01", " \\x01", "ab\\", "\\8", "\\400", "\\01",
    ] {
        assert_eq!(parse_bytea(bad), None, "{bad:?}");
    }
    // Escape format: `\\`, `\ooo`, other bytes (UTF-8 too) as themselves.
    assert_eq!(parse_bytea("").as_deref(), Some(""));
    assert_eq!(parse_bytea("abc").as_deref(), Some("616263"));
    assert_eq!(parse_bytea("a\\\\b").as_deref(), Some("615c62"));
    assert_eq!(parse_bytea("\\000\\377").as_deref(), Some("00ff"));
    assert_eq!(parse_bytea("é").as_deref(), Some("c3a9"));

    let cases: &[Case<'_>] = &[
        ("bin = '\\x0102'", &[("bin", "\\x0102")], true),
        ("bin = '\\x01 02'", &[("bin", "\\x0102")], true),
        ("bin = 'abc'", &[("bin", "\\x616263")], true),
        ("bin = '\\x'", &[("bin", "\\x")], true),
        ("bin < '\\x0100'", &[("bin", "\\x01")], true),
        ("bin > '\\x01'", &[("bin", "\\x0100")], true),
        ("bin < '\\x02'", &[("bin", "\\x01ff")], true),
        ("bin > '\\x'", &[("bin", "\\x00")], true),
        ("bin >= '\\xff'", &[("bin", "\\x7f")], false),
        ("bin <> '\\x01'", &[("bin", "\\x01")], false),
        ("bin || '\\x02' = '\\x0102'", &[("bin", "\\x01")], true),
        ("'\\x' || bin = bin", &[("bin", "\\xabcd")], true),
        ("bin::text = '\\x0a0b'", &[("bin", "\\x0a0b")], true),
        ("'\\x0A0B'::bytea::text = '\\x0a0b'", &[], true),
        ("CAST('\\001' AS bytea) = bin", &[("bin", "\\x01")], true),
        ("title::bytea = '\\x6869'", &[("title", "hi")], true),
        ("bin IS DISTINCT FROM NULL", &[("bin", "\\x")], true),
        (
            "bin IS NOT DISTINCT FROM '\\x00'",
            &[("bin", "\\x00")],
            true,
        ),
        ("bin IN ('\\x01', '\\x02')", &[("bin", "\\x02")], true),
        ("bin NOT IN ('\\x01', '\\x02')", &[("bin", "\\x0102")], true),
        (
            "bin = ANY(ARRAY['\\x01', '\\x02']::bytea[])",
            &[("bin", "\\x02")],
            true,
        ),
    ];
    for (text, values, expected) in cases {
        check(text, values, *expected);
    }
    assert!(compile_err("bin = '\\x0'", &[]).contains("invalid syntax for type bytea"));
    assert!(compile_err("bin = 'a\\b'", &[]).contains("invalid syntax for type bytea"));
    assert!(compile_err("bin = 1", &[]).contains("operator"));
    assert!(compile("bin = '\\x0A'").sql().contains("E'\\\\x0a'::bytea"));
}

/// `numeric ^ numeric` against a real Postgres, digit for digit and scale for scale, over
/// bases × exponents that take PG's `ln`/`exp` path, its negative-integer path (`1 / x^n`
/// with `div_var_fast`) and its overflow/underflow edges.
#[test]
fn numeric_power_matches_postgres() {
    let bases = [
        "2",
        "0.5",
        "1.0001",
        "123.456",
        "1e-10",
        "3",
        "10",
        "0.9",
        "1.1",
        "0.999999",
        "7.25",
        "1e20",
        "99999.9999",
        "1.5",
        "0.000123",
        "2.718281828",
        "12345678901234567890.123",
        "0.33333333333333333333",
        "1.00000000000000000001",
        "0.9999999999",
        "-2",
        "-0.5",
        "-123.456",
        "0",
        "1",
        "1.000",
        "9.9",
        "0.1",
    ];
    let exps = [
        "0.5",
        "1.5",
        "-0.5",
        "-2",
        "-3",
        "0.333",
        "2.5",
        "10",
        "-10",
        "3.0001",
        "-1.5",
        "0.1",
        "100.25",
        "1000.5",
        "-1000.5",
        "5000.5",
        "-7",
        "-17",
        "-100",
        "-1000",
        "2147483648",
        "-2147483649",
        "1e-20",
        "0.33333333333333333333",
        "4294967297",
        "2606.5",
        "-2606.5",
        "2605.9",
        "300.5",
        "-300.5",
        "0.000001",
        "-0.000001",
        "123.456",
        "-2.000",
        "25.00",
    ];
    let cluster = crate::pg::local_cluster::LocalCluster::start_temp().expect("temp cluster");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut compared, mut mismatches) = (0usize, Vec::new());
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        // Results at the edge of numeric's range (10^131072): PG overflows past it, and so
        // must we, without first computing the ~180k digits PG's loop would.
        let edges = [
            ("10", "131071"),
            ("10", "131072"),
            ("0.1", "-131071"),
            ("0.1", "-131072"),
            ("1.5", "1018956"),
            ("1.5", "-1018956"),
            ("0.5", "-1018956"),
            ("0.5", "1018956"),
            ("-1.5", "1018957"),
            ("2", "435411"),
            ("2", "435412"),
        ];
        let pairs = bases
            .iter()
            .flat_map(|b| exps.iter().map(move |e| (*b, *e)))
            .chain(edges);
        for (b, e) in pairs {
            {
                let expr = format!("({b})::numeric ^ ({e})::numeric");
                let pg = match client
                    .query_one(&format!("SELECT ({expr})::text"), &[])
                    .await
                {
                    Ok(row) => Ok(row.get::<_, String>(0)),
                    Err(err) => Err(err
                        .as_db_error()
                        .map(|d| d.message().to_owned())
                        .unwrap_or_else(|| err.to_string())),
                };
                let ours = numeric_text(&expr).map(|t| pg_numeric_text(&t));
                compared += 1;
                let agree = match (&pg, &ours) {
                    (Ok(p), Ok(o)) => p == o,
                    (Err(p), Err(o)) => o.contains(p.as_str()),
                    _ => false,
                };
                if !agree {
                    mismatches.push(format!("{expr}: pg {pg:?}, ours {ours:?}"));
                }
            }
        }
    });
    eprintln!("numeric ^ numeric: {compared} cases compared");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} disagree with Postgres:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// PG's text for a numeric literal as `numeric_text` returns it (which may use an exponent).
fn pg_numeric_text(lit: &str) -> String {
    let Some((mant, exp)) = lit.split_once(['e', 'E']) else {
        return lit.to_owned();
    };
    let exp: i64 = exp.parse().expect("exponent");
    let (neg, mant) = mant.strip_prefix('-').map_or((false, mant), |m| (true, m));
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let digits = format!("{int}{frac}");
    let point = i64::try_from(int.len()).expect("len") + exp;
    let scale = (i64::try_from(frac.len()).expect("len") - exp).max(0);
    let (ip, fp) = if point <= 0 {
        (
            "0".to_owned(),
            format!(
                "{}{digits}",
                "0".repeat(usize::try_from(-point).expect("pad"))
            ),
        )
    } else if point >= i64::try_from(digits.len()).expect("len") {
        (
            format!(
                "{digits}{}",
                "0".repeat(usize::try_from(point).expect("pad") - digits.len())
            ),
            String::new(),
        )
    } else {
        let p = usize::try_from(point).expect("point");
        (digits[..p].to_owned(), digits[p..].to_owned())
    };
    let ip = ip.trim_start_matches('0');
    let ip = if ip.is_empty() { "0" } else { ip };
    let mut fp = fp;
    fp.truncate(usize::try_from(scale).expect("scale"));
    while fp.len() < usize::try_from(scale).expect("scale") {
        fp.push('0');
    }
    let sign = if neg { "-" } else { "" };
    if fp.is_empty() {
        format!("{sign}{ip}")
    } else {
        format!("{sign}{ip}.{fp}")
    }
}

mod templates;
