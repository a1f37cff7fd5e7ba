//! Subquery dependencies: the materialised result of each distinct inner SELECT
//! (`x IN (SELECT c FROM t WHERE w)`), kept in stream order, and the rule that turns a change of
//! its membership into the invalidation of the shapes that depend on it.
//!
//! A dependency D = (inner table, inner where, selected columns), de-duplicated across shapes
//! by [`Subquery::identity`], holds the multiset of selected tuples (a shared
//! [`SubquerySet`] every dependent clause is bound to). It is created like a shape
//! (shape-semantics.md §6.1): registered here first (changes to its table are *buffered*), then
//! the snapshot `SELECT cols FROM t WHERE w` is taken in a REPEATABLE READ transaction, loaded,
//! and the buffered transactions not visible in that snapshot are applied. From then on every
//! change of the inner table is applied in stream order, before the outer shapes see the
//! changes that follow it, so an outer row is always evaluated against the set as of its
//! position in the stream.
//!
//! Invariants:
//! * A dependent is invalidated exactly when a tuple's count goes 0 → 1 or 1 → 0 in a
//!   transaction the dependent does not skip, unless the tuple holds a NULL and the dependent
//!   uses D only under positive polarity (such a tuple can only turn FALSE into NULL; see
//!   [`Polarity::affected_by`]). Changes that keep membership never invalidate anything.
//! * Shape dependents are invalidated with TRUNCATE's rule (the pipeline's), so a membership
//!   change already reflected in a shape's snapshot does not invalidate it.
//! * A dependency whose own set can no longer be trusted (its inner clause depends on a
//!   dependency that changed, a relation change of its table, an undecodable value, a
//!   missing old row) is *broken*: it is dropped and every dependent, transitively, is
//!   removed. A new request builds it again from a fresh snapshot.
//! * After a restart a dependency is rebuilt from a fresh snapshot before the stream resumes;
//!   replayed transactions visible in it are skipped, but if one touches a row matching the
//!   inner where (old or new), outer changes in the replay window may have been evaluated
//!   against a different set, so its dependents are invalidated (conservative).
//! * Routing: changes of an inner table reach only the dependencies whose inner where may
//!   match (the same [`Router`] the shapes use), so the cost is not O(dependencies).

use std::collections::HashMap;
use std::sync::Arc;

use super::router::{Router, ShapeId};
use super::table::TableInfo;
use super::where_clause::{Members, Move, Polarity, Subquery, SubquerySet, Tuple};
use crate::pg::snapshot::PgSnapshot;

pub type DepId = u32;

/// Who depends on a dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependent {
    Shape(ShapeId),
    Dep(DepId),
}

/// What the pipeline must do to a shape because a dependency changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Membership changed in the current transaction: invalidate the shape with TRUNCATE's
    /// rule (not if the transaction is visible in its snapshot).
    Invalidate(ShapeId),
    /// The dependency broke: the shape goes, whatever its snapshot.
    Remove(ShapeId),
}

type OwnedRow = Vec<Option<String>>;

#[derive(Debug, Default)]
struct BufferedTxn {
    xid: u32,
    changes: Vec<(Option<OwnedRow>, Option<OwnedRow>)>,
    truncate: bool,
    /// A dependency of this one changed membership in this transaction.
    invalidated: bool,
}

#[derive(Debug)]
struct Dep {
    sub: Arc<Subquery>,
    table: Arc<TableInfo>,
    set: Arc<SubquerySet>,
    /// `Some` until the snapshot is loaded: the transactions seen meanwhile.
    buffer: Option<Vec<BufferedTxn>>,
    current: BufferedTxn,
    filter: Option<PgSnapshot>,
    /// The filter comes from a rebuild at startup (see the module invariants).
    restart_window: bool,
    txn_mark: u64,
    skip: bool,
    /// Commit LSN of the last transaction applied to the set (replay after a reconnect).
    latest_tx: u64,
    dependents: Vec<(Dependent, Polarity)>,
    /// Creations between "dependency ready" and "shape registered" (keeps it alive).
    pins: u32,
    broken: bool,
}

impl Dep {
    /// Whether this (live) dependency skips the transaction: visible in its snapshot.
    fn decide(&mut self, lsn: u64, xid: u32) -> bool {
        if lsn <= self.latest_tx {
            return true;
        }
        if self.txn_mark != lsn {
            self.txn_mark = lsn;
            self.skip = self.filter.as_ref().is_some_and(|f| f.visible(xid));
            if !self.skip && self.filter.as_ref().is_some_and(|f| f.after(xid)) {
                self.filter = None;
                self.restart_window = false;
            }
        }
        self.skip
    }
}

/// Every live dependency, indexed by identity and by inner table.
#[derive(Debug, Default)]
pub struct Dependencies {
    deps: HashMap<DepId, Dep>,
    by_identity: HashMap<String, DepId>,
    router: Router,
    next_id: DepId,
    /// Dependencies that buffered something in the current transaction.
    touched: Vec<DepId>,
    candidates: Vec<DepId>,
}

/// Why a dependency could not be made ready.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DependencyError {
    #[error("a dependency of the subquery is gone")]
    Gone,
    #[error("the subquery's result changed while it was being loaded")]
    Broken,
}

/// The result of [`Dependencies::ensure`].
#[derive(Debug)]
pub struct Ensured {
    pub id: DepId,
    /// A new dependency: its snapshot must be taken and loaded with [`Dependencies::load`].
    pub needs_snapshot: bool,
}

impl Dependencies {
    pub fn new() -> Dependencies {
        Dependencies::default()
    }

    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    pub fn len(&self) -> usize {
        self.deps.len()
    }

    pub fn has_table(&self, oid: u32) -> bool {
        self.router.has_table(oid)
    }

    /// The live set of an identity, if any (for tests and introspection).
    pub fn set_of(&self, identity: &str) -> Option<Members> {
        let id = self.by_identity.get(identity)?;
        Some(self.deps.get(id)?.set.snapshot())
    }

    /// Finds or registers the dependency for `sub` (pinned until [`Dependencies::attach`]) and
    /// binds `sub` to its set. The subqueries of `sub`'s own where clause must be ensured
    /// (and loaded) first.
    pub fn ensure(
        &mut self,
        sub: &Arc<Subquery>,
        table: Arc<TableInfo>,
    ) -> Result<Ensured, DependencyError> {
        if let Some(&id) = self.by_identity.get(sub.identity())
            && let Some(dep) = self.deps.get(&id)
        {
            // Creations are serialised: one still loading was left by a failed creation.
            if dep.buffer.is_some() {
                return Err(DependencyError::Gone);
            }
            let set = dep.set.clone();
            sub.bind(set);
            if let Some(w) = &sub.where_clause
                && !self.bind_clause(w)
            {
                return Err(DependencyError::Gone);
            }
            if let Some(dep) = self.deps.get_mut(&id) {
                dep.pins += 1;
            }
            self.release_nested(sub);
            return Ok(Ensured {
                id,
                needs_snapshot: false,
            });
        }
        let inner = sub
            .where_clause
            .as_ref()
            .map(|w| w.subqueries())
            .unwrap_or_default();
        let mut nested = Vec::with_capacity(inner.len());
        for (s, pol) in &inner {
            let id = *self
                .by_identity
                .get(s.identity())
                .ok_or(DependencyError::Gone)?;
            let dep = self.deps.get(&id).ok_or(DependencyError::Gone)?;
            if dep.buffer.is_some() {
                return Err(DependencyError::Gone);
            }
            s.bind(dep.set.clone());
            nested.push((id, *pol));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        for (n, pol) in nested {
            if let Some(d) = self.deps.get_mut(&n) {
                d.dependents.push((Dependent::Dep(id), pol));
            }
        }
        self.release_nested(sub);
        let set = Arc::new(SubquerySet::default());
        sub.bind(set.clone());
        let entries = sub.where_clause.as_ref().and_then(|w| w.index_entries());
        self.router.add(sub.table.oid, id, entries);
        self.by_identity.insert(sub.identity().to_owned(), id);
        self.deps.insert(
            id,
            Dep {
                sub: sub.clone(),
                table,
                set,
                buffer: Some(Vec::new()),
                current: BufferedTxn::default(),
                filter: None,
                restart_window: false,
                txn_mark: 0,
                skip: false,
                latest_tx: 0,
                dependents: Vec::new(),
                pins: 1,
                broken: false,
            },
        );
        Ok(Ensured {
            id,
            needs_snapshot: true,
        })
    }

    /// The caller ensured (and pinned) `sub`'s own subqueries before `sub`; `sub` now holds
    /// them as their dependent, so those pins are released.
    fn release_nested(&mut self, sub: &Subquery) {
        for (s, _) in sub
            .where_clause
            .as_ref()
            .map(|w| w.subqueries())
            .unwrap_or_default()
        {
            if let Some(d) = self
                .by_identity
                .get(s.identity())
                .and_then(|id| self.deps.get_mut(id))
            {
                d.pins = d.pins.saturating_sub(1);
            }
        }
    }

    /// Drops a dependency whose snapshot could not be taken.
    pub fn abandon(&mut self, id: DepId) {
        if self.deps.get(&id).is_some_and(|d| d.buffer.is_some()) {
            self.drop_dep(id);
        }
    }

    /// Forgets every creation pin (startup, once every restored shape is attached).
    pub fn reset_pins(&mut self) {
        for d in self.deps.values_mut() {
            d.pins = 0;
        }
        self.collect_garbage();
    }

    /// Binds every subquery of a clause (recursively) to the live sets; false if one has no
    /// live dependency.
    pub fn bind_clause(&self, w: &super::where_clause::WhereClause) -> bool {
        for (s, _) in w.subqueries() {
            let Some(dep) = self
                .by_identity
                .get(s.identity())
                .and_then(|id| self.deps.get(id))
            else {
                return false;
            };
            s.bind(dep.set.clone());
            if let Some(inner) = &s.where_clause
                && !self.bind_clause(inner)
            {
                return false;
            }
        }
        true
    }

    /// Loads a new dependency's snapshot, then applies the buffered transactions it does not
    /// see. `restart`: the snapshot was taken at startup, before the stream resumed.
    pub fn load(
        &mut self,
        id: DepId,
        members: Members,
        snapshot: PgSnapshot,
        restart: bool,
    ) -> Result<Vec<Effect>, DependencyError> {
        let mut effects = Vec::new();
        let mut broken = Vec::new();
        let Some(dep) = self.deps.get_mut(&id) else {
            return Err(DependencyError::Gone);
        };
        dep.set.replace(members);
        let buffered = dep.buffer.take().unwrap_or_default();
        dep.filter = Some(snapshot);
        dep.restart_window = restart;
        dep.txn_mark = 0;
        let mut failed = dep.broken;
        for t in buffered {
            let Some(dep) = self.deps.get_mut(&id) else {
                break;
            };
            if dep.filter.as_ref().is_some_and(|f| f.visible(t.xid)) {
                continue;
            }
            if dep.filter.as_ref().is_some_and(|f| f.after(t.xid)) {
                dep.filter = None;
            }
            if t.invalidated {
                failed = true;
                break;
            }
            if t.truncate {
                let gone = dep.set.clear();
                let moves: Vec<(Tuple, Move)> = gone.into_iter().map(|t| (t, Move::Out)).collect();
                self.propagate(id, &moves, None, &mut effects, &mut broken);
            }
            for (old, new) in &t.changes {
                let old: Option<Vec<Option<&str>>> = old
                    .as_ref()
                    .map(|r| r.iter().map(Option::as_deref).collect());
                let new: Option<Vec<Option<&str>>> = new
                    .as_ref()
                    .map(|r| r.iter().map(Option::as_deref).collect());
                match self.apply_live(id, old.as_deref(), new.as_deref()) {
                    Some(moves) => self.propagate(id, &moves, None, &mut effects, &mut broken),
                    None => {
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                break;
            }
        }
        if failed {
            broken.push(id);
        }
        let was_broken = broken.contains(&id);
        self.break_all(broken, &mut effects);
        if was_broken {
            return Err(DependencyError::Broken);
        }
        Ok(effects)
    }

    /// Registers a dependent of the dependencies of `w` (and releases the creation pins).
    pub fn attach(
        &mut self,
        who: Dependent,
        w: &super::where_clause::WhereClause,
        unpin: bool,
    ) -> bool {
        let mut ok = true;
        for (s, pol) in w.subqueries() {
            match self
                .by_identity
                .get(s.identity())
                .and_then(|id| self.deps.get_mut(id))
            {
                Some(dep) => {
                    if !dep.dependents.iter().any(|(d, _)| *d == who) {
                        dep.dependents.push((who, pol));
                    }
                    if unpin {
                        dep.pins = dep.pins.saturating_sub(1);
                    }
                }
                None => ok = false,
            }
        }
        ok
    }

    /// Releases creation pins taken by [`Dependencies::ensure`] for a creation that failed.
    pub fn unpin(&mut self, identities: &[String]) {
        for i in identities {
            if let Some(dep) = self.by_identity.get(i).and_then(|id| self.deps.get_mut(id)) {
                dep.pins = dep.pins.saturating_sub(1);
            }
        }
        self.collect_garbage();
    }

    /// Forgets a dependent shape; dependencies left without dependents are dropped.
    pub fn detach_shape(&mut self, id: ShapeId, w: Option<&super::where_clause::WhereClause>) {
        let Some(w) = w else { return };
        let mut any = false;
        for (s, _) in w.subqueries() {
            if let Some(dep) = self
                .by_identity
                .get(s.identity())
                .and_then(|d| self.deps.get_mut(d))
            {
                dep.dependents.retain(|(d, _)| *d != Dependent::Shape(id));
                any = true;
            }
        }
        if any {
            self.collect_garbage();
        }
    }

    fn collect_garbage(&mut self) {
        loop {
            let idle: Vec<DepId> = self
                .deps
                .iter()
                .filter(|(_, d)| d.dependents.is_empty() && d.pins == 0 && d.buffer.is_none())
                .map(|(&id, _)| id)
                .collect();
            if idle.is_empty() {
                return;
            }
            for id in idle {
                self.drop_dep(id);
            }
        }
    }

    fn drop_dep(&mut self, id: DepId) {
        let Some(dep) = self.deps.remove(&id) else {
            return;
        };
        self.router.remove(dep.sub.table.oid, id);
        if self.by_identity.get(dep.sub.identity()) == Some(&id) {
            self.by_identity.remove(dep.sub.identity());
        }
        self.touched.retain(|&d| d != id);
        for other in self.deps.values_mut() {
            other.dependents.retain(|(d, _)| *d != Dependent::Dep(id));
        }
        tracing::debug!(table = %dep.table.sql_name(), "subquery dependency dropped");
    }

    /// Applies one row change of table `oid` to the dependencies on it. `txn` is the change's
    /// transaction (commit lsn, xid).
    pub fn on_change(
        &mut self,
        oid: u32,
        txn: (u64, u32),
        old: Option<&[Option<&str>]>,
        new: Option<&[Option<&str>]>,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let images: Vec<&[Option<&str>]> = [old, new].into_iter().flatten().collect();
        let mut candidates = std::mem::take(&mut self.candidates);
        self.router.candidates(oid, &images, &mut candidates);
        let mut broken = Vec::new();
        for &id in &candidates {
            let Some(dep) = self.deps.get_mut(&id) else {
                continue;
            };
            if dep.table.columns.len() != images.first().map_or(0, |r| r.len()) {
                broken.push(id);
                continue;
            }
            if dep.buffer.is_some() {
                let own = |r: &[Option<&str>]| r.iter().map(|v| v.map(str::to_owned)).collect();
                dep.current.changes.push((old.map(own), new.map(own)));
                if !self.touched.contains(&id) {
                    self.touched.push(id);
                }
                continue;
            }
            if dep.decide(txn.0, txn.1) {
                if dep.restart_window
                    && (old.is_some_and(|r| dep.sub.selects(r))
                        || new.is_some_and(|r| dep.sub.selects(r)))
                {
                    tracing::info!(table = %dep.table.sql_name(), "a replayed change touched a subquery's rows: its shapes are invalidated");
                    // Whatever the dependents' own skip decisions: their stored state may
                    // predate this change.
                    for (d, _) in &dep.dependents {
                        match *d {
                            Dependent::Shape(s) => effects.push(Effect::Remove(s)),
                            Dependent::Dep(d) => broken.push(d),
                        }
                    }
                }
                continue;
            }
            if !self.touched.contains(&id) {
                self.touched.push(id);
            }
            match self.apply_live(id, old, new) {
                Some(moves) => self.propagate(id, &moves, Some(txn), &mut effects, &mut broken),
                None => broken.push(id),
            }
        }
        self.candidates = candidates;
        self.break_all(broken, &mut effects);
        effects
    }

    /// TRUNCATE of table `oid`: the sets on it become empty.
    pub fn on_truncate(&mut self, oid: u32, txn: (u64, u32)) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut broken = Vec::new();
        for id in self.router.shapes_of(oid) {
            let Some(dep) = self.deps.get_mut(&id) else {
                continue;
            };
            if dep.buffer.is_some() {
                dep.current.truncate = true;
                if !self.touched.contains(&id) {
                    self.touched.push(id);
                }
                continue;
            }
            if dep.decide(txn.0, txn.1) {
                if dep.restart_window && dep.set.snapshot().len_rows() > 0 {
                    broken.push(id);
                }
                continue;
            }
            let moves: Vec<(Tuple, Move)> = dep
                .set
                .clear()
                .into_iter()
                .map(|t| (t, Move::Out))
                .collect();
            if !self.touched.contains(&id) {
                self.touched.push(id);
            }
            self.propagate(id, &moves, Some(txn), &mut effects, &mut broken);
        }
        self.break_all(broken, &mut effects);
        effects
    }

    /// The dependencies on table `oid` can no longer follow it (relation change, a change
    /// without its old row, a value that is not text): they break.
    pub fn break_table(&mut self, oid: u32) -> Vec<Effect> {
        let mut effects = Vec::new();
        let ids = self.router.shapes_of(oid);
        self.break_all(ids, &mut effects);
        effects
    }

    /// The tables (oid, info) the dependencies read, for relation checks.
    pub fn tables(&self) -> Vec<Arc<TableInfo>> {
        let mut out: Vec<Arc<TableInfo>> = Vec::new();
        for d in self.deps.values() {
            if !out.iter().any(|t| t.oid == d.table.oid) {
                out.push(d.table.clone());
            }
        }
        out
    }

    /// Transaction boundary: buffering dependencies close their current transaction; live
    /// ones record it as applied.
    pub fn commit(&mut self, lsn: u64, xid: u32) {
        for id in std::mem::take(&mut self.touched) {
            let Some(dep) = self.deps.get_mut(&id) else {
                continue;
            };
            match dep.buffer.as_mut() {
                Some(buf) => {
                    let mut t = std::mem::take(&mut dep.current);
                    t.xid = xid;
                    buf.push(t);
                }
                None => dep.latest_tx = dep.latest_tx.max(lsn),
            }
        }
    }

    /// Drops the partial transaction (the stream sends it again). A live set already holds
    /// part of it and cannot be rolled back: it breaks.
    pub fn abort(&mut self) -> Vec<Effect> {
        let mut broken = Vec::new();
        for id in std::mem::take(&mut self.touched) {
            if let Some(dep) = self.deps.get_mut(&id) {
                dep.current = BufferedTxn::default();
                if dep.buffer.is_none() {
                    broken.push(id);
                }
            }
        }
        for dep in self.deps.values_mut() {
            dep.txn_mark = 0;
        }
        let mut effects = Vec::new();
        self.break_all(broken, &mut effects);
        effects
    }

    /// Applies a change to a live dependency's set: the membership moves, or `None` when the
    /// set can no longer be trusted.
    fn apply_live(
        &mut self,
        id: DepId,
        old: Option<&[Option<&str>]>,
        new: Option<&[Option<&str>]>,
    ) -> Option<Vec<(Tuple, Move)>> {
        let dep = self.deps.get(&id)?;
        let sub = &dep.sub;
        let t_old = match old {
            Some(r) if sub.selects(r) => Some(sub.tuple_of(r).ok()?),
            _ => None,
        };
        let t_new = match new {
            Some(r) if sub.selects(r) => Some(sub.tuple_of(r).ok()?),
            _ => None,
        };
        if t_old.is_some() && t_old == t_new {
            return Some(Vec::new());
        }
        let mut moves = Vec::new();
        if let Some(t) = t_old {
            match dep.set.remove(&t) {
                Move::Inconsistent => return None,
                Move::None => {}
                m => moves.push((t, m)),
            }
        }
        if let Some(t) = t_new {
            match dep.set.add(&t) {
                Move::None => {}
                m => moves.push((t, m)),
            }
        }
        Some(moves)
    }

    /// Turns membership moves of `id` into effects on its dependents. `txn` is `None` while
    /// a new dependency replays its buffer (it has no dependents yet).
    fn propagate(
        &mut self,
        id: DepId,
        moves: &[(Tuple, Move)],
        txn: Option<(u64, u32)>,
        effects: &mut Vec<Effect>,
        broken: &mut Vec<DepId>,
    ) {
        if moves.is_empty() {
            return;
        }
        let Some(dep) = self.deps.get(&id) else {
            return;
        };
        let who: Vec<Dependent> = dep
            .dependents
            .iter()
            .filter(|(_, pol)| moves.iter().any(|(t, _)| pol.affected_by(t.has_null())))
            .map(|(d, _)| *d)
            .collect();
        match txn {
            Some(txn) => self.invalidate_dependents(&who, txn, effects, broken),
            None => {
                for d in who {
                    match d {
                        Dependent::Shape(s) => effects.push(Effect::Remove(s)),
                        Dependent::Dep(d) => broken.push(d),
                    }
                }
            }
        }
    }

    fn invalidate_dependents(
        &mut self,
        who: &[Dependent],
        txn: (u64, u32),
        effects: &mut Vec<Effect>,
        broken: &mut Vec<DepId>,
    ) {
        for d in who {
            match *d {
                Dependent::Shape(s) => effects.push(Effect::Invalidate(s)),
                Dependent::Dep(d) => {
                    let Some(dep) = self.deps.get_mut(&d) else {
                        continue;
                    };
                    if dep.buffer.is_some() {
                        dep.current.invalidated = true;
                        if !self.touched.contains(&d) {
                            self.touched.push(d);
                        }
                    } else if !dep.decide(txn.0, txn.1) || dep.restart_window {
                        broken.push(d);
                    }
                }
            }
        }
    }

    /// Drops broken dependencies and removes everything that depends on them, transitively.
    fn break_all(&mut self, mut ids: Vec<DepId>, effects: &mut Vec<Effect>) {
        while let Some(id) = ids.pop() {
            let Some(dep) = self.deps.get_mut(&id) else {
                continue;
            };
            if dep.buffer.is_some() {
                // Still loading: the creation fails when the snapshot arrives.
                dep.broken = true;
                continue;
            }
            tracing::info!(table = %dep.table.sql_name(), "subquery dependency broken: its shapes are removed");
            for (d, _) in std::mem::take(&mut dep.dependents) {
                match d {
                    Dependent::Shape(s) => effects.push(Effect::Remove(s)),
                    Dependent::Dep(d) => ids.push(d),
                }
            }
            dep.pins = 0;
            self.drop_dep(id);
        }
        self.collect_garbage();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::table::ColumnInfo;
    use crate::shape::where_clause::{InnerTable, WhereClause};

    fn table(oid: u32, name: &str, cols: &[&str]) -> Arc<TableInfo> {
        Arc::new(TableInfo {
            oid,
            schema: "public".into(),
            name: name.into(),
            columns: cols
                .iter()
                .map(|c| ColumnInfo::scalar(c, "int4", 23))
                .collect(),
            pk: vec![0],
            has_pk: true,
            generated: vec![],
        })
    }

    fn inner(t: &TableInfo) -> InnerTable {
        InnerTable {
            oid: t.oid,
            schema: t.schema.clone(),
            name: t.name.clone(),
            columns: t.where_schema(),
        }
    }

    const SNAP: PgSnapshot = PgSnapshot {
        xmin: 100,
        xmax: 100,
        xip: Vec::new(),
    };

    fn setup(clause: &str) -> (Dependencies, WhereClause, DepId) {
        let tasks = table(1, "tasks", &["id", "project_id"]);
        let projects = table(2, "projects", &["id", "org"]);
        let w = WhereClause::compile_with(clause, &[], &tasks.where_schema(), &[inner(&projects)])
            .unwrap();
        let mut deps = Dependencies::new();
        let (sub, _) = w.subqueries().remove(0);
        let e = deps.ensure(&sub, projects).unwrap();
        assert!(e.needs_snapshot);
        let mut m = Members::default();
        m.add(&Tuple::from_parts(vec![Some(
            crate::shape::where_clause::IndexKey::Int(1),
        )]));
        assert!(deps.load(e.id, m, SNAP, false).unwrap().is_empty());
        assert!(deps.attach(Dependent::Shape(7), &w, true));
        (deps, w, e.id)
    }

    #[test]
    fn only_membership_changes_invalidate() {
        let (mut deps, w, _) = setup("project_id IN (SELECT id FROM projects WHERE org = 5)");
        let row = |id: &'static str, org: &'static str| vec![Some(id), Some(org)];
        let txn = (1000, 200);
        // A second row with id 1: count 1 → 2, no move.
        assert!(
            deps.on_change(2, txn, None, Some(&row("1", "5")))
                .is_empty()
        );
        // A row outside the inner where: nothing.
        assert!(
            deps.on_change(2, txn, None, Some(&row("3", "6")))
                .is_empty()
        );
        // Back to one: no move.
        assert!(
            deps.on_change(2, txn, Some(&row("1", "5")), None)
                .is_empty()
        );
        // A new value moves in.
        assert_eq!(
            deps.on_change(2, txn, None, Some(&row("2", "5"))),
            vec![Effect::Invalidate(7)]
        );
        // An update that keeps the tuple: nothing.
        assert!(
            deps.on_change(2, txn, Some(&row("2", "5")), Some(&row("2", "5")))
                .is_empty()
        );
        // Moves out.
        assert_eq!(
            deps.on_change(2, txn, Some(&row("2", "5")), Some(&row("2", "6"))),
            vec![Effect::Invalidate(7)]
        );
        // Tuples with a NULL never matter under positive polarity.
        assert!(
            deps.on_change(2, txn, None, Some(&[None, Some("5")]))
                .is_empty()
        );
        assert!(w.matches(&[Some("9"), Some("1")]));
        // TRUNCATE empties the set.
        assert_eq!(deps.on_truncate(2, txn), vec![Effect::Invalidate(7)]);
        assert!(!w.matches(&[Some("9"), Some("1")]));
        // Detaching the last shape drops the dependency.
        deps.detach_shape(7, Some(&w));
        assert!(deps.is_empty());
    }

    #[test]
    fn negated_uses_see_null_tuples() {
        let (mut deps, _w, _) = setup("project_id NOT IN (SELECT id FROM projects)");
        assert_eq!(
            deps.on_change(2, (1000, 200), None, Some(&[None, Some("5")])),
            vec![Effect::Invalidate(7)]
        );
    }

    #[test]
    fn buffered_changes_visible_in_the_snapshot_are_skipped() {
        let tasks = table(1, "tasks", &["id", "project_id"]);
        let projects = table(2, "projects", &["id", "org"]);
        let w = WhereClause::compile_with(
            "project_id IN (SELECT id FROM projects)",
            &[],
            &tasks.where_schema(),
            &[inner(&projects)],
        )
        .unwrap();
        let mut deps = Dependencies::new();
        let (sub, _) = w.subqueries().remove(0);
        let e = deps.ensure(&sub, projects).unwrap();
        // xid 90 is visible in the snapshot (already counted in it), 150 is not.
        deps.on_change(2, (10, 90), None, Some(&[Some("1"), None]));
        deps.commit(10, 90);
        deps.on_change(2, (20, 150), None, Some(&[Some("2"), None]));
        deps.commit(20, 150);
        let mut m = Members::default();
        m.add(&sub.tuple_of(&[Some("1"), None]).unwrap());
        deps.load(e.id, m, SNAP, false).unwrap();
        let set = deps.set_of(sub.identity()).unwrap();
        assert_eq!(set.len_rows(), 2);
        assert!(w.matches(&[None, Some("2")]));
    }

    #[test]
    fn replayed_changes_after_a_restart_invalidate_conservatively() {
        let (mut deps, _w, id) = setup("project_id IN (SELECT id FROM projects WHERE org = 5)");
        deps.deps.get_mut(&id).unwrap().restart_window = true;
        // Visible in the rebuilt snapshot (xid 90 < xmin), not touching the inner where.
        assert!(
            deps.on_change(2, (10, 90), None, Some(&[Some("4"), Some("6")]))
                .is_empty()
        );
        // Visible, and touching a matching row: the dependents are invalidated.
        assert_eq!(
            deps.on_change(2, (11, 91), None, Some(&[Some("4"), Some("5")])),
            vec![Effect::Remove(7)]
        );
    }
}
