//! The [`Operator`] trait and the keyed state operators keep in the store.
//!
//! An operator turns input [`Changes`] into output `Changes`. Stateful operators keep their state
//! in [`StateTable`]s ([`super::state_table`]), which the dataflow flushes at the barrier (and
//! aborts when the epoch fails) through [`Operator::state_tables`].

use std::collections::HashMap;
use std::sync::Arc;

use super::changes::Changes;
pub use super::state_table::{decode_i64, StateTable};
use crate::error::Result;
use crate::state::{StateSnapshot, StateStore};

/// What an operator sees of the store during one epoch.
pub struct EpochContext {
    /// The last committed state.
    pub snapshot: Arc<dyn StateSnapshot>,
    /// The store, for writes that must precede the epoch's batch and stay invisible until it
    /// commits (a state table's checkpoint chunks, `state_log`).
    pub store: Arc<dyn StateStore>,
    /// The epoch being computed.
    pub epoch: super::Epoch,
    /// Which committed epochs last wrote each relation (for rows kept across epochs).
    pub written: Arc<RelationWrites>,
}

/// The last committed epoch that wrote each relation's rows, and the last that committed a
/// catalog change (which may rewrite any relation): what an operator that keeps rows it read
/// from the store across epochs checks before using them (a temporal join's table rows).
/// Kept by the coordinator in memory: after a restart nothing has been written yet, and no
/// operator holds rows read before it.
#[derive(Clone, Debug, Default)]
pub struct RelationWrites {
    by_relation: HashMap<u32, super::Epoch>,
    ddl: super::Epoch,
}

impl RelationWrites {
    /// The last committed epoch that may have changed `relation`'s rows (0: none since the
    /// server started).
    pub fn last(&self, relation: u32) -> super::Epoch {
        self.by_relation.get(&relation).copied().unwrap_or(0).max(self.ddl)
    }

    /// Records a committed epoch: the relations whose rows it wrote, and whether it changed
    /// the catalog.
    pub fn record(&mut self, epoch: super::Epoch, relations: impl IntoIterator<Item = u32>, ddl: bool) {
        for r in relations {
            self.by_relation.insert(r, epoch);
        }
        if ddl {
            self.ddl = epoch;
        }
    }
}

/// An incremental operator.
pub trait Operator: Send {
    /// Processes the changes arriving on input `port` (0, or 0/1 for joins).
    fn process(&mut self, port: usize, input: Changes, ctx: &EpochContext) -> Result<Changes>;

    /// The operator's state tables (none for stateless operators).
    fn state_tables(&mut self) -> Vec<&mut StateTable> {
        Vec::new()
    }

    /// A one-line description for `EXPLAIN CREATE MATERIALIZED VIEW`.
    fn describe(&self) -> String;

    /// True if insertions in give only insertions out, whatever came before (filters,
    /// projections, unions): a view of such operators over append-only inputs only gains rows.
    fn append_only(&self) -> bool {
        false
    }

    /// How the output falls into small groups ([`RowGroups`]), given the same of the first
    /// input (`input`). None: the groups are not known to be bounded.
    fn bounded_groups(&self, input: Option<&RowGroups>) -> Option<RowGroups> {
        let _ = input;
        None
    }
}

/// Output columns that split an operator's output into groups of at most
/// `state::groups::MAX_ROWS` rows each: a per-group top-N's partition columns, an aggregate's
/// GROUP BY columns. A materialized view whose rows fall into such groups is stored one key per
/// group (`Layout::Groups`).
#[derive(Clone, Debug, PartialEq)]
pub struct RowGroups {
    /// The group columns (none: the whole output is one group).
    pub columns: Vec<usize>,
    /// Each group holds at most one row, once (an aggregate's group, a top-1): an epoch's
    /// changes to a group then give its new row without reading the old one.
    pub single: bool,
}
