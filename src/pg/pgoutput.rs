//! Pure decoder (and matching encoder) for `pgoutput` logical-replication
//! messages, protocol version 1, text format.
//!
//! Role: turn the payload of one XLogData (`w`) frame into a typed
//! [`LogicalMessage`]. No I/O, no global state; the replication client owns
//! framing, this module owns the bytes inside one frame.
//!
//! Invariants:
//! * [`decode`] is total and panic-free on arbitrary input: every read is
//!   bounds-checked and returns [`DecodeError`] instead of slicing out of range.
//! * Wire integers become lengths only through `usize::try_from`; negative
//!   Int16/Int32 counts and lengths are errors, never wrapped.
//! * Up-front allocation is bounded by the bytes still unread (each element
//!   has a known minimum encoded size), so a lying count cannot make us
//!   reserve more than the frame could possibly describe.
//! * A message must consume its payload exactly; trailing bytes are an error
//!   (they would mean we mis-parsed the layout and are silently dropping data).
//! * Zero-copy: tuple values and `Message` content are [`Bytes::slice`]s of the
//!   input frame, so the only per-row allocation is the `Vec` of values.
//! * `decode(&encode(m)) == m` for every `m` that `decode` can produce. The
//!   only values of these types it cannot produce are those Postgres never
//!   sends: an `Update` carrying both `key` and `old`, and a `Delete` with
//!   neither or both; `encode` still writes them faithfully and `decode`
//!   rejects the result.
//!
//! Streaming (proto ≥ 2) and two-phase messages (`S`, `E`, `c`, `A`, `b`,
//! `P`, `K`, `r`, `p`) are deliberately unknown tags: we never negotiate
//! those protocol versions, so seeing one means the stream is not what we
//! asked for.

use bytes::Bytes;

/// One decoded `pgoutput` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogicalMessage {
    /// `B`: start of a transaction.
    Begin(Begin),
    /// `C`: end of a transaction.
    Commit(Commit),
    /// `O`: the transaction was replicated from another origin.
    Origin(Origin),
    /// `R`: schema of a relation, sent before its first change in a session
    /// and again whenever it changes.
    Relation(Relation),
    /// `Y`: a non-builtin type referenced by a following `Relation`.
    Type(TypeMessage),
    /// `I`: a row was inserted.
    Insert(Insert),
    /// `U`: a row was updated.
    Update(Update),
    /// `D`: a row was deleted.
    Delete(Delete),
    /// `T`: one or more relations were truncated.
    Truncate(Truncate),
    /// `M`: a `pg_logical_emit_message` payload.
    Message(Message),
}

/// `B` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: u64,
    /// Microseconds since 2000-01-01 (Postgres epoch).
    pub commit_time: i64,
    /// 32-bit transaction id (no epoch; see `pg_current_xact_id` for xid8).
    pub xid: u32,
}

/// `C` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Currently always 0; kept raw so the encoder reproduces the input.
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: u64,
    /// LSN just past the commit record.
    pub end_lsn: u64,
    /// Microseconds since 2000-01-01 (Postgres epoch).
    pub commit_time: i64,
}

/// `O` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Commit LSN on the origin server.
    pub commit_lsn: u64,
    /// Origin name.
    pub name: String,
}

/// `R` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Relation oid; changes refer to the relation by this.
    pub oid: u32,
    /// Schema name (empty for `pg_catalog`).
    pub namespace: String,
    /// Relation name.
    pub name: String,
    /// `pg_class.relreplident`: `d`efault, `n`othing, `f`ull, `i`ndex.
    pub replica_identity: u8,
    /// Published columns, in attribute order (generated columns excluded).
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Bit 1 ([`RelationColumn::FLAG_KEY`]) marks a replica-identity column.
    pub flags: u8,
    /// Column name.
    pub name: String,
    /// Type oid.
    pub type_oid: u32,
    /// `atttypmod` (-1 when not applicable).
    pub type_modifier: i32,
}

impl RelationColumn {
    /// Flag bit: the column is part of the replica identity key.
    pub const FLAG_KEY: u8 = 1;

    /// Whether the column is part of the replica identity key.
    #[must_use]
    pub fn is_key(&self) -> bool {
        self.flags & Self::FLAG_KEY != 0
    }
}

/// `Y` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    /// Type oid.
    pub oid: u32,
    /// Schema name (empty for `pg_catalog`).
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// `I` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// Oid of the relation (matches an earlier [`Relation::oid`]).
    pub relation_oid: u32,
    /// The inserted row (`N`).
    pub new: Tuple,
}

/// `U` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Oid of the relation.
    pub relation_oid: u32,
    /// Old key columns (`K`), sent when the key changed and identity is not FULL.
    pub key: Option<Tuple>,
    /// Full old row (`O`), sent with `REPLICA IDENTITY FULL`.
    pub old: Option<Tuple>,
    /// The new row (`N`); may contain [`TupleValue::UnchangedToast`].
    pub new: Tuple,
}

/// `D` message. On the wire exactly one of `key` / `old` is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Oid of the relation.
    pub relation_oid: u32,
    /// Old key columns (`K`).
    pub key: Option<Tuple>,
    /// Full old row (`O`), sent with `REPLICA IDENTITY FULL`.
    pub old: Option<Tuple>,
}

/// `T` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Bit set of [`Truncate::CASCADE`] and [`Truncate::RESTART_IDENTITY`].
    pub options: u8,
    /// Oids of all truncated relations.
    pub relation_oids: Vec<u32>,
}

impl Truncate {
    /// `TRUNCATE … CASCADE`.
    pub const CASCADE: u8 = 1;
    /// `TRUNCATE … RESTART IDENTITY`.
    pub const RESTART_IDENTITY: u8 = 2;
}

/// `M` message (logical decoding message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Emitted inside a transaction (flags = 1) rather than immediately.
    pub transactional: bool,
    /// LSN of the message.
    pub lsn: u64,
    /// Prefix given to `pg_logical_emit_message`.
    pub prefix: String,
    /// Raw content (a slice of the input frame).
    pub content: Bytes,
}

/// TupleData: one value per column, in [`Relation::columns`] order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tuple(pub Vec<TupleValue>);

/// One column value of a [`Tuple`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// `n`: SQL NULL.
    Null,
    /// `u`: TOASTed value that did not change; the actual value is not sent.
    UnchangedToast,
    /// `t`: value in text output format (a slice of the input frame).
    Text(Bytes),
    /// `b`: value in binary format (only with the `binary` option, unused by us).
    Binary(Bytes),
}

/// Why a payload is not a valid protocol-1 `pgoutput` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is empty (no tag byte).
    #[error("empty pgoutput message")]
    Empty,
    /// A field runs past the end of the payload.
    #[error(
        "truncated pgoutput message reading {what}: needed {needed} bytes, {available} available"
    )]
    Truncated {
        /// Field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the payload.
        available: usize,
    },
    /// The first byte is not a protocol-1 message tag.
    #[error("unknown pgoutput message tag 0x{0:02x}")]
    UnknownTag(u8),
    /// A tuple column kind is not one of `n`, `u`, `t`, `b`.
    #[error("bad tuple value kind 0x{0:02x}")]
    BadTupleKind(u8),
    /// A tuple marker (`K`, `O`, `N`) is missing or out of place.
    #[error("bad tuple marker 0x{found:02x} in {what}")]
    BadTupleMarker {
        /// Message being decoded.
        what: &'static str,
        /// The byte found where a marker was expected.
        found: u8,
    },
    /// A flags byte holds a value the protocol does not define.
    #[error("bad flags 0x{value:02x} in {what}")]
    BadFlags {
        /// Field being read.
        what: &'static str,
        /// The offending byte.
        value: u8,
    },
    /// A string is not valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    NotUtf8 {
        /// Field being read.
        what: &'static str,
    },
    /// A string has no NUL terminator before the end of the payload.
    #[error("{what} is missing its NUL terminator")]
    MissingNul {
        /// Field being read.
        what: &'static str,
    },
    /// A count or length field is negative.
    #[error("negative {what}: {count}")]
    CountNegative {
        /// Field being read.
        what: &'static str,
        /// The value read.
        count: i32,
    },
    /// Bytes remain after a complete message.
    #[error("{0} trailing bytes after pgoutput message")]
    TrailingBytes(usize),
}

/// Bounds-checked big-endian reader over one frame.
///
/// Holds the `Bytes` by reference so that value slices share the frame's
/// allocation (refcount bump, no copy).
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Reads exactly `N` bytes; the array form lets the integer readers
    /// compile to a single load without any fallible conversion.
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.first_chunk::<N>() {
            Some(chunk) => {
                self.pos += N;
                Ok(*chunk)
            }
            None => Err(DecodeError::Truncated {
                what,
                needed: N,
                available: rest.len(),
            }),
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.array::<1>(what).map(|[b]| b)
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        self.array(what).map(i16::from_be_bytes)
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        self.array(what).map(i32::from_be_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.array(what).map(u64::from_be_bytes)
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        self.array(what).map(i64::from_be_bytes)
    }

    /// Non-negative Int16 count; Postgres never sends a negative one, so a
    /// negative value means corruption, not "empty".
    fn count16(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let raw = self.i16(what)?;
        usize::try_from(raw).map_err(|_| DecodeError::CountNegative {
            what,
            count: i32::from(raw),
        })
    }

    /// Non-negative Int32 count or length.
    fn count32(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let raw = self.i32(what)?;
        usize::try_from(raw).map_err(|_| DecodeError::CountNegative { what, count: raw })
    }

    /// Zero-copy slice of the next `len` bytes.
    fn bytes(&mut self, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let available = self.remaining();
        if len > available {
            return Err(DecodeError::Truncated {
                what,
                needed: len,
                available,
            });
        }
        let start = self.pos;
        self.pos += len;
        Ok(self.buf.slice(start..self.pos))
    }

    /// NUL-terminated UTF-8 string. Names are rare (Relation/Type/Origin/
    /// Message prefix), so an owned `String` is fine here.
    fn cstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let nul = memchr::memchr(0, rest).ok_or(DecodeError::MissingNul { what })?;
        let raw = rest.get(..nul).ok_or(DecodeError::MissingNul { what })?;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::NotUtf8 { what })?;
        self.pos += nul + 1;
        Ok(s.to_owned())
    }

    /// Capacity to reserve for `count` elements of at least `min_size`
    /// encoded bytes each: never more than the unread bytes could hold.
    fn bounded_capacity(&self, count: usize, min_size: usize) -> usize {
        count.min(self.remaining() / min_size.max(1))
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.count16("tuple column count")?;
        // Smallest value is a lone kind byte ('n' / 'u').
        let mut values = Vec::with_capacity(self.bounded_capacity(n, 1));
        for _ in 0..n {
            let value = match self.u8("tuple value kind")? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                b't' => {
                    let len = self.count32("tuple value length")?;
                    TupleValue::Text(self.bytes(len, "tuple text value")?)
                }
                b'b' => {
                    let len = self.count32("tuple value length")?;
                    TupleValue::Binary(self.bytes(len, "tuple binary value")?)
                }
                other => return Err(DecodeError::BadTupleKind(other)),
            };
            values.push(value);
        }
        Ok(Tuple(values))
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Encoded size of one Relation column without its name: flags + NUL + oid + typmod.
const MIN_RELATION_COLUMN_SIZE: usize = 1 + 1 + 4 + 4;

/// Decodes one `pgoutput` (proto 1) message.
///
/// Tuple values and message content borrow `buf`'s allocation through
/// [`Bytes::slice`]; nothing is copied per value.
///
/// # Errors
/// Any deviation from the protocol-1 layout, including trailing bytes.
pub fn decode(buf: &Bytes) -> Result<LogicalMessage, DecodeError> {
    let mut r = Reader::new(buf);
    let Ok(tag) = r.u8("message tag") else {
        return Err(DecodeError::Empty);
    };
    let msg = match tag {
        b'B' => LogicalMessage::Begin(Begin {
            final_lsn: r.u64("begin final_lsn")?,
            commit_time: r.i64("begin commit_time")?,
            xid: r.u32("begin xid")?,
        }),
        b'C' => LogicalMessage::Commit(Commit {
            flags: r.u8("commit flags")?,
            commit_lsn: r.u64("commit commit_lsn")?,
            end_lsn: r.u64("commit end_lsn")?,
            commit_time: r.i64("commit commit_time")?,
        }),
        b'O' => LogicalMessage::Origin(Origin {
            commit_lsn: r.u64("origin commit_lsn")?,
            name: r.cstr("origin name")?,
        }),
        b'R' => {
            let oid = r.u32("relation oid")?;
            let namespace = r.cstr("relation namespace")?;
            let name = r.cstr("relation name")?;
            let replica_identity = r.u8("relation replica identity")?;
            let n = r.count16("relation column count")?;
            let mut columns = Vec::with_capacity(r.bounded_capacity(n, MIN_RELATION_COLUMN_SIZE));
            for _ in 0..n {
                columns.push(RelationColumn {
                    flags: r.u8("column flags")?,
                    name: r.cstr("column name")?,
                    type_oid: r.u32("column type oid")?,
                    type_modifier: r.i32("column type modifier")?,
                });
            }
            LogicalMessage::Relation(Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => LogicalMessage::Type(TypeMessage {
            oid: r.u32("type oid")?,
            namespace: r.cstr("type namespace")?,
            name: r.cstr("type name")?,
        }),
        b'I' => {
            let relation_oid = r.u32("insert relation oid")?;
            match r.u8("insert tuple marker")? {
                b'N' => {}
                found => {
                    return Err(DecodeError::BadTupleMarker {
                        what: "insert",
                        found,
                    });
                }
            }
            LogicalMessage::Insert(Insert {
                relation_oid,
                new: r.tuple()?,
            })
        }
        b'U' => {
            let relation_oid = r.u32("update relation oid")?;
            let (mut key, mut old) = (None, None);
            // Mirrors logicalrep_read_update: at most one of K/O, then N.
            let mut marker = r.u8("update tuple marker")?;
            if marker == b'K' || marker == b'O' {
                let tuple = r.tuple()?;
                if marker == b'K' {
                    key = Some(tuple);
                } else {
                    old = Some(tuple);
                }
                marker = r.u8("update new tuple marker")?;
            }
            if marker != b'N' {
                return Err(DecodeError::BadTupleMarker {
                    what: "update",
                    found: marker,
                });
            }
            LogicalMessage::Update(Update {
                relation_oid,
                key,
                old,
                new: r.tuple()?,
            })
        }
        b'D' => {
            let relation_oid = r.u32("delete relation oid")?;
            let (key, old) = match r.u8("delete tuple marker")? {
                b'K' => (Some(r.tuple()?), None),
                b'O' => (None, Some(r.tuple()?)),
                found => {
                    return Err(DecodeError::BadTupleMarker {
                        what: "delete",
                        found,
                    });
                }
            };
            LogicalMessage::Delete(Delete {
                relation_oid,
                key,
                old,
            })
        }
        b'T' => {
            let n = r.count32("truncate relation count")?;
            let options = r.u8("truncate options")?;
            let mut relation_oids = Vec::with_capacity(r.bounded_capacity(n, 4));
            for _ in 0..n {
                relation_oids.push(r.u32("truncate relation oid")?);
            }
            LogicalMessage::Truncate(Truncate {
                options,
                relation_oids,
            })
        }
        b'M' => {
            let transactional = match r.u8("message flags")? {
                0 => false,
                1 => true,
                value => {
                    return Err(DecodeError::BadFlags {
                        what: "message flags",
                        value,
                    });
                }
            };
            let lsn = r.u64("message lsn")?;
            let prefix = r.cstr("message prefix")?;
            let len = r.count32("message content length")?;
            LogicalMessage::Message(Message {
                transactional,
                lsn,
                prefix,
                content: r.bytes(len, "message content")?,
            })
        }
        other => return Err(DecodeError::UnknownTag(other)),
    };
    r.finish()?;
    Ok(msg)
}

/// Appends the protocol-1 encoding of `msg` to `out`.
///
/// Inverse of [`decode`] on everything `decode` returns. Lengths and counts
/// that do not fit their wire field (more than `i16::MAX` columns, values
/// over 2 GiB) are saturated: such messages cannot come from Postgres, and
/// saturating keeps this function total while `decode` then rejects the
/// result rather than mis-reading it.
pub fn encode(msg: &LogicalMessage, out: &mut Vec<u8>) {
    match msg {
        LogicalMessage::Begin(m) => {
            out.push(b'B');
            out.extend_from_slice(&m.final_lsn.to_be_bytes());
            out.extend_from_slice(&m.commit_time.to_be_bytes());
            out.extend_from_slice(&m.xid.to_be_bytes());
        }
        LogicalMessage::Commit(m) => {
            out.push(b'C');
            out.push(m.flags);
            out.extend_from_slice(&m.commit_lsn.to_be_bytes());
            out.extend_from_slice(&m.end_lsn.to_be_bytes());
            out.extend_from_slice(&m.commit_time.to_be_bytes());
        }
        LogicalMessage::Origin(m) => {
            out.push(b'O');
            out.extend_from_slice(&m.commit_lsn.to_be_bytes());
            put_cstr(out, &m.name);
        }
        LogicalMessage::Relation(m) => {
            out.push(b'R');
            out.extend_from_slice(&m.oid.to_be_bytes());
            put_cstr(out, &m.namespace);
            put_cstr(out, &m.name);
            out.push(m.replica_identity);
            put_i16_len(out, m.columns.len());
            for c in &m.columns {
                out.push(c.flags);
                put_cstr(out, &c.name);
                out.extend_from_slice(&c.type_oid.to_be_bytes());
                out.extend_from_slice(&c.type_modifier.to_be_bytes());
            }
        }
        LogicalMessage::Type(m) => {
            out.push(b'Y');
            out.extend_from_slice(&m.oid.to_be_bytes());
            put_cstr(out, &m.namespace);
            put_cstr(out, &m.name);
        }
        LogicalMessage::Insert(m) => {
            out.push(b'I');
            out.extend_from_slice(&m.relation_oid.to_be_bytes());
            out.push(b'N');
            put_tuple(out, &m.new);
        }
        LogicalMessage::Update(m) => {
            out.push(b'U');
            out.extend_from_slice(&m.relation_oid.to_be_bytes());
            if let Some(key) = &m.key {
                out.push(b'K');
                put_tuple(out, key);
            }
            if let Some(old) = &m.old {
                out.push(b'O');
                put_tuple(out, old);
            }
            out.push(b'N');
            put_tuple(out, &m.new);
        }
        LogicalMessage::Delete(m) => {
            out.push(b'D');
            out.extend_from_slice(&m.relation_oid.to_be_bytes());
            if let Some(key) = &m.key {
                out.push(b'K');
                put_tuple(out, key);
            }
            if let Some(old) = &m.old {
                out.push(b'O');
                put_tuple(out, old);
            }
        }
        LogicalMessage::Truncate(m) => {
            out.push(b'T');
            put_i32_len(out, m.relation_oids.len());
            out.push(m.options);
            for oid in &m.relation_oids {
                out.extend_from_slice(&oid.to_be_bytes());
            }
        }
        LogicalMessage::Message(m) => {
            out.push(b'M');
            out.push(u8::from(m.transactional));
            out.extend_from_slice(&m.lsn.to_be_bytes());
            put_cstr(out, &m.prefix);
            put_i32_len(out, m.content.len());
            out.extend_from_slice(&m.content);
        }
    }
}

/// Writes `s` NUL-terminated. An interior NUL (impossible for Postgres
/// identifiers) would make `decode` stop early and then report trailing
/// bytes or a bad layout — never a silent mis-read of later fields' types.
fn put_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn put_i16_len(out: &mut Vec<u8>, len: usize) {
    let n = i16::try_from(len).unwrap_or(i16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_i32_len(out: &mut Vec<u8>, len: usize) {
    let n = i32::try_from(len).unwrap_or(i32::MAX);
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_tuple(out: &mut Vec<u8>, tuple: &Tuple) {
    put_i16_len(out, tuple.0.len());
    for value in &tuple.0 {
        match value {
            TupleValue::Null => out.push(b'n'),
            TupleValue::UnchangedToast => out.push(b'u'),
            TupleValue::Text(b) => {
                out.push(b't');
                put_i32_len(out, b.len());
                out.extend_from_slice(b);
            }
            TupleValue::Binary(b) => {
                out.push(b'b');
                put_i32_len(out, b.len());
                out.extend_from_slice(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Little builder for hand-written wire bytes, independent of `encode`
    /// so that the hand-built tests check the layout, not self-consistency.
    #[derive(Default)]
    struct W(Vec<u8>);

    impl W {
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn i16(mut self, v: i16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i32(mut self, v: i32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i64(mut self, v: i64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn s(mut self, v: &str) -> Self {
            self.0.extend_from_slice(v.as_bytes());
            self.0.push(0);
            self
        }
        fn raw(mut self, v: &[u8]) -> Self {
            self.0.extend_from_slice(v);
            self
        }
        fn text(self, v: &str) -> Self {
            let len = i32::try_from(v.len()).unwrap();
            self.u8(b't').i32(len).raw(v.as_bytes())
        }
        fn bytes(self) -> Bytes {
            Bytes::from(self.0)
        }
    }

    fn text(s: &str) -> TupleValue {
        TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Decodes, checks the re-encoding is byte-identical, and that every
    /// strict prefix fails (each truncation point is an error, not a panic
    /// and not a shorter valid message).
    fn check(wire: &Bytes, expected: &LogicalMessage) {
        assert_eq!(decode(wire).as_ref(), Ok(expected));
        let mut out = Vec::new();
        encode(expected, &mut out);
        assert_eq!(
            out.as_slice(),
            wire.as_ref(),
            "encode is not byte-identical"
        );
        for cut in 0..wire.len() {
            let prefix = wire.slice(..cut);
            assert!(decode(&prefix).is_err(), "prefix of {cut} bytes decoded");
        }
        let mut longer = wire.to_vec();
        longer.push(0);
        assert_eq!(
            decode(&Bytes::from(longer)),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn begin() {
        let wire = W::default()
            .u8(b'B')
            .u64(0xAB_0000_0128)
            .i64(797_000_000_000_000)
            .u32(4_000_000_123)
            .bytes();
        check(
            &wire,
            &LogicalMessage::Begin(Begin {
                final_lsn: 0xAB_0000_0128,
                commit_time: 797_000_000_000_000,
                xid: 4_000_000_123,
            }),
        );
    }

    #[test]
    fn commit() {
        let wire = W::default()
            .u8(b'C')
            .u8(0)
            .u64(0xAB_0000_0128)
            .u64(0xAB_0000_0158)
            .i64(-5)
            .bytes();
        check(
            &wire,
            &LogicalMessage::Commit(Commit {
                flags: 0,
                commit_lsn: 0xAB_0000_0128,
                end_lsn: 0xAB_0000_0158,
                commit_time: -5,
            }),
        );
    }

    #[test]
    fn origin() {
        let wire = W::default().u8(b'O').u64(42).s("upstream_é").bytes();
        check(
            &wire,
            &LogicalMessage::Origin(Origin {
                commit_lsn: 42,
                name: "upstream_é".into(),
            }),
        );
    }

    #[test]
    fn type_message() {
        let wire = W::default()
            .u8(b'Y')
            .u32(16_390)
            .s("public")
            .s("mood")
            .bytes();
        check(
            &wire,
            &LogicalMessage::Type(TypeMessage {
                oid: 16_390,
                namespace: "public".into(),
                name: "mood".into(),
            }),
        );
    }

    #[test]
    fn message_transactional_and_not() {
        for (flag, transactional) in [(0u8, false), (1, true)] {
            let wire = W::default()
                .u8(b'M')
                .u8(flag)
                .u64(0x1_0000_0000)
                .s("electric")
                .i32(3)
                .raw(b"a\0b")
                .bytes();
            check(
                &wire,
                &LogicalMessage::Message(Message {
                    transactional,
                    lsn: 0x1_0000_0000,
                    prefix: "electric".into(),
                    content: Bytes::from_static(b"a\0b"),
                }),
            );
        }
    }

    #[test]
    fn realistic_transaction() {
        // CREATE TABLE public.items (id int8 PRIMARY KEY, title text, body text)
        // with REPLICA IDENTITY FULL; then insert, update (body TOASTed and
        // unchanged), delete, and a two-table truncate.
        let relation = W::default()
            .u8(b'R')
            .u32(16_384)
            .s("public")
            .s("items")
            .u8(b'f')
            .i16(3)
            .u8(1)
            .s("id")
            .u32(20)
            .i32(-1)
            .u8(0)
            .s("title")
            .u32(25)
            .i32(-1)
            .u8(0)
            .s("body")
            .u32(1043)
            .i32(259)
            .bytes();
        let rel_msg = LogicalMessage::Relation(Relation {
            oid: 16_384,
            namespace: "public".into(),
            name: "items".into(),
            replica_identity: b'f',
            columns: vec![
                RelationColumn {
                    flags: 1,
                    name: "id".into(),
                    type_oid: 20,
                    type_modifier: -1,
                },
                RelationColumn {
                    flags: 0,
                    name: "title".into(),
                    type_oid: 25,
                    type_modifier: -1,
                },
                RelationColumn {
                    flags: 0,
                    name: "body".into(),
                    type_oid: 1043,
                    type_modifier: 259,
                },
            ],
        });
        check(&relation, &rel_msg);
        let LogicalMessage::Relation(rel) = &rel_msg else {
            unreachable!()
        };
        assert!(rel.columns[0].is_key());
        assert!(!rel.columns[1].is_key());

        let insert = W::default()
            .u8(b'I')
            .u32(16_384)
            .u8(b'N')
            .i16(3)
            .text("1")
            .text("hello")
            .u8(b'n')
            .bytes();
        check(
            &insert,
            &LogicalMessage::Insert(Insert {
                relation_oid: 16_384,
                new: Tuple(vec![text("1"), text("hello"), TupleValue::Null]),
            }),
        );

        let update = W::default()
            .u8(b'U')
            .u32(16_384)
            .u8(b'O')
            .i16(3)
            .text("1")
            .text("hello")
            .text("long body")
            .u8(b'N')
            .i16(3)
            .text("1")
            .text("")
            .u8(b'u')
            .bytes();
        check(
            &update,
            &LogicalMessage::Update(Update {
                relation_oid: 16_384,
                key: None,
                old: Some(Tuple(vec![text("1"), text("hello"), text("long body")])),
                new: Tuple(vec![text("1"), text(""), TupleValue::UnchangedToast]),
            }),
        );

        let update_key = W::default()
            .u8(b'U')
            .u32(16_384)
            .u8(b'K')
            .i16(3)
            .text("1")
            .u8(b'n')
            .u8(b'n')
            .u8(b'N')
            .i16(3)
            .text("2")
            .u8(b'n')
            .u8(b'n')
            .bytes();
        check(
            &update_key,
            &LogicalMessage::Update(Update {
                relation_oid: 16_384,
                key: Some(Tuple(vec![text("1"), TupleValue::Null, TupleValue::Null])),
                old: None,
                new: Tuple(vec![text("2"), TupleValue::Null, TupleValue::Null]),
            }),
        );

        let update_plain = W::default()
            .u8(b'U')
            .u32(16_384)
            .u8(b'N')
            .i16(1)
            .u8(b'b')
            .i32(2)
            .raw(&[0xff, 0x00])
            .bytes();
        check(
            &update_plain,
            &LogicalMessage::Update(Update {
                relation_oid: 16_384,
                key: None,
                old: None,
                new: Tuple(vec![TupleValue::Binary(Bytes::from_static(&[0xff, 0]))]),
            }),
        );

        let delete = W::default()
            .u8(b'D')
            .u32(16_384)
            .u8(b'O')
            .i16(3)
            .text("1")
            .text("")
            .text("long body")
            .bytes();
        check(
            &delete,
            &LogicalMessage::Delete(Delete {
                relation_oid: 16_384,
                key: None,
                old: Some(Tuple(vec![text("1"), text(""), text("long body")])),
            }),
        );

        let delete_key = W::default().u8(b'D').u32(7).u8(b'K').i16(0).bytes();
        check(
            &delete_key,
            &LogicalMessage::Delete(Delete {
                relation_oid: 7,
                key: Some(Tuple(vec![])),
                old: None,
            }),
        );

        let truncate = W::default()
            .u8(b'T')
            .i32(2)
            .u8(Truncate::CASCADE | Truncate::RESTART_IDENTITY)
            .u32(16_384)
            .u32(16_390)
            .bytes();
        check(
            &truncate,
            &LogicalMessage::Truncate(Truncate {
                options: 3,
                relation_oids: vec![16_384, 16_390],
            }),
        );
    }

    #[test]
    fn values_are_zero_copy_slices() {
        let wire = W::default()
            .u8(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .text("abc")
            .bytes();
        let Ok(LogicalMessage::Insert(ins)) = decode(&wire) else {
            panic!("decode failed")
        };
        let TupleValue::Text(v) = &ins.new.0[0] else {
            panic!("not text")
        };
        // The value must point into the frame, not into a copy.
        let frame = wire.as_ptr_range();
        assert!(frame.contains(&v.as_ptr()));
    }

    #[test]
    fn empty_and_unknown_tags() {
        assert_eq!(decode(&Bytes::new()), Err(DecodeError::Empty));
        // Streaming / 2PC tags are not protocol 1.
        for tag in [
            b'S', b'E', b'c', b'A', b'b', b'P', b'K', b'r', b'p', b'x', 0,
        ] {
            assert_eq!(
                decode(&Bytes::from(vec![tag, 0, 0, 0, 0])),
                Err(DecodeError::UnknownTag(tag))
            );
        }
    }

    #[test]
    fn bad_tuple_kind() {
        let wire = W::default()
            .u8(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .u8(b'x')
            .bytes();
        assert_eq!(decode(&wire), Err(DecodeError::BadTupleKind(b'x')));
    }

    #[test]
    fn bad_tuple_markers() {
        let insert_k = W::default().u8(b'I').u32(1).u8(b'K').i16(0).bytes();
        assert_eq!(
            decode(&insert_k),
            Err(DecodeError::BadTupleMarker {
                what: "insert",
                found: b'K'
            })
        );
        // Postgres sends at most one of K/O before N.
        let update_ko = W::default()
            .u8(b'U')
            .u32(1)
            .u8(b'K')
            .i16(0)
            .u8(b'O')
            .i16(0)
            .u8(b'N')
            .i16(0)
            .bytes();
        assert_eq!(
            decode(&update_ko),
            Err(DecodeError::BadTupleMarker {
                what: "update",
                found: b'O'
            })
        );
        let delete_n = W::default().u8(b'D').u32(1).u8(b'N').i16(0).bytes();
        assert_eq!(
            decode(&delete_n),
            Err(DecodeError::BadTupleMarker {
                what: "delete",
                found: b'N'
            })
        );
    }

    #[test]
    fn bad_message_flags() {
        let wire = W::default().u8(b'M').u8(2).u64(0).s("").i32(0).bytes();
        assert_eq!(
            decode(&wire),
            Err(DecodeError::BadFlags {
                what: "message flags",
                value: 2
            })
        );
    }

    #[test]
    fn negative_counts() {
        let tuple = W::default().u8(b'I').u32(1).u8(b'N').i16(-1).bytes();
        assert_eq!(
            decode(&tuple),
            Err(DecodeError::CountNegative {
                what: "tuple column count",
                count: -1
            })
        );
        let value = W::default()
            .u8(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .u8(b't')
            .i32(-1)
            .bytes();
        assert_eq!(
            decode(&value),
            Err(DecodeError::CountNegative {
                what: "tuple value length",
                count: -1
            })
        );
        let relation = W::default()
            .u8(b'R')
            .u32(1)
            .s("s")
            .s("t")
            .u8(b'd')
            .i16(i16::MIN)
            .bytes();
        assert_eq!(
            decode(&relation),
            Err(DecodeError::CountNegative {
                what: "relation column count",
                count: -32768
            })
        );
        let truncate = W::default().u8(b'T').i32(i32::MIN).u8(0).bytes();
        assert_eq!(
            decode(&truncate),
            Err(DecodeError::CountNegative {
                what: "truncate relation count",
                count: i32::MIN
            })
        );
        let message = W::default().u8(b'M').u8(0).u64(0).s("p").i32(-7).bytes();
        assert_eq!(
            decode(&message),
            Err(DecodeError::CountNegative {
                what: "message content length",
                count: -7
            })
        );
    }

    #[test]
    fn huge_counts_on_tiny_buffers_fail_without_big_allocations() {
        // 32767 columns announced, 1 present: must be a Truncated error, and
        // the reservation is bounded by remaining bytes (checked indirectly:
        // a 4 GiB-ish reservation for i32::MAX oids would abort the test).
        let tuple = W::default()
            .u8(b'I')
            .u32(1)
            .u8(b'N')
            .i16(i16::MAX)
            .u8(b'n')
            .bytes();
        assert!(matches!(
            decode(&tuple),
            Err(DecodeError::Truncated {
                what: "tuple value kind",
                ..
            })
        ));
        let relation = W::default()
            .u8(b'R')
            .u32(1)
            .s("")
            .s("")
            .u8(b'd')
            .i16(i16::MAX)
            .bytes();
        assert!(matches!(
            decode(&relation),
            Err(DecodeError::Truncated { .. })
        ));
        let truncate = W::default().u8(b'T').i32(i32::MAX).u8(0).u32(5).bytes();
        assert!(matches!(
            decode(&truncate),
            Err(DecodeError::Truncated {
                what: "truncate relation oid",
                needed: 4,
                available: 0
            })
        ));
        let text = W::default()
            .u8(b'I')
            .u32(1)
            .u8(b'N')
            .i16(1)
            .u8(b't')
            .i32(i32::MAX)
            .raw(b"abc")
            .bytes();
        assert_eq!(
            decode(&text),
            Err(DecodeError::Truncated {
                what: "tuple text value",
                needed: usize::try_from(i32::MAX).unwrap(),
                available: 3
            })
        );
    }

    #[test]
    fn bounded_capacity_is_bounded() {
        let buf = Bytes::from_static(&[0; 10]);
        let r = Reader::new(&buf);
        assert_eq!(r.bounded_capacity(32_767, 1), 10);
        assert_eq!(r.bounded_capacity(32_767, MIN_RELATION_COLUMN_SIZE), 1);
        assert_eq!(r.bounded_capacity(3, 1), 3);
        assert_eq!(r.bounded_capacity(3, 0), 3);
    }

    #[test]
    fn missing_nul_and_bad_utf8() {
        let no_nul = W::default().u8(b'O').u64(1).raw(b"abc").bytes();
        assert_eq!(
            decode(&no_nul),
            Err(DecodeError::MissingNul {
                what: "origin name"
            })
        );
        let bad = W::default().u8(b'O').u64(1).raw(&[0xC3, 0x28, 0]).bytes();
        assert_eq!(
            decode(&bad),
            Err(DecodeError::NotUtf8 {
                what: "origin name"
            })
        );
        let col = W::default()
            .u8(b'R')
            .u32(1)
            .s("public")
            .s("t")
            .u8(b'd')
            .i16(1)
            .u8(0)
            .raw(b"col")
            .bytes();
        assert_eq!(
            decode(&col),
            Err(DecodeError::MissingNul {
                what: "column name"
            })
        );
    }

    #[test]
    fn trailing_bytes() {
        let wire = W::default()
            .u8(b'T')
            .i32(1)
            .u8(0)
            .u32(1)
            .raw(&[1, 2, 3])
            .bytes();
        assert_eq!(decode(&wire), Err(DecodeError::TrailingBytes(3)));
    }

    #[test]
    fn errors_display() {
        let e = DecodeError::Truncated {
            what: "begin xid",
            needed: 4,
            available: 1,
        };
        assert_eq!(
            e.to_string(),
            "truncated pgoutput message reading begin xid: needed 4 bytes, 1 available"
        );
        assert_eq!(
            DecodeError::UnknownTag(b'S').to_string(),
            "unknown pgoutput message tag 0x53"
        );
    }

    // ---- property tests ----

    fn name() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,12}"
    }

    fn payload() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
    }

    fn value() -> impl Strategy<Value = TupleValue> {
        prop_oneof![
            Just(TupleValue::Null),
            Just(TupleValue::UnchangedToast),
            payload().prop_map(TupleValue::Text),
            payload().prop_map(TupleValue::Binary),
        ]
    }

    fn tuple() -> impl Strategy<Value = Tuple> {
        proptest::collection::vec(value(), 0..8).prop_map(Tuple)
    }

    fn message() -> impl Strategy<Value = LogicalMessage> {
        let column = (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
            |(flags, name, type_oid, type_modifier)| RelationColumn {
                flags,
                name,
                type_oid,
                type_modifier,
            },
        );
        // Update: none, key or old (never both — Postgres never sends both).
        let update_old = prop_oneof![
            Just((None, None)),
            tuple().prop_map(|t| (Some(t), None)),
            tuple().prop_map(|t| (None, Some(t))),
        ];
        let delete_old = prop_oneof![
            tuple().prop_map(|t| (Some(t), None)),
            tuple().prop_map(|t| (None, Some(t))),
        ];
        prop_oneof![
            (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| {
                LogicalMessage::Begin(Begin {
                    final_lsn,
                    commit_time,
                    xid,
                })
            }),
            (any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
                |(flags, commit_lsn, end_lsn, commit_time)| LogicalMessage::Commit(Commit {
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                })
            ),
            (any::<u64>(), name()).prop_map(|(commit_lsn, name)| {
                LogicalMessage::Origin(Origin { commit_lsn, name })
            }),
            (
                any::<u32>(),
                name(),
                name(),
                any::<u8>(),
                proptest::collection::vec(column, 0..6)
            )
                .prop_map(|(oid, namespace, name, replica_identity, columns)| {
                    LogicalMessage::Relation(Relation {
                        oid,
                        namespace,
                        name,
                        replica_identity,
                        columns,
                    })
                }),
            (any::<u32>(), name(), name()).prop_map(|(oid, namespace, name)| {
                LogicalMessage::Type(TypeMessage {
                    oid,
                    namespace,
                    name,
                })
            }),
            (any::<u32>(), tuple()).prop_map(|(relation_oid, new)| {
                LogicalMessage::Insert(Insert { relation_oid, new })
            }),
            (any::<u32>(), update_old, tuple()).prop_map(|(relation_oid, (key, old), new)| {
                LogicalMessage::Update(Update {
                    relation_oid,
                    key,
                    old,
                    new,
                })
            }),
            (any::<u32>(), delete_old).prop_map(|(relation_oid, (key, old))| {
                LogicalMessage::Delete(Delete {
                    relation_oid,
                    key,
                    old,
                })
            }),
            (any::<u8>(), proptest::collection::vec(any::<u32>(), 0..6)).prop_map(
                |(options, relation_oids)| LogicalMessage::Truncate(Truncate {
                    options,
                    relation_oids,
                })
            ),
            (any::<bool>(), any::<u64>(), name(), payload()).prop_map(
                |(transactional, lsn, prefix, content)| LogicalMessage::Message(Message {
                    transactional,
                    lsn,
                    prefix,
                    content,
                })
            ),
        ]
    }

    fn encoded(m: &LogicalMessage) -> Vec<u8> {
        let mut out = Vec::new();
        encode(m, &mut out);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn roundtrip(m in message()) {
            let wire = Bytes::from(encoded(&m));
            prop_assert_eq!(decode(&wire), Ok(m));
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(
            raw in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = decode(&Bytes::from(raw));
        }

        #[test]
        fn never_panics_on_tagged_garbage(
            tag in proptest::sample::select(b"BCORYIUDTM".to_vec()),
            raw in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut wire = vec![tag];
            wire.extend(raw);
            let _ = decode(&Bytes::from(wire));
        }

        #[test]
        fn mutations_never_panic(
            m in message(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut wire = encoded(&m);
            for (at, byte) in edits {
                let i = at.index(wire.len());
                wire[i] = byte;
            }
            let _ = decode(&Bytes::from(wire.clone()));
            let len = cut.index(wire.len() + 1);
            wire.truncate(len);
            let _ = decode(&Bytes::from(wire));
        }

        #[test]
        fn truncations_are_errors(m in message(), cut in any::<prop::sample::Index>()) {
            let wire = Bytes::from(encoded(&m));
            let len = cut.index(wire.len());
            prop_assert!(decode(&wire.slice(..len)).is_err());
        }
    }
}
