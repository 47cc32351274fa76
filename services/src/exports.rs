//! Pages of the whole store for the exports: record-to-customer assignments and golden records.
//! Keyset pagination keeps each page one indexed query, whatever the store's size, so the API
//! can stream an export of any length in constant memory.

use c360_domain::{ExportedCustomer, GoldenRecord};
use sqlx::Row;

use crate::error::{ServiceError, StoreError};
use crate::resolver::{parse_customer_id, stored_enrichment_at, to_time};
use crate::Resolver;

/// One line of the assignments export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub source: String,
    pub source_id: String,
    pub customer_id: String,
}

impl Resolver {
    /// Up to `limit` assignments after the record `after` (`(source, source_id)` order).
    pub async fn assignments_after(
        &self,
        after: Option<&(String, String)>,
        limit: i64,
    ) -> Result<Vec<Assignment>, ServiceError> {
        let query = match after {
            None => sqlx::query(
                "SELECT source, source_id, customer_id FROM records \
                 ORDER BY source, source_id LIMIT $1",
            )
            .bind(limit),
            Some((source, source_id)) => sqlx::query(
                "SELECT source, source_id, customer_id FROM records \
                 WHERE source > $1 OR (source = $1 AND source_id > $2) \
                 ORDER BY source, source_id LIMIT $3",
            )
            .bind(source.clone())
            .bind(source_id.clone())
            .bind(limit),
        };
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok(Assignment {
                    source: r.try_get(0)?,
                    source_id: r.try_get(1)?,
                    customer_id: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Up to `limit` current customers after the id `after`, in id order.
    pub async fn customers_after(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ExportedCustomer>, ServiceError> {
        let rows = sqlx::query(
            "SELECT id, golden, record_count, version, updated_at, enrichment, enrichment_key, \
             enrichment_pending FROM customers WHERE merged_into IS NULL AND id > $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let golden: String = r.try_get(1)?;
                let golden: GoldenRecord = serde_json::from_str(&golden)
                    .map_err(|e| StoreError::Corrupt(format!("golden record: {e}")))?;
                Ok(ExportedCustomer {
                    customer_id: parse_customer_id(&r.try_get::<String, _>(0)?)?,
                    golden,
                    enrichment: stored_enrichment_at(r, 5)?,
                    record_count: u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
                    version: r.try_get(3)?,
                    updated_at: to_time(r.try_get(4)?),
                })
            })
            .collect()
    }
}
