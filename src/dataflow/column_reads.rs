//! [`ColumnReads`]: which columns of each relation the views read, so that a source feeding a
//! stream (`Layout::Stream`) builds only those (projection pushdown into the source).
//!
//! A view reads a relation through the `Source` nodes of its dataflow, each projected to the
//! columns its plan uses (DataFusion pushes projections down to the scan). The union over all
//! views is what a stream's rows must carry; the rest can be placeholders. Invariant kept by the
//! coordinator: no view ever sees a placeholder. It recomputes the reads when views come and go,
//! publishes them with each committed epoch (`Committed::reads`; source tasks start with them),
//! and refuses (retryably) stream rows that lack a column some view reads: rows built before a
//! new view widened the set. `SourceRuntime::reconcile` then restarts the source with the new
//! set, from its last committed position, so the refused rows are generated again in full.

use std::collections::HashMap;

use super::graph::{NodeKind, ViewDataflow};

/// Columns of one relation (indexes into its visible columns, ascending); `None`: every column.
pub type Columns = Option<Vec<usize>>;

/// The columns each relation's readers use: relation id → columns (absent: nobody reads it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColumnReads {
    by_relation: HashMap<u32, Columns>,
}

impl ColumnReads {
    /// The union of what `views` read.
    pub fn of<'a>(views: impl IntoIterator<Item = &'a ViewDataflow>) -> ColumnReads {
        let mut by_relation: HashMap<u32, Columns> = HashMap::new();
        for view in views {
            for node in &view.nodes {
                if let NodeKind::Source { relation, columns } = &node.kind {
                    let entry = by_relation.entry(*relation).or_insert_with(|| Some(Vec::new()));
                    match (entry.as_mut(), columns) {
                        (Some(have), Some(read)) => {
                            have.extend_from_slice(read);
                            have.sort_unstable();
                            have.dedup();
                        }
                        _ => *entry = None,
                    }
                }
            }
        }
        ColumnReads { by_relation }
    }

    /// The columns of `relation` some view reads; None if no view reads it.
    pub fn get(&self, relation: u32) -> Option<&Columns> {
        self.by_relation.get(&relation)
    }

    /// Whether rows of `relation` holding real values only in `present` (None: in every column)
    /// give every view all it reads.
    pub fn covered_by(&self, relation: u32, present: &Columns) -> bool {
        match (present, self.by_relation.get(&relation)) {
            (None, _) | (_, None) => true,
            (Some(_), Some(None)) => false,
            (Some(present), Some(Some(read))) => read.iter().all(|c| present.binary_search(c).is_ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::Schema;

    use super::*;
    use crate::dataflow::graph::Node;
    use crate::dataflow::stored_rows::StoredRows;

    fn view(id: u32, sources: &[(u32, Columns)]) -> ViewDataflow {
        ViewDataflow {
            view: id,
            nodes: sources
                .iter()
                .map(|(relation, columns)| Node {
                    kind: NodeKind::Source {
                        relation: *relation,
                        columns: columns.clone(),
                    },
                    schema: Arc::new(Schema::empty()),
                })
                .collect(),
            append_only: true,
            groups: None,
            stored_rows: StoredRows::default(),
        }
    }

    #[test]
    fn reads_are_the_union_over_views_and_every_column_wins() {
        let views = [
            view(10, &[(1, Some(vec![3, 0])), (2, Some(vec![]))]),
            view(11, &[(1, Some(vec![0, 5])), (2, Some(vec![1]))]),
            view(12, &[(3, Some(vec![2])), (3, None)]),
        ];
        let reads = ColumnReads::of(&views);
        assert_eq!(reads.get(1), Some(&Some(vec![0, 3, 5])));
        assert_eq!(reads.get(2), Some(&Some(vec![1])));
        assert_eq!(reads.get(3), Some(&None));
        assert_eq!(reads.get(4), None);

        assert!(reads.covered_by(1, &Some(vec![0, 3, 5])));
        assert!(reads.covered_by(1, &Some(vec![0, 1, 2, 3, 4, 5, 6])));
        assert!(!reads.covered_by(1, &Some(vec![0, 3])), "column 5 missing");
        assert!(reads.covered_by(1, &None));
        assert!(!reads.covered_by(3, &Some(vec![0, 1, 2])), "a view reads every column");
        assert!(reads.covered_by(4, &Some(vec![])), "nobody reads relation 4");
    }
}
