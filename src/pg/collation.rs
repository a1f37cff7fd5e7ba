//! The database's default collation, and whether it orders strings bytewise.
//!
//! Role: jsonb ordering compares the strings inside documents with the database's default
//! collation, which no `COLLATE` in the snapshot SQL can change, while the live evaluator
//! compares bytes. Shapes whose clause orders jsonb are therefore exact only when that
//! collation is bytewise; [`DbCollation::check_bytewise`] is the (pure) decision.
//!
//! Invariants:
//! * Bytewise means the libc provider with `C`, `POSIX`, `C.UTF-8` or `C.utf8`, or PG 17's
//!   builtin provider with `C`/`C.UTF-8` (code-point order, which is UTF-8 byte order).
//!   Any ICU default is not bytewise, whatever `datcollate` says.
//! * The lookup reads `pg_database` through `to_jsonb`, so it works on PG versions with and
//!   without `datlocprovider`/`daticulocale`/`datlocale`.

/// `pg_database` collation settings of the current database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbCollation {
    /// `datcollate` (the libc locale).
    pub collate: String,
    /// `datlocprovider`: `c` (libc), `i` (ICU), `b` (builtin); `None` before PG 15.
    pub provider: Option<String>,
    /// `daticulocale` (PG 15–16) or `datlocale` (PG 17+).
    pub locale: Option<String>,
}

/// The lookup query (one row).
pub const QUERY: &str = "SELECT d.datcollate::text, to_jsonb(d)->>'datlocprovider', \
     coalesce(to_jsonb(d)->>'datlocale', to_jsonb(d)->>'daticulocale') \
     FROM pg_database d WHERE d.datname = current_database()";

impl DbCollation {
    /// Reads the current database's collation settings.
    pub async fn fetch(
        client: &tokio_postgres::Client,
    ) -> Result<DbCollation, tokio_postgres::Error> {
        let row = client.query_one(QUERY, &[]).await?;
        Ok(DbCollation {
            collate: row.try_get(0)?,
            provider: row.try_get(1)?,
            locale: row.try_get(2)?,
        })
    }

    /// The collation's name as a user would recognise it (the ICU locale when ICU is the
    /// provider).
    pub fn name(&self) -> String {
        match (self.provider.as_deref(), &self.locale) {
            (Some("i"), Some(l)) => format!("ICU locale \"{l}\""),
            (Some("b"), Some(l)) => format!("builtin locale \"{l}\""),
            _ => format!("\"{}\"", self.collate),
        }
    }

    /// Whether strings compare as their bytes under this default collation.
    pub fn is_bytewise(&self) -> bool {
        let c_locale = |l: &str| matches!(l, "C" | "POSIX" | "C.UTF-8" | "C.utf8");
        match self.provider.as_deref() {
            None | Some("c") => c_locale(&self.collate),
            Some("b") => self
                .locale
                .as_deref()
                .is_some_and(|l| matches!(l, "C" | "C.UTF-8")),
            Some(_) => false,
        }
    }

    /// `Err(message)` when a clause that orders jsonb cannot be evaluated exactly here.
    pub fn check_bytewise(&self, needs_bytewise: bool) -> Result<(), String> {
        if !needs_bytewise || self.is_bytewise() {
            return Ok(());
        }
        Err(format!(
            "ordering jsonb values is not supported on this database: Postgres compares the \
             strings inside them with the database's default collation ({}), which Ampere \
             cannot reproduce; it needs a C/POSIX default collation",
            self.name()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libc(collate: &str) -> DbCollation {
        DbCollation {
            collate: collate.to_owned(),
            provider: Some("c".to_owned()),
            locale: None,
        }
    }

    #[test]
    fn only_bytewise_collations_pass() {
        for c in ["C", "POSIX", "C.UTF-8", "C.utf8"] {
            assert!(libc(c).is_bytewise(), "{c}");
            assert_eq!(libc(c).check_bytewise(true), Ok(()));
        }
        let en = libc("en_US.UTF-8");
        assert!(!en.is_bytewise());
        assert_eq!(en.check_bytewise(false), Ok(()));
        let e = en.check_bytewise(true).expect_err("en_US");
        assert!(e.contains("\"en_US.UTF-8\""), "{e}");
        let icu = DbCollation {
            collate: "C.UTF-8".to_owned(),
            provider: Some("i".to_owned()),
            locale: Some("en-US".to_owned()),
        };
        assert!(!icu.is_bytewise());
        assert!(
            icu.check_bytewise(true)
                .expect_err("icu")
                .contains("ICU locale \"en-US\"")
        );
        let pre15 = DbCollation {
            provider: None,
            ..libc("C")
        };
        assert!(pre15.is_bytewise());
        let builtin = DbCollation {
            collate: "C".to_owned(),
            provider: Some("b".to_owned()),
            locale: Some("C.UTF-8".to_owned()),
        };
        assert!(builtin.is_bytewise());
    }

    /// The lookup against real clusters: the default C.UTF-8 one, and one whose default
    /// collation is ICU `en-US` (where `'"a"'::jsonb < '"B"'::jsonb`, unlike bytes).
    #[test]
    fn lookup_reads_the_provider_of_real_databases() {
        use crate::pg::local_cluster::{ClusterOptions, LocalCluster};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let fetch = |url: String| {
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                tokio::spawn(conn);
                let c = DbCollation::fetch(&client).await.expect("fetch");
                let a_below_b: bool = client
                    .query_one(r#"SELECT '"a"'::jsonb < '"B"'::jsonb"#, &[])
                    .await
                    .expect("jsonb")
                    .get(0);
                (c, a_below_b)
            })
        };
        let c_cluster = LocalCluster::start_temp().expect("C cluster");
        let (c, a_below_b) = fetch(c_cluster.url());
        assert!(c.is_bytewise(), "{c:?}");
        assert!(!a_below_b, "bytewise order puts \"B\" first");
        let icu_cluster = LocalCluster::start(ClusterOptions {
            initdb_args: vec!["--locale-provider=icu".into(), "--icu-locale=en-US".into()],
            ..ClusterOptions::default()
        })
        .expect("ICU cluster");
        let (icu, a_below_b) = fetch(icu_cluster.url());
        assert!(!icu.is_bytewise(), "{icu:?}");
        assert!(a_below_b, "ICU en-US puts \"a\" first");
        assert!(icu.check_bytewise(true).is_err());
    }
}
