//! [`ViewDataflow`]: the operator graph that maintains one materialized view.
//!
//! Nodes are kept in topological order (inputs before the nodes that read them). An epoch pushes
//! the changes of every source relation through the graph once; the last node's output is the
//! view's change for the epoch. At the barrier every operator flushes its state into the
//! epoch's `WriteBatch`.

use std::collections::HashMap;

use datafusion::arrow::datatypes::SchemaRef;

use super::changes::Changes;
use super::operator::{EpochContext, Operator, RowGroups, StateTable};
use super::stored_rows::StoredRows;
use crate::error::Result;
use crate::state::WriteBatch;

/// Where a node's input comes from.
pub enum NodeKind {
    /// Changes of a table or view, projected to `columns` (indexes into its visible columns).
    Source {
        relation: u32,
        columns: Option<Vec<usize>>,
    },
    Op {
        op: Box<dyn Operator>,
        inputs: Vec<usize>,
    },
}

pub struct Node {
    pub kind: NodeKind,
    /// The node's output schema (without the weight column).
    pub schema: SchemaRef,
}

pub struct ViewDataflow {
    pub view: u32,
    pub nodes: Vec<Node>,
    /// True if the view only ever gains rows: every relation it reads does and every
    /// operator turns insertions into insertions (set by the planner).
    pub append_only: bool,
    /// How the view's rows fall into small groups (a per-group top-N's partition columns, an
    /// aggregate's GROUP BY columns), if they do (set by the planner): the view is then stored
    /// by group (`Layout::Groups`).
    pub groups: Option<RowGroups>,
    /// Which rows the view holds, when it is stored one key per row.
    pub stored_rows: StoredRows,
}

impl ViewDataflow {
    /// Relations this view reads.
    pub fn sources(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .nodes
            .iter()
            .filter_map(|n| match n.kind {
                NodeKind::Source { relation, .. } => Some(relation),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Pushes one epoch's changes through the graph; `deltas` holds the changes of every
    /// relation (visible columns). With `all`, every operator runs even without input (the
    /// backfill epoch, where a global aggregate creates its row). The output is not
    /// consolidated (equal rows may appear more than once): the view's store sums them.
    pub fn run(&mut self, deltas: &HashMap<u32, Changes>, ctx: &EpochContext, all: bool) -> Result<Changes> {
        let schemas: Vec<SchemaRef> = self.nodes.iter().map(|n| n.schema.clone()).collect();
        let mut outputs: Vec<Option<Changes>> = Vec::with_capacity(self.nodes.len());
        for node in &mut self.nodes {
            let out = match &mut node.kind {
                NodeKind::Source { relation, columns } => match deltas.get(relation) {
                    Some(c) => Some(match columns {
                        Some(cols) => {
                            let mut idx = cols.clone();
                            idx.push(c.batch().num_columns() - 1);
                            Changes::from_weighted(c.batch().project(&idx)?)?
                        }
                        None => c.clone(),
                    }),
                    None => None,
                },
                NodeKind::Op { op, inputs } => {
                    let any = inputs
                        .iter()
                        .any(|i| outputs[*i].as_ref().is_some_and(|c| !c.is_empty()));
                    if !any && !all {
                        None
                    } else {
                        let mut parts = Vec::with_capacity(inputs.len());
                        for (port, i) in inputs.iter().enumerate() {
                            let input = outputs[*i]
                                .clone()
                                .unwrap_or_else(|| Changes::empty(schemas[*i].clone()));
                            parts.push(op.process(port, input, ctx)?);
                        }
                        Some(Changes::concat(&node.schema, &parts)?)
                    }
                }
            };
            outputs.push(out);
        }
        let last = outputs.pop().flatten();
        Ok(match last {
            Some(c) => c,
            None => Changes::empty(self.nodes.last().map(|n| n.schema.clone()).expect("a view has nodes")),
        })
    }

    /// Every state table of every operator.
    fn state_tables(&mut self) -> impl Iterator<Item = &mut StateTable> {
        self.nodes.iter_mut().flat_map(|n| match &mut n.kind {
            NodeKind::Op { op, .. } => op.state_tables(),
            NodeKind::Source { .. } => Vec::new(),
        })
    }

    /// Writes every operator's buffered state into `batch` (and into the state mirrors).
    pub fn flush(&mut self, ctx: &EpochContext, batch: &mut WriteBatch) -> Result<()> {
        for t in self.state_tables() {
            t.flush(ctx, batch)?;
        }
        Ok(())
    }

    /// Forgets the state written since the last committed epoch: the epoch failed, or its batch
    /// did not reach the store.
    pub fn abort(&mut self) {
        for t in self.state_tables() {
            t.abort();
        }
        self.stored_rows.forget();
    }

    /// One line per node, for EXPLAIN.
    pub fn explain(&self) -> Vec<String> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match &n.kind {
                NodeKind::Source { relation, columns } => format!(
                    "#{i} Source: relation {relation}{}",
                    columns.as_ref().map(|c| format!(" columns {c:?}")).unwrap_or_default()
                ),
                NodeKind::Op { op, inputs } => format!("#{i} {} <- {inputs:?}", op.describe()),
            })
            .collect()
    }
}
