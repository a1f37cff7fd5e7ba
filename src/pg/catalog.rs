//! Catalog queries: resolve a relation name to its oid, columns, types and primary key.

use std::sync::Arc;

use tokio_postgres::Client;

use crate::shape::table::{ColumnInfo, TableInfo};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("table \"{0}\".\"{1}\" does not exist")]
    NotFound(String, String),
    #[error("catalog query failed")]
    Db(#[from] tokio_postgres::Error),
}

/// Looks up an ordinary or partitioned table by schema and name.
pub async fn load_table(
    client: &Client,
    schema: &str,
    name: &str,
) -> Result<Arc<TableInfo>, CatalogError> {
    let rel = client
        .query_opt(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&schema, &name],
        )
        .await?;
    let Some(rel) = rel else {
        return Err(CatalogError::NotFound(schema.to_owned(), name.to_owned()));
    };
    let oid: u32 = rel.get(0);
    let rows = client
        .query(
            "SELECT a.attname::text, \
                    COALESCE(e.typname, t.typname)::text, \
                    COALESCE(e.oid, t.oid), \
                    a.atttypmod, \
                    CASE WHEN e.oid IS NOT NULL THEN GREATEST(a.attndims, 1) ELSE 0 END, \
                    a.attnotnull, \
                    COALESCE(e.typtype, t.typtype)::text, \
                    a.attgenerated <> '' \
             FROM pg_attribute a \
             JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type e ON t.typcategory = 'A' AND e.oid = t.typelem \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&oid],
        )
        .await?;
    let mut columns = Vec::with_capacity(rows.len());
    let mut generated = Vec::new();
    for r in &rows {
        let name: String = r.get(0);
        if r.get::<_, bool>(7) {
            generated.push(name);
            continue;
        }
        let dims: i32 = r.get(4);
        columns.push(ColumnInfo {
            name,
            type_name: r.get(1),
            type_oid: r.get(2),
            type_mod: r.get(3),
            dims: u32::try_from(dims).unwrap_or(0),
            not_null: r.get(5),
            type_kind: r.get(6),
            enum_labels: None,
        });
    }
    for c in &mut columns {
        if c.type_kind == "e" {
            let labels = client
                .query(
                    "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder",
                    &[&c.type_oid],
                )
                .await?;
            c.enum_labels = Some(labels.iter().map(|r| r.get(0)).collect());
        }
    }
    let pk_rows = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
            &[&oid],
        )
        .await?;
    let pk_names: Vec<String> = pk_rows.iter().map(|r| r.get(0)).collect();
    let has_pk = !pk_names.is_empty();
    let pk: Vec<usize> = if has_pk {
        pk_names
            .iter()
            .filter_map(|n| columns.iter().position(|c| &c.name == n))
            .collect()
    } else {
        (0..columns.len()).collect()
    };
    Ok(Arc::new(TableInfo {
        oid,
        schema: schema.to_owned(),
        name: name.to_owned(),
        columns,
        pk,
        has_pk,
        generated,
    }))
}
