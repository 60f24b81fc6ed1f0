//! Opening the store a command reads (`audit verify`, `audit export`,
//! `report`) where `serve` would find it: PostgreSQL by URL, or an existing
//! sled data directory (refused when it holds no database, never read as an
//! empty store), with a page cache sized for one walk through it.

use std::path::Path;
use std::sync::Arc;

use super::postgres::PgEngine;
use super::url::mask_url;
use super::{SledEngine, SledOptions, Store, StoreEngine, StoreError};
use crate::config::StoreLocation;

/// sled's page cache for a walk through the store: each page is read once,
/// so a large cache would only hold what is already written out.
const READER_CACHE: u64 = 8 << 20;

/// The store at `location`, for a command that reads it.
pub async fn open_for_reading(
    location: &StoreLocation,
) -> Result<Arc<dyn StoreEngine>, StoreError> {
    Ok(match location {
        StoreLocation::Postgres(url) => {
            let engine = PgEngine::connect(url.expose()).await?;
            tracing::debug!(database = %mask_url(url.expose()), "reading the store in PostgreSQL");
            Arc::new(engine)
        }
        StoreLocation::Sled(dir) => open_sled(dir)?,
    })
}

fn open_sled(dir: &Path) -> Result<Arc<dyn StoreEngine>, StoreError> {
    let store = Store::open_existing_with(
        dir,
        &SledOptions {
            cache_capacity: READER_CACHE,
        },
    )?;
    Ok(Arc::new(SledEngine::new(Arc::new(store))))
}
