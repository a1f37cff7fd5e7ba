//! The routing index: which shapes may a row change affect?
//!
//! Per table, each shape is registered under the index conditions its where clause implies
//! (see `where_clause::index`), one structure per condition kind, so a change's cost does not
//! grow with the number of shapes:
//! * equality (`col = c`, `IN`, ORs): `(column, key type) → key → shapes`, one hash lookup
//!   per indexed `(column, type)` of the table;
//! * ranges (`< <= > >=`, `BETWEEN`): per `(column, key type)` a stabbing index of intervals
//!   ([`stabbing::Intervals`]), O(log² n + matches) per lookup;
//! * `LIKE 'prefix%'`: per column, prefix → shapes, one hash lookup per distinct prefix
//!   length;
//! * `IS NULL`: per column, the shapes to visit when the value is NULL;
//! * array containment (`col @> '{a,b}'`, `'a' = ANY(col)`, `col && '{a,b}'`): per
//!   `(column, element key type)`, element → shapes requiring it (each shape filed under one
//!   of its required elements, the others checked on lookup): one hash lookup per distinct
//!   element of the row's array;
//! * json paths (`data->>'kind' = 'x'`, `data->'a'->>'b' = …`): per (column, path), the text
//!   at the path → shapes; one parse of the value and one hash lookup per indexed path;
//! * other `LIKE`/`ILIKE` patterns (`title ILIKE '%needle%'`): per (column, case folding), an
//!   Aho-Corasick automaton over each pattern's longest literal run; one pass over the value.
//!
//! Shapes that cannot be indexed (or have no where clause) are kept in a residual list that
//! every change of the table visits; their clauses are compiled once and only evaluated by
//! the consumer.
//!
//! Invariant: the router may return extra shapes (each is re-checked by the full evaluator), it
//! never misses one. A row value whose key cannot be computed routes to every shape indexed on
//! that `(column, key type)`.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::where_clause::{
    Condition, IndexEntry, IndexKey, JsonStep, KeyType, Undecodable, array_keys, contains_fragment,
    index_key, json_path_text, range_key,
};

/// A shape's slot number in the pipeline.
pub type ShapeId = u32;

#[derive(Debug, Default)]
struct EqGroup {
    by_key: HashMap<IndexKey, Ids>,
    /// Every shape in the group, for rows whose value does not parse to a key.
    all: HashSet<ShapeId>,
}

/// The shapes filed under one equality key. Usually one (`tenant = 7`), so it is kept inline: a
/// one-element `Vec` would cost every such shape its own allocation.
#[derive(Debug)]
enum Ids {
    One(ShapeId),
    Many(Vec<ShapeId>),
}

impl Ids {
    fn as_slice(&self) -> &[ShapeId] {
        match self {
            Ids::One(id) => std::slice::from_ref(id),
            Ids::Many(v) => v,
        }
    }

    fn add(&mut self, id: ShapeId) {
        match self {
            Ids::One(x) if *x == id => {}
            Ids::One(x) => *self = Ids::Many(vec![*x, id]),
            Ids::Many(v) => {
                if !v.contains(&id) {
                    v.push(id);
                }
            }
        }
    }

    /// Removes `id`; true when no shape is left.
    fn remove(&mut self, id: ShapeId) -> bool {
        match self {
            Ids::One(x) => *x == id,
            Ids::Many(v) => {
                v.retain(|&s| s != id);
                match v.as_slice() {
                    [] => true,
                    &[last] => {
                        *self = Ids::One(last);
                        false
                    }
                    _ => false,
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct RangeGroup {
    intervals: stabbing::Intervals,
    all: HashSet<ShapeId>,
}

#[derive(Debug, Default)]
struct PrefixGroup {
    by_prefix: HashMap<String, Vec<ShapeId>>,
    /// Distinct prefix byte lengths → number of prefixes of that length.
    lengths: BTreeMap<usize, usize>,
}

/// A shape filed under one of its required elements, with the others it also requires.
type FiledShape = (ShapeId, Box<[IndexKey]>);

/// Array containment (`col @> const`, `c = ANY(col)`, `col && const`): each shape is filed
/// under one element it requires, with the other required elements checked on lookup.
#[derive(Debug, Default)]
struct ContainsGroup {
    by_elem: HashMap<IndexKey, Vec<FiledShape>>,
    /// Every shape in the group, for rows whose array does not parse.
    all: HashSet<ShapeId>,
}

/// `col ->…->> path = 'v'`: per (column, json or jsonb, path), the text at the path → shapes.
#[derive(Debug, Default)]
struct JsonGroup {
    by_value: HashMap<String, Vec<ShapeId>>,
    all: HashSet<ShapeId>,
}

/// `col LIKE/ILIKE '%frag%…'`: shapes filed under the longest literal run of their pattern.
///
/// Aho-Corasick automata over the group's fragments find every fragment a value contains in one
/// pass over the value per automaton, so the cost per change does not grow with the number of
/// shapes but with the number of automata, kept logarithmic (the logarithmic method, as for the
/// interval trees below): new fragments wait in `pending` (at most [`PENDING_MAX`], checked one
/// by one), then become an automaton of their own, and automata of similar size are merged.
/// Removed fragments are skipped on lookup (`by_fragment` no longer has them) until they
/// outnumber the live ones, when everything is rebuilt into one automaton. Each fragment is
/// rebuilt O(log n) times over its life.
#[derive(Debug, Default)]
struct SubstringGroup {
    by_fragment: HashMap<String, Vec<ShapeId>>,
    /// Automata, largest first, each with the fragment of each of its pattern ids.
    levels: Vec<(aho_corasick::AhoCorasick, Vec<String>)>,
    pending: Vec<String>,
    /// Fragments in `levels` no longer in `by_fragment`.
    dead: usize,
}

const PENDING_MAX: usize = 32;

impl SubstringGroup {
    fn add(&mut self, fragment: &str, id: ShapeId, case_insensitive: bool) {
        let v = self.by_fragment.entry(fragment.to_owned()).or_default();
        if v.is_empty() {
            self.pending.push(fragment.to_owned());
        }
        if !v.contains(&id) {
            v.push(id);
        }
        if self.pending.len() >= PENDING_MAX {
            let fresh = std::mem::take(&mut self.pending);
            self.push_level(fresh, case_insensitive);
        }
    }

    fn remove(&mut self, fragment: &str, id: ShapeId, case_insensitive: bool) {
        let Some(v) = self.by_fragment.get_mut(fragment) else {
            return;
        };
        v.retain(|&s| s != id);
        if !v.is_empty() {
            return;
        }
        self.by_fragment.remove(fragment);
        if let Some(i) = self.pending.iter().position(|f| f == fragment) {
            self.pending.swap_remove(i);
            return;
        }
        self.dead += 1;
        if self.dead > PENDING_MAX && self.dead > self.by_fragment.len() {
            // Mostly dead: rebuild from the live fragments only.
            self.levels.clear();
            self.pending.clear();
            self.dead = 0;
            let live: Vec<String> = self.by_fragment.keys().cloned().collect();
            self.push_level(live, case_insensitive);
        }
    }

    /// Adds an automaton over `fragments`, merging it with the smaller levels it outgrows.
    fn push_level(&mut self, mut fragments: Vec<String>, case_insensitive: bool) {
        while let Some((_, last)) = self.levels.last() {
            if last.len() > 2 * fragments.len() {
                break;
            }
            if let Some((_, mut merged)) = self.levels.pop() {
                let before = merged.len();
                // Dropping dead fragments while merging keeps `dead` an upper bound.
                merged.retain(|f| self.by_fragment.contains_key(f));
                self.dead = self.dead.saturating_sub(before - merged.len());
                merged.append(&mut fragments);
                fragments = merged;
            }
        }
        if fragments.is_empty() {
            return;
        }
        let built = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(case_insensitive)
            .build(&fragments);
        match built {
            Ok(ac) => self.levels.push((ac, fragments)),
            // Too large for an automaton: keep the fragments on the linear path. Correct, only
            // slower.
            Err(_) => self.pending.extend(fragments),
        }
    }

    fn is_empty(&self) -> bool {
        self.by_fragment.is_empty()
    }

    fn candidates(&self, text: &str, case_insensitive: bool, out: &mut Vec<ShapeId>) {
        for (ac, fragments) in &self.levels {
            for m in ac.find_overlapping_iter(text) {
                if let Some(ids) = fragments
                    .get(m.pattern().as_usize())
                    .and_then(|f| self.by_fragment.get(f))
                {
                    out.extend_from_slice(ids);
                }
            }
        }
        for f in &self.pending {
            if contains_fragment(text, f, case_insensitive)
                && let Some(ids) = self.by_fragment.get(f)
            {
                out.extend_from_slice(ids);
            }
        }
    }
}

/// What a shape was registered with: its index entries (`None`: residual) and the serials of
/// its intervals.
type Registration = (Option<Box<[IndexEntry]>>, Box<[u64]>);

#[derive(Debug, Default)]
struct TableRoutes {
    eq: HashMap<(usize, KeyType), EqGroup>,
    ranges: HashMap<(usize, KeyType), RangeGroup>,
    prefixes: HashMap<usize, PrefixGroup>,
    nulls: HashMap<usize, HashSet<ShapeId>>,
    contains: HashMap<(usize, KeyType), ContainsGroup>,
    json: HashMap<(usize, bool, Vec<JsonStep>), JsonGroup>,
    /// Keyed by (column, case-insensitive).
    substrings: HashMap<(usize, bool), SubstringGroup>,
    residual: HashSet<ShapeId>,
    /// Index entries each shape was registered with, and the serials of its intervals.
    /// Exact-size slices: one per shape, kept for as long as the shape lives.
    registered: HashMap<ShapeId, Registration>,
}

/// Routing index over all tables, keyed by relation oid.
#[derive(Debug, Default)]
pub struct Router {
    tables: HashMap<u32, TableRoutes>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds a shape on table `oid`. `entries` is the where clause's index condition
    /// (`None` = not indexable, evaluate for every change). Adding an id twice replaces it.
    pub fn add(&mut self, oid: u32, id: ShapeId, entries: Option<Vec<IndexEntry>>) {
        self.remove(oid, id);
        let t = self.tables.entry(oid).or_default();
        let mut serials = Vec::new();
        match &entries {
            // An empty list means "never matches": nothing to register but the shape itself.
            Some(es) => {
                for e in es {
                    match &e.cond {
                        Condition::Eq(key) => {
                            let g = t.eq.entry((e.column, e.key_type)).or_default();
                            g.by_key
                                .entry(key.clone())
                                .and_modify(|v| v.add(id))
                                .or_insert(Ids::One(id));
                            g.all.insert(id);
                        }
                        Condition::Range { lo, hi } => {
                            let g = t.ranges.entry((e.column, e.key_type)).or_default();
                            serials.push(g.intervals.insert(lo.clone(), hi.clone(), id));
                            g.all.insert(id);
                        }
                        Condition::Prefix(p) => {
                            let g = t.prefixes.entry(e.column).or_default();
                            let v = g.by_prefix.entry(p.clone()).or_default();
                            if v.is_empty() {
                                *g.lengths.entry(p.len()).or_default() += 1;
                            }
                            if !v.contains(&id) {
                                v.push(id);
                            }
                        }
                        Condition::IsNull => {
                            t.nulls.entry(e.column).or_default().insert(id);
                        }
                        Condition::Substring {
                            fragment,
                            case_insensitive,
                        } => {
                            t.substrings
                                .entry((e.column, *case_insensitive))
                                .or_default()
                                .add(fragment, id, *case_insensitive);
                        }
                        Condition::JsonPath { jsonb, path, value } => {
                            let g = t.json.entry((e.column, *jsonb, path.clone())).or_default();
                            let v = g.by_value.entry(value.clone()).or_default();
                            if !v.contains(&id) {
                                v.push(id);
                            }
                            g.all.insert(id);
                        }
                        Condition::Contains(keys) => {
                            let Some((first, rest)) = keys.split_first() else {
                                continue;
                            };
                            let g = t.contains.entry((e.column, e.key_type)).or_default();
                            let v = g.by_elem.entry(first.clone()).or_default();
                            if !v.iter().any(|(s, r)| *s == id && **r == *rest) {
                                v.push((id, rest.into()));
                            }
                            g.all.insert(id);
                        }
                    }
                }
            }
            None => {
                t.residual.insert(id);
            }
        }
        t.registered.insert(
            id,
            (
                entries.map(Vec::into_boxed_slice),
                serials.into_boxed_slice(),
            ),
        );
    }

    /// Removes a shape.
    pub fn remove(&mut self, oid: u32, id: ShapeId) {
        let Some(t) = self.tables.get_mut(&oid) else {
            return;
        };
        let Some((entries, serials)) = t.registered.remove(&id) else {
            return;
        };
        t.residual.remove(&id);
        let mut serials = serials.into_iter();
        for e in entries.into_iter().flatten() {
            match e.cond {
                Condition::Eq(key) => {
                    if let Some(g) = t.eq.get_mut(&(e.column, e.key_type)) {
                        if g.by_key.get_mut(&key).is_some_and(|v| v.remove(id)) {
                            g.by_key.remove(&key);
                        }
                        g.all.remove(&id);
                        if g.all.is_empty() {
                            t.eq.remove(&(e.column, e.key_type));
                        }
                    }
                }
                Condition::Range { .. } => {
                    if let Some(g) = t.ranges.get_mut(&(e.column, e.key_type)) {
                        if let Some(serial) = serials.next() {
                            g.intervals.remove(serial);
                        }
                        g.all.remove(&id);
                        if g.all.is_empty() {
                            t.ranges.remove(&(e.column, e.key_type));
                        }
                    }
                }
                Condition::Prefix(p) => {
                    if let Some(g) = t.prefixes.get_mut(&e.column) {
                        if let Some(v) = g.by_prefix.get_mut(&p) {
                            v.retain(|&s| s != id);
                            if v.is_empty() {
                                g.by_prefix.remove(&p);
                                if let Some(n) = g.lengths.get_mut(&p.len()) {
                                    *n -= 1;
                                    if *n == 0 {
                                        g.lengths.remove(&p.len());
                                    }
                                }
                            }
                        }
                        if g.by_prefix.is_empty() {
                            t.prefixes.remove(&e.column);
                        }
                    }
                }
                Condition::Substring {
                    fragment,
                    case_insensitive,
                } => {
                    let k = (e.column, case_insensitive);
                    if let Some(g) = t.substrings.get_mut(&k) {
                        g.remove(&fragment, id, case_insensitive);
                        if g.is_empty() {
                            t.substrings.remove(&k);
                        }
                    }
                }
                Condition::IsNull => {
                    if let Some(set) = t.nulls.get_mut(&e.column) {
                        set.remove(&id);
                        if set.is_empty() {
                            t.nulls.remove(&e.column);
                        }
                    }
                }
                Condition::JsonPath { jsonb, path, value } => {
                    let k = (e.column, jsonb, path);
                    if let Some(g) = t.json.get_mut(&k) {
                        if let Some(v) = g.by_value.get_mut(&value) {
                            v.retain(|&s| s != id);
                            if v.is_empty() {
                                g.by_value.remove(&value);
                            }
                        }
                        g.all.remove(&id);
                        if g.all.is_empty() {
                            t.json.remove(&k);
                        }
                    }
                }
                Condition::Contains(keys) => {
                    let Some(first) = keys.first() else { continue };
                    if let Some(g) = t.contains.get_mut(&(e.column, e.key_type)) {
                        if let Some(v) = g.by_elem.get_mut(first) {
                            v.retain(|(s, _)| *s != id);
                            if v.is_empty() {
                                g.by_elem.remove(first);
                            }
                        }
                        g.all.remove(&id);
                        if g.all.is_empty() {
                            t.contains.remove(&(e.column, e.key_type));
                        }
                    }
                }
            }
        }
        if t.registered.is_empty() {
            self.tables.remove(&oid);
        }
    }

    /// Whether any shape lives on table `oid`.
    pub fn has_table(&self, oid: u32) -> bool {
        self.tables.contains_key(&oid)
    }

    /// Every shape on table `oid`.
    pub fn shapes_of(&self, oid: u32) -> Vec<ShapeId> {
        self.tables
            .get(&oid)
            .map(|t| t.registered.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Appends to `out` the shapes that may be affected by a change whose row images are `rows`
    /// (one for insert/delete, old and new for update). `out` is sorted and de-duplicated.
    pub fn candidates(&self, oid: u32, rows: &[&[Option<&str>]], out: &mut Vec<ShapeId>) {
        out.clear();
        let Some(t) = self.tables.get(&oid) else {
            return;
        };
        out.extend(&t.residual);
        for row in rows {
            let cell = |col: usize| row.get(col).copied().flatten();
            for (&(col, kt), g) in &t.eq {
                // NULL never equals a constant: no shape of this group can match on it.
                let Some(text) = cell(col) else { continue };
                match index_key(kt, text) {
                    Some(k) => {
                        if let Some(v) = g.by_key.get(&k) {
                            out.extend_from_slice(v.as_slice());
                        }
                    }
                    None => out.extend(&g.all),
                }
            }
            for (&(col, kt), g) in &t.ranges {
                let Some(text) = cell(col) else { continue };
                match range_key(kt, text) {
                    Some(k) => g.intervals.stab(&k, out),
                    None => out.extend(&g.all),
                }
            }
            for (&col, g) in &t.prefixes {
                let Some(text) = cell(col) else { continue };
                for &len in g.lengths.keys() {
                    let Some(prefix) = text.get(..len) else {
                        // Longer than the text (or not on a char boundary): no such prefix.
                        continue;
                    };
                    if let Some(v) = g.by_prefix.get(prefix) {
                        out.extend_from_slice(v);
                    }
                }
            }
            for (&(col, ci), g) in &t.substrings {
                // NULL LIKE anything is NULL: never a match.
                let Some(text) = cell(col) else { continue };
                g.candidates(text, ci, out);
            }
            for (&col, set) in &t.nulls {
                if row.get(col).is_some_and(Option::is_none) {
                    out.extend(set);
                }
            }
            for ((col, jsonb, path), g) in &t.json {
                let Some(text) = cell(*col) else { continue };
                match json_path_text(*jsonb, path, text) {
                    Ok(Some(v)) => {
                        if let Some(ids) = g.by_value.get(&v) {
                            out.extend_from_slice(ids);
                        }
                    }
                    Ok(None) => {}
                    Err(Undecodable) => out.extend(&g.all),
                }
            }
            for (&(col, kt), g) in &t.contains {
                // A NULL array contains nothing.
                let Some(text) = cell(col) else { continue };
                let Some(mut keys) = array_keys(kt, text) else {
                    out.extend(&g.all);
                    continue;
                };
                if keys.len() > 16 {
                    let mut seen = HashSet::with_capacity(keys.len());
                    keys.retain(|k| seen.insert(k.clone()));
                } else {
                    let mut i = 0;
                    while i < keys.len() {
                        if keys[..i].contains(&keys[i]) {
                            keys.swap_remove(i);
                        } else {
                            i += 1;
                        }
                    }
                }
                let present: HashSet<&IndexKey> = if keys.len() > 16 {
                    keys.iter().collect()
                } else {
                    HashSet::new()
                };
                let has = |k: &IndexKey| {
                    if present.is_empty() {
                        keys.contains(k)
                    } else {
                        present.contains(k)
                    }
                };
                for k in &keys {
                    if let Some(v) = g.by_elem.get(k) {
                        for (id, rest) in v {
                            if rest.iter().all(&has) {
                                out.push(*id);
                            }
                        }
                    }
                }
            }
        }
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

/// A dynamic stabbing index: which intervals `[lo, hi]` contain a point?
///
/// Static centered interval trees (O(log n + matches) per query) combined by the
/// logarithmic method: an insert adds a one-interval tree and merges trees of similar size,
/// so there are O(log n) trees and each interval is rebuilt O(log n) times. Removal marks the
/// interval's serial dead; when the dead outnumber the live, everything is rebuilt.
mod stabbing {
    use std::collections::HashSet;

    use super::ShapeId;
    use crate::shape::where_clause::RangeKey;

    #[derive(Debug, Clone)]
    struct Interval {
        lo: RangeKey,
        hi: RangeKey,
        id: ShapeId,
        serial: u64,
    }

    #[derive(Debug)]
    struct Node {
        center: RangeKey,
        /// Intervals containing `center`, by ascending `lo`.
        by_lo: Vec<usize>,
        /// The same, by descending `hi`.
        by_hi: Vec<usize>,
        left: Option<usize>,
        right: Option<usize>,
    }

    #[derive(Debug)]
    struct Tree {
        items: Vec<Interval>,
        nodes: Vec<Node>,
        root: Option<usize>,
    }

    impl Tree {
        fn build(items: Vec<Interval>) -> Tree {
            let mut tree = Tree {
                items,
                nodes: Vec::new(),
                root: None,
            };
            let all: Vec<usize> = (0..tree.items.len()).collect();
            tree.root = tree.build_node(all);
            tree
        }

        fn build_node(&mut self, idx: Vec<usize>) -> Option<usize> {
            if idx.is_empty() {
                return None;
            }
            let mut endpoints: Vec<&RangeKey> = idx
                .iter()
                .flat_map(|&i| [&self.items[i].lo, &self.items[i].hi])
                .collect();
            let mid = endpoints.len() / 2;
            let center = endpoints.select_nth_unstable(mid).1.clone();
            let (mut here, mut left, mut right) = (Vec::new(), Vec::new(), Vec::new());
            for i in idx {
                let it = &self.items[i];
                if it.hi < center {
                    left.push(i);
                } else if it.lo > center {
                    right.push(i);
                } else {
                    here.push(i);
                }
            }
            let mut by_lo = here.clone();
            by_lo.sort_by(|&a, &b| self.items[a].lo.cmp(&self.items[b].lo));
            let mut by_hi = here;
            by_hi.sort_by(|&a, &b| self.items[b].hi.cmp(&self.items[a].hi));
            let left = self.build_node(left);
            let right = self.build_node(right);
            self.nodes.push(Node {
                center,
                by_lo,
                by_hi,
                left,
                right,
            });
            Some(self.nodes.len() - 1)
        }

        fn stab(&self, x: &RangeKey, dead: &HashSet<u64>, out: &mut Vec<ShapeId>) {
            let mut cursor = self.root;
            while let Some(n) = cursor {
                let node = &self.nodes[n];
                let mut emit = |i: usize| {
                    let it = &self.items[i];
                    if dead.is_empty() || !dead.contains(&it.serial) {
                        out.push(it.id);
                    }
                };
                match x.cmp(&node.center) {
                    std::cmp::Ordering::Less => {
                        for &i in &node.by_lo {
                            if self.items[i].lo > *x {
                                break;
                            }
                            emit(i);
                        }
                        cursor = node.left;
                    }
                    std::cmp::Ordering::Greater => {
                        for &i in &node.by_hi {
                            if self.items[i].hi < *x {
                                break;
                            }
                            emit(i);
                        }
                        cursor = node.right;
                    }
                    std::cmp::Ordering::Equal => {
                        node.by_lo.iter().for_each(|&i| emit(i));
                        cursor = None;
                    }
                }
            }
        }
    }

    #[derive(Debug, Default)]
    pub(super) struct Intervals {
        /// Sizes decrease along the vector (by at least half each step).
        trees: Vec<Tree>,
        dead: HashSet<u64>,
        live: usize,
        next_serial: u64,
    }

    impl Intervals {
        /// Adds `[lo, hi]` for `id`; returns the serial to remove it with.
        pub fn insert(&mut self, lo: RangeKey, hi: RangeKey, id: ShapeId) -> u64 {
            let serial = self.next_serial;
            self.next_serial += 1;
            self.live += 1;
            let mut carry = vec![Interval { lo, hi, id, serial }];
            while let Some(last) = self.trees.last() {
                if last.items.len() > carry.len() * 2 {
                    break;
                }
                if let Some(t) = self.trees.pop() {
                    carry.extend(t.items);
                }
            }
            carry.retain(|it| !self.dead.contains(&it.serial));
            self.trees.push(Tree::build(carry));
            serial
        }

        pub fn remove(&mut self, serial: u64) {
            if serial >= self.next_serial || !self.dead.insert(serial) {
                return;
            }
            self.live = self.live.saturating_sub(1);
            if self.dead.len() > self.live.max(32) {
                let items: Vec<Interval> = self
                    .trees
                    .drain(..)
                    .flat_map(|t| t.items)
                    .filter(|it| !self.dead.contains(&it.serial))
                    .collect();
                self.dead.clear();
                if !items.is_empty() {
                    self.trees.push(Tree::build(items));
                }
            }
        }

        /// Appends the ids of the live intervals containing `x`.
        pub fn stab(&self, x: &RangeKey, out: &mut Vec<ShapeId>) {
            for t in &self.trees {
                t.stab(x, &self.dead, out);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn stabbing_equals_brute_force(
                intervals in prop::collection::vec((0i64..50, 0i64..50), 0..200),
                removals in prop::collection::vec(any::<prop::sample::Index>(), 0..100),
                points in prop::collection::vec(-1i64..52, 1..20),
            ) {
                let mut index = Intervals::default();
                let mut live = Vec::new();
                for (i, (a, b)) in intervals.iter().enumerate() {
                    let (lo, hi) = (RangeKey::Num(*a.min(b)), RangeKey::Num(*a.max(b)));
                    let id = u32::try_from(i).unwrap();
                    let serial = index.insert(lo.clone(), hi.clone(), id);
                    live.push(Some((lo, hi, id, serial)));
                }
                for r in removals {
                    if live.is_empty() { break; }
                    let k = r.index(live.len());
                    if let Some((_, _, _, serial)) = live[k].take() {
                        index.remove(serial);
                    }
                }
                for p in points {
                    let x = RangeKey::Num(p);
                    let mut got = Vec::new();
                    index.stab(&x, &mut got);
                    got.sort_unstable();
                    let mut want: Vec<u32> = live.iter().flatten()
                        .filter(|(lo, hi, _, _)| *lo <= x && x <= *hi)
                        .map(|(_, _, id, _)| *id).collect();
                    want.sort_unstable();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::shape::where_clause::{Column, Schema, WhereClause};

    #[test]
    fn ids_under_a_key_go_from_one_to_many_and_back() {
        let mut ids = Ids::One(1);
        ids.add(1);
        assert_eq!(ids.as_slice(), &[1]);
        ids.add(2);
        ids.add(3);
        assert_eq!(ids.as_slice(), &[1, 2, 3]);
        assert!(!ids.remove(9));
        assert!(!ids.remove(1));
        assert!(!ids.remove(3));
        assert!(matches!(ids, Ids::One(2)));
        assert!(!ids.remove(1), "another id leaves the last one");
        assert!(ids.remove(2));
    }

    fn schema() -> Schema {
        let col = |name: &str, ty: &str| Column {
            name: name.into(),
            type_name: ty.into(),
            array_dims: 0,
            enum_labels: None,
            not_null: false,
        };
        Schema {
            columns: vec![
                col("id", "int4"),
                col("tenant", "int4"),
                col("score", "float8"),
                col("title", "text"),
                Column {
                    array_dims: 1,
                    ..col("tags", "text")
                },
            ],
        }
    }

    fn clause() -> impl Strategy<Value = String> {
        prop_oneof![
            (0i32..6).prop_map(|k| format!("tenant = {k}")),
            (0i32..6, 0i32..6).prop_map(|(a, b)| format!("tenant IN ({a}, {b})")),
            (0i32..6).prop_map(|k| format!("score = {k}")),
            (0i32..6, 0i32..6).prop_map(|(a, b)| format!("tenant = {a} OR score = {b}")),
            (0i32..6).prop_map(|k| format!("tenant = {k} AND title LIKE 'a%'")),
            (0i32..6).prop_map(|k| format!("tenant > {k}")),
            (0i32..6).prop_map(|k| format!("{k} >= tenant")),
            (0i32..6, 0i32..6).prop_map(|(a, b)| format!("tenant BETWEEN {a} AND {b}")),
            (0i32..6, 0i32..6).prop_map(|(a, b)| format!("score > {a} AND score < {b}")),
            (0i32..6).prop_map(|k| format!("score <= {k}.5 OR tenant IS NULL")),
            prop::sample::select(vec!["a%", "ab%", "b_", "%a", "a"])
                .prop_map(|p| format!("title LIKE '{p}'")),
            (
                prop::sample::select(vec![
                    "%a%", "%ab%", "%b_a%", "%A%", "_B%", "a%b", "%%", "\\%a%"
                ]),
                prop::bool::ANY,
            )
                .prop_map(|(p, ci)| format!("title {} '{p}'", if ci { "ILIKE" } else { "LIKE" })),
            (0i32..6).prop_map(|k| format!("title >= 'a' AND tenant < {k}")),
            Just("title IS NULL".to_owned()),
            prop::sample::select(vec!["{a}", "{a,b}", "{b,a,a}", "{c}", "{}", "{a,NULL}"])
                .prop_map(|a| format!("tags @> '{a}'")),
            prop::sample::select(vec!["a", "b", "c"]).prop_map(|e| format!("'{e}' = ANY(tags)")),
            prop::sample::select(vec!["{a}", "{a,c}", "{}"]).prop_map(|a| format!("tags && '{a}'")),
            (0i32..6).prop_map(|k| format!("tenant = {k} AND '{{a}}' <@ tags")),
        ]
    }

    fn value() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            (0i32..6).prop_map(|k| Some(k.to_string())),
            (0i32..6).prop_map(|k| Some(format!("{k}.0"))),
        ]
    }

    fn tags() -> impl Strategy<Value = Option<&'static str>> {
        prop::sample::select(vec![
            None,
            Some("{a}"),
            Some("{a,b}"),
            Some("{b,NULL}"),
            Some("{}"),
            Some("{{a,c},{b,a}}"),
            Some("{\"a\",\"c\"}"),
            Some("not an array"),
        ])
    }

    proptest! {
        /// The router may return extra shapes, never miss one; removal really removes.
        #[test]
        fn never_misses_a_matching_shape(
            clauses in proptest::collection::vec(clause(), 1..30),
            rows in proptest::collection::vec((value(), value(), proptest::option::of("[abAB%]{0,4}"), tags()), 1..20),
        ) {
            let schema = schema();
            let mut router = Router::new();
            let compiled: Vec<WhereClause> =
                clauses.iter().map(|c| WhereClause::compile(c, &[], &schema).unwrap()).collect();
            for (id, w) in compiled.iter().enumerate() {
                router.add(7, u32::try_from(id).unwrap(), w.index_entries());
            }
            let mut out = Vec::new();
            for (tenant, score, title, tags) in &rows {
                let tenant = tenant.as_ref().map(|t| t.split('.').next().unwrap_or("0").to_owned());
                let row: Vec<Option<&str>> = vec![Some("1"), tenant.as_deref(), score.as_deref(), title.as_deref(), *tags];
                router.candidates(7, &[&row], &mut out);
                for (id, w) in compiled.iter().enumerate() {
                    if w.matches(&row) {
                        prop_assert!(out.contains(&u32::try_from(id).unwrap()), "missed {} for {:?}", clauses[id], row);
                    }
                }
            }
            for id in 0..compiled.len() {
                router.remove(7, u32::try_from(id).unwrap());
            }
            prop_assert!(!router.has_table(7));
        }
    }

    #[test]
    fn substring_shapes_are_found_through_the_automaton_across_churn() {
        let schema = schema();
        let mut router = Router::new();
        let clause = |k: u32| {
            if k.is_multiple_of(2) {
                format!("title ILIKE '%K{k}z%'")
            } else {
                format!("title LIKE '%k{k}z_%'")
            }
        };
        // Enough shapes to cross every rebuild threshold several times, then remove two
        // thirds (more dead fragments than live), interleaving lookups.
        for k in 0..3_000u32 {
            let w = WhereClause::compile(&clause(k), &[], &schema).unwrap();
            router.add(1, k, w.index_entries());
        }
        let mut out = Vec::new();
        let mut check = |router: &Router, live: &dyn Fn(u32) -> bool| {
            for k in (0..3_000u32).step_by(7) {
                let title = format!("row k{k}z!");
                router.candidates(1, &[&[Some("1"), None, None, Some(&title), None]], &mut out);
                let want: Vec<u32> = if live(k) { vec![k] } else { vec![] };
                assert_eq!(out, want, "{title}");
            }
        };
        check(&router, &|_| true);
        for k in (0..3_000u32).filter(|k| !k.is_multiple_of(3)) {
            router.remove(1, k);
        }
        check(&router, &|k| k.is_multiple_of(3));
        for k in (0..3_000u32).filter(|k| k.is_multiple_of(3)) {
            router.remove(1, k);
        }
        assert!(!router.has_table(1));
    }

    #[test]
    fn equality_shapes_are_found_by_lookup_not_scan() {
        let schema = schema();
        let mut router = Router::new();
        for k in 0..10_000u32 {
            let w = WhereClause::compile(&format!("tenant = {k}"), &[], &schema).unwrap();
            router.add(1, k, w.index_entries());
        }
        let mut out = Vec::new();
        router.candidates(1, &[&[Some("1"), Some("4242"), None, None, None]], &mut out);
        assert_eq!(out, vec![4242]);
        router.candidates(
            1,
            &[&[Some("1"), Some("99999"), None, None, None]],
            &mut out,
        );
        assert!(out.is_empty());
        router.candidates(1, &[&[Some("1"), None, None, None, None]], &mut out);
        assert!(out.is_empty(), "NULL equals nothing");
    }

    #[test]
    fn containment_shapes_are_found_by_element_lookup() {
        let schema = schema();
        let mut router = Router::new();
        for k in 0..10_000u32 {
            let text = if k % 2 == 0 {
                format!("tags @> '{{t{k},common}}'")
            } else {
                format!("'t{k}' = ANY(tags)")
            };
            let w = WhereClause::compile(&text, &[], &schema).unwrap();
            router.add(1, k, w.index_entries());
        }
        let mut out = Vec::new();
        let row = |tags| [Some("1"), None, None, None, Some(tags)];
        router.candidates(1, &[&row("{t42,x,common}")], &mut out);
        assert_eq!(out, vec![42]);
        router.candidates(1, &[&row("{t42,t43}")], &mut out);
        assert_eq!(out, vec![43], "t42 also needs 'common'");
        router.candidates(1, &[&row("{}")], &mut out);
        assert!(out.is_empty());
        router.candidates(1, &[&row("{unparsable")], &mut out);
        assert_eq!(out.len(), 10_000, "an undecodable array may match anything");
        for k in 0..10_000u32 {
            router.remove(1, k);
        }
        assert!(!router.has_table(1));
    }
}
