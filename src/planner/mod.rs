//! The view planner: a `CREATE MATERIALIZED VIEW` query, planned and optimised by DataFusion
//! into a `LogicalPlan`, becomes a [`ViewDataflow`] of incremental operators, node by node.
//!
//! | plan node | operator |
//! |---|---|
//! | TableScan | source (a table's or view's changes), projected |
//! | Projection | `ProjectOp` |
//! | Filter | `FilterOp` |
//! | Aggregate | `GroupAggregateOp` |
//! | Join (inner / left / right / full, equi + extra condition) | `HashJoinOp` |
//! | Join (left semi / anti, incl. null-aware NOT IN) | `SemiJoinOp` |
//! | Join (left semi / anti whose extra condition is one comparison of a left and a right value) | `ThresholdSemiJoinOp` |
//! | Join (left semi / anti with another non-equality condition) | `FilteredSemiJoinOp` |
//! | Join (inner / left) with a table read `FOR SYSTEM_TIME AS OF PROCTIME()` on the right | `TemporalJoinOp` |
//! | Union | `UnionOp` |
//! | Distinct | `DistinctOp` |
//! | Sort with LIMIT / OFFSET | `TopNOp` |
//! | Filter `rn <= n` over Window `row_number() OVER (PARTITION BY .. ORDER BY ..) AS rn` | `TopNOp` per group |
//! | SubqueryAlias, Sort without LIMIT | pass-through |
//!
//! Projections over a filter whose predicate always evaluates a subexpression they read
//! again compute it once, below the filter (plan version 10, [`common_subexpr`]).
//!
//! Equal subplans are built once (plan version 4): both sides of a self-join read one source
//! node, and an aggregate read twice (q5 of Nexmark groups the same hopping windows in two
//! subqueries) is maintained once.
//!
//! Anything else is refused with 0A000 naming the construct.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Distinct, Expr, ExprSchemable, JoinType, LogicalPlan};

use crate::dataflow::graph::{Node, NodeKind, ViewDataflow};
use crate::dataflow::operator::{Operator, RowGroups, StateTable};
use crate::dataflow::ops::aggregate::{AggKind, AggSpec, GroupAggregateOp};
use crate::dataflow::ops::distinct::DistinctOp;
use crate::dataflow::ops::filter::FilterOp;
use crate::dataflow::ops::join::{HashJoinOp, JoinSide};
use crate::dataflow::ops::project::ProjectOp;
use crate::dataflow::ops::semi_join::SemiJoinOp;
use crate::dataflow::ops::semi_join_filtered::{FilteredSemiJoinOp, FilteredSemiState};
use crate::dataflow::ops::threshold_join::{ThresholdSemiJoinOp, ThresholdState};
use crate::dataflow::ops::topn::{TopNOp, TopNSpec};
use crate::dataflow::ops::union::UnionOp;
use crate::dataflow::ops::Exprs;
use crate::error::{Error, Result};
use crate::query::provider::StoredTable;
use crate::query::view_provider::ViewTable;

mod chain;
mod common_subexpr;
mod temporal;
mod threshold;
mod unique;

struct Builder {
    view: u32,
    /// The view's plan version (`ViewDef::plan_version`): which operator variants it uses.
    version: u32,
    nodes: Vec<Node>,
    /// Per node: whether it only ever produces insertions (see [`Builder::push`]).
    append_only: Vec<bool>,
    /// Per node: the output columns that split its output into small groups, if it does
    /// (`Operator::bounded_groups`).
    groups: Vec<Option<RowGroups>>,
    next_op: u32,
    /// A Window node already built as a per-group top-N (see [`Builder::group_top_n`]), and its
    /// dataflow node.
    built_window: Option<(*const LogicalPlan, usize)>,
    /// Plan version 4: every subplan built so far and its node, so that a subplan that occurs
    /// more than once (both sides of a self-join, one aggregate read twice) is built once and
    /// read by each parent.
    built: HashMap<LogicalPlan, usize>,
}

/// The plan version new views get. Version 1: aggregates and top-N over inputs that only ever
/// gain rows keep less state (MIN / MAX as a value in the group state, top-N only the top).
/// Version 2: top-N keeps each row once (in the key of its ordered entry, not in the value too).
/// Version 3: COUNT(DISTINCT) keys each value as a state group of its own (hashed lookups).
/// Version 4: equal subplans share one node (and its state); aggregates are built with their
/// GROUP BY keys in a canonical order, so that the same aggregate grouped in another order is
/// shared too (a projection restores each one's column order).
/// Version 5: the COUNT(DISTINCT)s of one argument (each with its own FILTER or none) keep one
/// state entry per value for all of them (distinct families).
/// Version 6: a semi / anti join whose condition besides its keys is one comparison of a left
/// value with a right value keeps each key's right values and its left rows ordered by value
/// (`ThresholdSemiJoinOp`), not every right row and each left row's match count.
/// Version 7: a join side that only gains rows, joined with one that does not, keeps its rows
/// as sorted runs logged as additions (`StateTable::additive`, `HashJoinOp::additive_side`).
/// Version 8: an aggregate's distinct family entries are keyed by a number each group gets
/// (kept in its state), not by the group's bytes (`GroupAggregateOp::group_ids`).
/// Version 9: a threshold semi join keeps its left rows as sorted runs logged as additions
/// (`StateTable::additive`), not in an ordered tree per key, each without the columns its key
/// and compared value give back (`ThresholdSemiJoinOp::slim_rows`).
/// Version 10: a projection over a filter computes the subexpressions they share once, below
/// the filter (`common_subexpr`; it numbers the operators differently).
/// Version 11: a GROUP BY without aggregates (`SELECT DISTINCT`), a DISTINCT and a semi join
/// (not an anti join) declare that insertions give only insertions, so over append-only
/// inputs their output is append-only (operators downstream keep less state, a view is stored
/// as appended batches); such a GROUP BY writes a group once, when it first appears.
pub const PLAN_VERSION: u32 = 11;

/// Builds the dataflow of view `view` from its optimised logical plan, with the operator
/// variants of plan version `version` (the one the view was created with: its state was
/// written by them).
pub fn build_dataflow(view: u32, plan: &LogicalPlan, version: u32) -> Result<ViewDataflow> {
    if version > PLAN_VERSION {
        // Its state was written by operator variants this server does not have.
        return Err(Error::internal(format!(
            "materialized view {view} has plan version {version}, newer than this server's {PLAN_VERSION}"
        )));
    }
    let mut b = Builder {
        view,
        version,
        nodes: Vec::new(),
        append_only: Vec::new(),
        groups: Vec::new(),
        next_op: 0,
        built_window: None,
        built: HashMap::new(),
    };
    let last = b.build(plan)?;
    Ok(ViewDataflow {
        view,
        append_only: b.append_only[last],
        groups: b.groups[last].clone(),
        nodes: b.nodes,
        stored_rows: Default::default(),
    })
}

fn arrow_schema(s: &DFSchema) -> SchemaRef {
    Arc::new(s.as_arrow().clone())
}

impl Builder {
    /// Whether an operator reading `node` may rely on it only ever producing insertions.
    fn only_insertions(&self, node: usize) -> bool {
        self.version >= 1 && self.append_only[node]
    }

    fn state(&mut self, part: u8) -> StateTable {
        StateTable::new(self.view, self.next_op, part)
    }

    /// A join built as a `HashJoinOp` (its own frame, not one in every level of the
    /// recursive [`Builder::build`]: debug builds plan deep queries on a worker's stack).
    fn hash_join(&mut self, j: &datafusion::logical_expr::Join) -> Result<usize> {
        let (lk, rk, key_types) = join_keys(j)?;
        let unique = [
            unique::one_row_per_key(&j.left, &lk),
            unique::one_row_per_key(&j.right, &rk),
        ];
        // An inner join checks a unique side's filters on the joined rows.
        let mut lifted = Vec::new();
        let mut input = |side: &'_ LogicalPlan, unique: bool| -> Result<usize> {
            let lift = if j.join_type == JoinType::Inner && unique {
                unique::lifted_filters(side)?
            } else {
                None
            };
            match lift {
                Some((node, predicates)) => {
                    lifted.extend(predicates);
                    self.build(node)
                }
                None => self.build(side),
            }
        };
        let left = input(&j.left, unique[0])?;
        let right = input(&j.right, unique[1])?;
        let left_types: Vec<DataType> = j.left.schema().fields().iter().map(|f| f.data_type().clone()).collect();
        let right_types: Vec<DataType> = j
            .right
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let has_filter = !lifted.is_empty() || j.filter.is_some();
        let appends = [self.only_insertions(left), self.only_insertions(right)];
        let additive = |side: usize| {
            self.version >= 7 && HashJoinOp::additive_side(j.join_type, has_filter, unique, appends, side)
        };
        let (left_additive, right_additive) = (additive(0), additive(1));
        let rows = |state: StateTable, additive: bool| if additive { state.additive() } else { state };
        let ls = JoinSide::new(
            Exprs::new(&lk, j.left.schema())?,
            rows(self.state(0), left_additive),
            self.state(1),
            left_types,
        )?;
        let rs = JoinSide::new(
            Exprs::new(&rk, j.right.schema())?,
            rows(self.state(2), right_additive),
            self.state(3),
            right_types,
        )?;
        lifted.extend(j.filter.clone());
        let filter = match datafusion::logical_expr::utils::conjunction(lifted) {
            Some(f) => {
                let joined = j.left.schema().join(j.right.schema())?;
                Some(Exprs::new(std::slice::from_ref(&f), &joined)?)
            }
            None => None,
        };
        // An outer join with an extra condition tracks matches per row on padded sides.
        let (ls, rs) = if filter.is_some() {
            let pads_left = matches!(j.join_type, JoinType::Left | JoinType::Full);
            let pads_right = matches!(j.join_type, JoinType::Right | JoinType::Full);
            let ls = if pads_left { ls.with_matched(self.state(4)) } else { ls };
            let rs = if pads_right { rs.with_matched(self.state(5)) } else { rs };
            (ls, rs)
        } else {
            (ls, rs)
        };
        let schema = arrow_schema(&j.schema);
        let op = HashJoinOp::new(ls, rs, key_types, filter, j.join_type, schema.clone())?.with_unique(unique);
        Ok(self.push(Box::new(op), vec![left, right], schema))
    }

    /// Plan version 10: projections over a filter that share a subexpression the filter always
    /// evaluates, as a projection computing it once (and keeping only the columns still read),
    /// the filter, and the projections (see [`common_subexpr`]).
    fn filter_project(&mut self, p: &datafusion::logical_expr::Projection) -> Result<Option<usize>> {
        if self.version < 10 {
            return Ok(None);
        }
        // The projections down to the filter, the one over it first.
        let mut chain = vec![p];
        let f = loop {
            match chain[chain.len() - 1].input.as_ref() {
                LogicalPlan::Projection(below) => chain.push(below),
                LogicalPlan::Filter(f) => break f,
                _ => return Ok(None),
            }
        };
        chain.reverse();
        // A filter over a window function is a per-group top-N ([`Builder::group_top_n`]).
        let mut below = f.input.as_ref();
        while let LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) = below {
            below = below.inputs()[0];
        }
        if matches!(below, LogicalPlan::Window(_)) {
            return Ok(None);
        }
        let Some(shared) = common_subexpr::share(&f.predicate, f.input.schema(), &chain)? else {
            return Ok(None);
        };
        let input = self.build(&f.input)?;
        let schema = arrow_schema(&shared.lower.schema);
        let lower = ProjectOp::new(Exprs::new(&shared.lower.exprs, f.input.schema())?, schema.clone());
        let lower = self.push(Box::new(lower), vec![input], schema.clone());
        let predicate = Exprs::new(std::slice::from_ref(&shared.predicate), &shared.lower.schema)?;
        let mut node = self.push(Box::new(FilterOp::new(predicate)), vec![lower], schema);
        let mut below = &shared.lower.schema;
        for level in &shared.levels {
            let schema = arrow_schema(&level.schema);
            let op = ProjectOp::new(Exprs::new(&level.exprs, below)?, schema.clone());
            node = self.push(Box::new(op), vec![node], schema);
            below = &level.schema;
        }
        Ok(Some(node))
    }

    /// Adds an operator node. It is append-only (only ever produces insertions) if its
    /// operator turns insertions into insertions and all its inputs are append-only.
    fn push(&mut self, op: Box<dyn Operator>, inputs: Vec<usize>, schema: SchemaRef) -> usize {
        let append_only = op.append_only() && inputs.iter().all(|i| self.append_only[*i]);
        let groups = op.bounded_groups(inputs.first().and_then(|i| self.groups[*i].as_ref()));
        self.next_op += 1;
        let node = self.add(
            Node {
                kind: NodeKind::Op { op, inputs },
                schema,
            },
            append_only,
        );
        self.groups[node] = groups;
        node
    }

    /// Adds a source node reading `relation` (its columns `columns`, or all); `append_only`
    /// if the relation only ever gains rows.
    fn push_source(
        &mut self,
        relation: u32,
        columns: Option<Vec<usize>>,
        schema: SchemaRef,
        append_only: bool,
    ) -> usize {
        self.add(
            Node {
                kind: NodeKind::Source { relation, columns },
                schema,
            },
            append_only,
        )
    }

    fn add(&mut self, node: Node, append_only: bool) -> usize {
        self.append_only.push(append_only);
        self.groups.push(None);
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The node of `plan`: built, or (plan version 4) the node of an equal subplan built
    /// before. Nothing is shared above a Window being built as a top-N: those nodes stand for
    /// the plan under that one filter only.
    fn build(&mut self, plan: &LogicalPlan) -> Result<usize> {
        let share = self.version >= 4 && self.built_window.is_none();
        if share {
            if let Some(node) = self.built.get(plan) {
                return Ok(*node);
            }
        }
        let node = self.build_new(plan)?;
        if share {
            self.built.insert(plan.clone(), node);
        }
        Ok(node)
    }

    fn build_new(&mut self, plan: &LogicalPlan) -> Result<usize> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                if scan.fetch.is_some() {
                    return Err(Error::unsupported("LIMIT pushed into a scan in materialized views"));
                }
                let provider = source_as_provider(&scan.source)?;
                let (relation, layout) = if let Some(t) =
                    (provider.as_ref() as &dyn std::any::Any).downcast_ref::<StoredTable>()
                {
                    if t.is_temporal() {
                        return Err(Error::unsupported(format!(
                                "{} read FOR SYSTEM_TIME AS OF PROCTIME() other than as the right side of an INNER or LEFT join, in materialized views",
                                t.table().def.name
                            )));
                    }
                    (t.table().def.id, t.table().def.layout)
                } else if let Some(v) = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<ViewTable>() {
                    (v.view().def.id, v.view().def.layout)
                } else {
                    return Err(Error::unsupported(format!(
                        "reading {} (a system table) in a materialized view",
                        scan.table_name
                    )));
                };
                // Segments and streams only ever gain rows (`crate::catalog::Layout`).
                Ok(self.push_source(
                    relation,
                    scan.projection.clone(),
                    arrow_schema(&scan.projected_schema),
                    layout.is_append_only(),
                ))
            }
            LogicalPlan::Projection(p) => {
                if let Some(node) = self.filter_project(p)? {
                    return Ok(node);
                }
                let input = self.build(&p.input)?;
                let exprs = Exprs::new(&p.expr, p.input.schema())?;
                let schema = arrow_schema(&p.schema);
                let op = ProjectOp::new(exprs, schema.clone());
                Ok(self.push(Box::new(op), vec![input], schema))
            }
            LogicalPlan::Filter(f) => {
                if let Some(node) = self.group_top_n(f)? {
                    return Ok(node);
                }
                let input = self.build(&f.input)?;
                let exprs = Exprs::new(std::slice::from_ref(&f.predicate), f.input.schema())?;
                Ok(self.push(
                    Box::new(FilterOp::new(exprs)),
                    vec![input],
                    arrow_schema(f.input.schema()),
                ))
            }
            LogicalPlan::SubqueryAlias(a) => self.build(&a.input),
            LogicalPlan::Sort(s) if s.fetch.is_none() => self.build(&s.input),
            LogicalPlan::Sort(s) => self.top_n(&s.input, &s.expr, 0, s.fetch.unwrap_or(usize::MAX)),
            LogicalPlan::Limit(l) => {
                use datafusion::logical_expr::{FetchType, SkipType};
                let skip = match l.get_skip_type()? {
                    SkipType::Literal(s) => s,
                    SkipType::UnsupportedExpr => {
                        return Err(Error::unsupported("a non-constant OFFSET in materialized views"))
                    }
                };
                let fetch = match l.get_fetch_type()? {
                    FetchType::Literal(f) => f.unwrap_or(usize::MAX),
                    FetchType::UnsupportedExpr => {
                        return Err(Error::unsupported("a non-constant LIMIT in materialized views"))
                    }
                };
                match l.input.as_ref() {
                    LogicalPlan::Sort(s) => {
                        let fetch = s.fetch.map(|f| f.saturating_sub(skip)).unwrap_or(fetch).min(fetch);
                        self.top_n(&s.input, &s.expr, skip, fetch)
                    }
                    _ => Err(Error::unsupported("LIMIT without ORDER BY in materialized views")),
                }
            }
            LogicalPlan::Aggregate(a) => self.aggregate(a),
            LogicalPlan::Join(j) if matches!(j.join_type, JoinType::LeftSemi | JoinType::LeftAnti) => {
                if j.filter.is_some() && j.null_aware {
                    return Err(Error::unsupported(
                        "NOT IN subqueries with a non-equality correlation in materialized views",
                    ));
                }
                let left = self.build(&j.left)?;
                let right = self.build(&j.right)?;
                let (lk, rk, key_types) = join_keys(j)?;
                let schema = arrow_schema(&j.schema);
                if let Some(f) = &j.filter {
                    if self.version >= 6 {
                        if let Some(c) = threshold::condition(f, j.left.schema(), j.right.schema())? {
                            let left_rows = self.state(0);
                            let state = ThresholdState {
                                left_rows: if self.version >= 9 {
                                    left_rows.additive()
                                } else {
                                    left_rows
                                },
                                right_values: self.state(1),
                            };
                            let op = ThresholdSemiJoinOp::new(
                                j.join_type == JoinType::LeftAnti,
                                Exprs::new(&lk, j.left.schema())?,
                                Exprs::new(&rk, j.right.schema())?,
                                key_types,
                                (
                                    Exprs::new(&[c.left], j.left.schema())?,
                                    Exprs::new(&[c.right], j.right.schema())?,
                                    c.value_type,
                                ),
                                c.comparison,
                                state,
                                arrow_schema(j.left.schema()),
                            )?
                            .slim_rows(self.version >= 9)?
                            .inserts_only(self.version >= 11);
                            return Ok(self.push(Box::new(op), vec![left, right], schema));
                        }
                    }
                    let joined = j.left.schema().join(j.right.schema())?;
                    let state = FilteredSemiState {
                        left_rows: self.state(0),
                        left_matched: self.state(1),
                        right_rows: self.state(2),
                    };
                    let op = FilteredSemiJoinOp::new(
                        j.join_type == JoinType::LeftAnti,
                        Exprs::new(&lk, j.left.schema())?,
                        Exprs::new(&rk, j.right.schema())?,
                        key_types,
                        Exprs::new(std::slice::from_ref(f), &joined)?,
                        state,
                        arrow_schema(j.left.schema()),
                        arrow_schema(j.right.schema()),
                    )?
                    .inserts_only(self.version >= 11);
                    return Ok(self.push(Box::new(op), vec![left, right], schema));
                }
                let op = SemiJoinOp::new(
                    j.join_type == JoinType::LeftAnti,
                    j.null_aware,
                    Exprs::new(&lk, j.left.schema())?,
                    Exprs::new(&rk, j.right.schema())?,
                    key_types,
                    self.state(0),
                    self.state(1),
                    self.state(2),
                    schema.clone(),
                )?
                .inserts_only(self.version >= 11);
                Ok(self.push(Box::new(op), vec![left, right], schema))
            }
            LogicalPlan::Join(j) => {
                if let Some(chain) = temporal::temporal_chain(&j.right) {
                    return self.temporal_join(j, &chain);
                }
                self.hash_join(j)
            }
            LogicalPlan::Union(u) => {
                let inputs = u.inputs.iter().map(|i| self.build(i)).collect::<Result<Vec<_>>>()?;
                let schema = arrow_schema(&u.schema);
                Ok(self.push(Box::new(UnionOp::new(inputs.len())), inputs, schema))
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let i = self.build(input)?;
                let state = self.state(0);
                let op = DistinctOp::new(state).inserts_only(self.version >= 11);
                Ok(self.push(Box::new(op), vec![i], arrow_schema(input.schema())))
            }
            LogicalPlan::Distinct(Distinct::On(_)) => Err(Error::unsupported("DISTINCT ON in materialized views")),
            LogicalPlan::Window(_) if self.built_window.is_some_and(|(p, _)| std::ptr::eq(p, plan)) => {
                Ok(self.built_window.expect("checked").1)
            }
            LogicalPlan::Window(w) => {
                let name = w
                    .window_expr
                    .first()
                    .map(|e| e.schema_name().to_string())
                    .unwrap_or_else(|| "window".into());
                Err(Error::unsupported(format!(
                    "window function {name} in materialized views"
                )))
            }
            other => Err(Error::unsupported(format!("{} in materialized views", other.display()))),
        }
    }

    fn top_n(
        &mut self,
        input: &LogicalPlan,
        order: &[datafusion::logical_expr::SortExpr],
        skip: usize,
        fetch: usize,
    ) -> Result<usize> {
        let i = self.build(input)?;
        let exprs: Vec<Expr> = order.iter().map(|s| s.expr.clone()).collect();
        let types: Vec<DataType> = exprs
            .iter()
            .map(|e| e.get_type(input.schema()))
            .collect::<datafusion::error::Result<_>>()?;
        let options = order
            .iter()
            .map(|s| datafusion::arrow::compute::SortOptions {
                descending: !s.asc,
                nulls_first: s.nulls_first,
            })
            .collect();
        let schema = arrow_schema(input.schema());
        let spec = TopNSpec {
            sort_exprs: Exprs::new(&exprs, input.schema())?,
            sort_types: types,
            sort_options: options,
            skip,
            fetch,
            partition_exprs: None,
            rank: false,
        };
        let op = TopNOp::new(self.state(0), spec, schema.clone())?
            .append_only_input(self.only_insertions(i))
            .rows_in_keys(self.version >= 2);
        Ok(self.push(Box::new(op), vec![i], schema))
    }

    /// `WHERE rn <= n` over `row_number() OVER (PARTITION BY .. ORDER BY ..) AS rn` (through
    /// projections and aliases that pass `rn` on): a per-group top-N. `None` when the filter
    /// does not have that shape (a Window below it is then refused as usual).
    fn group_top_n(&mut self, f: &datafusion::logical_expr::Filter) -> Result<Option<usize>> {
        use datafusion::logical_expr::utils::{conjunction, split_conjunction};
        use datafusion::logical_expr::{BinaryExpr, Operator as BinOp};
        // Follow the filter's input down to a Window, tracking where each column comes from.
        let mut plan = f.input.as_ref();
        let mut origin: Vec<Option<usize>> = (0..plan.schema().fields().len()).map(Some).collect();
        let window = loop {
            match plan {
                LogicalPlan::SubqueryAlias(a) => plan = a.input.as_ref(),
                LogicalPlan::Projection(p) => {
                    let mapped: Vec<Option<usize>> = p
                        .expr
                        .iter()
                        .map(|e| match unalias(e) {
                            Expr::Column(c) => p.input.schema().index_of_column(c).ok(),
                            _ => None,
                        })
                        .collect();
                    origin = origin.iter().map(|o| o.and_then(|i| mapped[i])).collect();
                    plan = p.input.as_ref();
                }
                LogicalPlan::Window(w) => break w,
                _ => return Ok(None),
            }
        };
        let [wexpr] = window.window_expr.as_slice() else {
            return Ok(None);
        };
        let Expr::WindowFunction(wf) = unalias(wexpr) else {
            return Ok(None);
        };
        if wf.fun.name() != "row_number" || !wf.params.args.is_empty() || wf.params.order_by.is_empty() {
            return Ok(None);
        }
        let rank_index = window.input.schema().fields().len();
        let is_rank = |e: &Expr| match e {
            Expr::Column(c) => f
                .input
                .schema()
                .index_of_column(c)
                .is_ok_and(|i| origin[i] == Some(rank_index)),
            _ => false,
        };
        let int_of = |e: &Expr| match e {
            Expr::Literal(v, _) => v.cast_to(&DataType::Int64).ok().and_then(|v| match v {
                datafusion::common::ScalarValue::Int64(Some(n)) => Some(n),
                _ => None,
            }),
            _ => None,
        };
        // The conjunct bounding the rank: rn <= n, rn < n, rn = 1 (either way round).
        let mut fetch = None;
        let mut rest = Vec::new();
        for c in split_conjunction(&f.predicate) {
            let bound = match c {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) if fetch.is_none() => {
                    let (op, n) = if is_rank(left) {
                        (Some(*op), int_of(right))
                    } else if is_rank(right) {
                        (op.swap(), int_of(left))
                    } else {
                        (None, None)
                    };
                    match (op, n) {
                        (Some(BinOp::LtEq), Some(n)) => Some(n.max(0) as usize),
                        (Some(BinOp::Lt), Some(n)) => Some((n - 1).max(0) as usize),
                        (Some(BinOp::Eq), Some(1)) => Some(1),
                        _ => None,
                    }
                }
                _ => None,
            };
            match bound {
                Some(n) => fetch = Some(n),
                None => rest.push(c.clone()),
            }
        }
        let Some(fetch) = fetch else { return Ok(None) };
        let input_schema = window.input.schema();
        let input = self.build(&window.input)?;
        let order: Vec<Expr> = wf.params.order_by.iter().map(|s| s.expr.clone()).collect();
        let sort_types = order
            .iter()
            .map(|e| e.get_type(input_schema))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let sort_options = wf
            .params
            .order_by
            .iter()
            .map(|s| datafusion::arrow::compute::SortOptions {
                descending: !s.asc,
                nulls_first: s.nulls_first,
            })
            .collect();
        let partition_exprs = if wf.params.partition_by.is_empty() {
            None
        } else {
            let types = wf
                .params
                .partition_by
                .iter()
                .map(|e| e.get_type(input_schema))
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            Some((Exprs::new(&wf.params.partition_by, input_schema)?, types))
        };
        let spec = TopNSpec {
            sort_exprs: Exprs::new(&order, input_schema)?,
            sort_types,
            sort_options,
            skip: 0,
            fetch,
            partition_exprs,
            rank: true,
        };
        let schema = arrow_schema(&window.schema);
        let op = TopNOp::new(self.state(0), spec, schema.clone())?
            .append_only_input(self.only_insertions(input))
            .rows_in_keys(self.version >= 2);
        let top = self.push(Box::new(op), vec![input], schema);
        // The projections above the window, then what is left of the filter.
        let window_plan = plan as *const LogicalPlan;
        self.built_window = Some((window_plan, top));
        let above = self.build(&f.input);
        self.built_window = None;
        let above = above?;
        let Some(predicate) = conjunction(rest) else {
            return Ok(Some(above));
        };
        let exprs = Exprs::new(std::slice::from_ref(&predicate), f.input.schema())?;
        Ok(Some(self.push(
            Box::new(FilterOp::new(exprs)),
            vec![above],
            arrow_schema(f.input.schema()),
        )))
    }

    fn aggregate(&mut self, a: &datafusion::logical_expr::Aggregate) -> Result<usize> {
        if a.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
            return Err(Error::unsupported(
                "GROUPING SETS / ROLLUP / CUBE in materialized views",
            ));
        }
        if let Some(node) = self.canonical_aggregate(a)? {
            return Ok(node);
        }
        let input_schema = a.input.schema();
        let input = self.build(&a.input)?;
        let mut args: Vec<Expr> = Vec::new();
        let mut specs = Vec::new();
        let ngroups = a.group_expr.len();
        for (i, e) in a.aggr_expr.iter().enumerate() {
            let Expr::AggregateFunction(AggregateFunction { func, params }) = unalias(e) else {
                return Err(Error::unsupported(format!(
                    "aggregate expression {e} in materialized views"
                )));
            };
            let name = func.name().to_lowercase();
            let output = a.schema.field(ngroups + i).data_type().clone();
            let is_literal = |e: Option<&Expr>| matches!(e, Some(Expr::Literal(v, _)) if !v.is_null());
            // Plan version 5: a COUNT(DISTINCT) keeps its FILTER apart from its argument, so
            // that the COUNT(DISTINCT)s of one argument form one distinct family.
            let family = self.version >= 5 && params.distinct && name == "count";
            let family_filter = params.filter.as_ref().filter(|_| family).map(|p| (**p).clone());
            // Otherwise `agg(x) FILTER (WHERE p)` is `agg(CASE WHEN p THEN x END)` for every
            // aggregate that skips NULLs (`count(*)` counts `CASE WHEN p THEN 1 END`).
            let filtered = match &params.filter {
                None => None,
                Some(_) if family => None,
                Some(_) if name == "array_agg" => {
                    return Err(Error::unsupported("array_agg(...) FILTER in materialized views"))
                }
                Some(p) => {
                    let first = params.args.first();
                    let value = if params.args.is_empty() || (name == "count" && is_literal(first)) {
                        datafusion::logical_expr::lit(1i64)
                    } else {
                        first
                            .cloned()
                            .ok_or_else(|| Error::internal("aggregate without argument"))?
                    };
                    Some(datafusion::logical_expr::when((**p).clone(), value).end()?)
                }
            };
            let first = filtered.as_ref().or(params.args.first());
            let kind = match name.as_str() {
                "count" if params.distinct => AggKind::CountDistinct,
                "count" if filtered.is_none() && (params.args.is_empty() || is_literal(first)) => AggKind::CountStar,
                "count" => AggKind::Count,
                "sum" => AggKind::Sum,
                "avg" | "mean" => AggKind::Avg,
                "min" => AggKind::Min,
                "max" => AggKind::Max,
                "bool_and" => AggKind::BoolAnd,
                "bool_or" => AggKind::BoolOr,
                "string_agg" => {
                    let sep = match params.args.get(1) {
                        Some(Expr::Literal(v, _)) => match v.cast_to(&DataType::Utf8)? {
                            datafusion::common::ScalarValue::Utf8(Some(s)) => s,
                            _ => String::new(),
                        },
                        _ => {
                            return Err(Error::unsupported(
                                "STRING_AGG with a non-constant separator in materialized views",
                            ))
                        }
                    };
                    AggKind::StringAgg(sep)
                }
                "array_agg" => AggKind::ArrayAgg,
                other => {
                    return Err(Error::unsupported(format!(
                        "aggregate function {other}() in materialized views"
                    )))
                }
            };
            if params.distinct && kind != AggKind::CountDistinct && !matches!(kind, AggKind::Min | AggKind::Max) {
                return Err(Error::unsupported(format!(
                    "{name}(DISTINCT ...) in materialized views"
                )));
            }
            if !params.order_by.is_empty() {
                let ok = matches!(kind, AggKind::StringAgg(_) | AggKind::ArrayAgg)
                    && params.order_by.len() == 1
                    && params.order_by[0].asc
                    && Some(&params.order_by[0].expr) == first;
                if !ok {
                    return Err(Error::unsupported(format!(
                        "{name}(... ORDER BY ...) other than ascending by its argument in materialized views"
                    )));
                }
            }
            let (arg, input_type) = match kind {
                AggKind::CountStar => (None, DataType::Null),
                _ => {
                    let e = first
                        .cloned()
                        .ok_or_else(|| Error::internal("aggregate without argument"))?;
                    let t = e.get_type(input_schema)?;
                    (Some(arg_index(&mut args, e)), t)
                }
            };
            specs.push(AggSpec {
                kind,
                arg,
                output,
                input: input_type,
                filter: family_filter.map(|p| arg_index(&mut args, p)),
            });
        }
        let group_exprs = Exprs::new(&a.group_expr, input_schema)?;
        let arg_exprs = Exprs::new(&args, input_schema)?;
        let schema = arrow_schema(&a.schema);
        let groups = self.state(0);
        let values = self.state(1);
        let op = GroupAggregateOp::new(groups, values, group_exprs, arg_exprs, specs, schema.clone())?
            .append_only_input(self.only_insertions(input))
            .hashed_distinct(self.version >= 3)
            .distinct_families(self.version >= 5)
            .group_ids(self.version >= 8)
            .groups_only(self.version >= 11);
        Ok(self.push(Box::new(op), vec![input], schema))
    }

    /// Plan version 4: an aggregate whose GROUP BY keys are not in canonical order (by name) is
    /// built as the same aggregate with its keys in that order (shared with any other
    /// aggregate that has the same canonical form), then projected back to its own column
    /// order. `None`: the keys are in canonical order already (or the canonical aggregate
    /// cannot be formed): build it as it is.
    fn canonical_aggregate(&mut self, a: &datafusion::logical_expr::Aggregate) -> Result<Option<usize>> {
        if self.version < 4 || self.built_window.is_some() {
            return Ok(None);
        }
        let names: Vec<String> = a.group_expr.iter().map(|e| e.schema_name().to_string()).collect();
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|x, y| names[*x].cmp(&names[*y]));
        if order.iter().enumerate().all(|(i, o)| i == *o) {
            return Ok(None);
        }
        let groups = order.iter().map(|i| a.group_expr[*i].clone()).collect();
        let Ok(canonical) = datafusion::logical_expr::Aggregate::try_new(a.input.clone(), groups, a.aggr_expr.clone())
        else {
            return Ok(None);
        };
        let canonical = LogicalPlan::Aggregate(canonical);
        let input = self.build(&canonical)?;
        // Column j of `a`: its j-th key, at `order`'s position of j in the canonical
        // aggregate; the aggregates keep their positions.
        let ngroups = names.len();
        let columns: Vec<Expr> = (0..a.schema.fields().len())
            .map(|j| {
                let k = if j < ngroups {
                    order.iter().position(|o| *o == j).expect("a permutation")
                } else {
                    j
                };
                Expr::Column(datafusion::common::Column::from(canonical.schema().qualified_field(k)))
            })
            .collect();
        let schema = arrow_schema(&a.schema);
        let op = ProjectOp::new(Exprs::new(&columns, canonical.schema())?, schema.clone());
        Ok(Some(self.push(Box::new(op), vec![input], schema)))
    }
}

/// The left and right key expressions of a join and the key types. A join without equality
/// keys (a cross join, or a condition only) uses one constant key shared by every row.
fn join_keys(j: &datafusion::logical_expr::Join) -> Result<(Vec<Expr>, Vec<Expr>, Vec<DataType>)> {
    let (lk, rk): (Vec<Expr>, Vec<Expr>) = if j.on.is_empty() {
        (
            vec![Expr::Literal(true.into(), None)],
            vec![Expr::Literal(true.into(), None)],
        )
    } else {
        j.on.iter().cloned().unzip()
    };
    let key_types = lk
        .iter()
        .map(|e| e.get_type(j.left.schema()))
        .collect::<datafusion::error::Result<_>>()?;
    Ok((lk, rk, key_types))
}

/// The index of `e` among the aggregates' argument expressions, added if it is not there (an
/// expression several aggregates read is evaluated once).
fn arg_index(args: &mut Vec<Expr>, e: Expr) -> usize {
    match args.iter().position(|a| *a == e) {
        Some(i) => i,
        None => {
            args.push(e);
            args.len() - 1
        }
    }
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}
