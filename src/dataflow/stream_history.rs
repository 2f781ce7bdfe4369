//! [`StreamHistory`]: the rows a stream has carried so far, for a view created over it.
//!
//! A stream (`Layout::Stream`) stores no rows, yet a view created over it must see the whole
//! stream, as a view over a stored table sees the table: the coordinator asks the stream's
//! connector to replay it up to the position committed in the epoch the view is created in
//! (a generator regenerates its events; the source then goes on from that position). The
//! trait keeps the dataflow layer free of connector code.

use std::sync::Arc;

use super::changes::Changes;
use crate::catalog::{Catalog, Table};
use crate::error::Result;
use crate::state::StateSnapshot;

pub trait StreamHistory: Send + Sync {
    /// Every row stream `table` carried up to the source position committed in `snapshot`,
    /// in its visible columns, as insertions.
    fn replay(&self, catalog: &Catalog, table: &Arc<Table>, snapshot: &dyn StateSnapshot) -> Result<Changes>;
}
