//! Mapping DataFusion and Arrow errors to SQLSTATEs.
//!
//! DataFusion reports user mistakes (unknown column, bad cast, division by zero) through a few
//! generic variants; the message tells them apart. Anything unrecognised from the planner is a
//! user error (42xxx) rather than XX000, because it is almost always the statement's fault.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

use crate::error::{Error, SqlState};

pub fn from_datafusion(e: DataFusionError) -> Error {
    match e {
        DataFusionError::ArrowError(a, _) => from_arrow(*a),
        DataFusionError::SQL(p, _) => Error::syntax(format!("syntax error: {p}")),
        DataFusionError::SchemaError(s, _) => {
            let msg = s.to_string();
            let state = if msg.contains("No field named") || msg.contains("not found") {
                SqlState::UNDEFINED_COLUMN
            } else if msg.contains("Ambiguous") || msg.contains("ambiguous") {
                SqlState::AMBIGUOUS_COLUMN
            } else if msg.contains("duplicate") || msg.contains("Duplicate") {
                SqlState::DUPLICATE_COLUMN
            } else {
                SqlState::SYNTAX_ERROR
            };
            Error::user(state, clean(&msg))
        }
        DataFusionError::Plan(m) => Error::user(plan_state(&m), clean(&m)),
        DataFusionError::NotImplemented(m) => Error::unsupported(clean(&m)),
        DataFusionError::Execution(m) => Error::user(execution_state(&m), clean(&m)),
        DataFusionError::Context(c, inner) => {
            let mut err = from_datafusion(*inner);
            if let Error::User { message, .. } = &mut err {
                *message = format!("{c}: {message}");
            }
            err
        }
        DataFusionError::External(e) => match e.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => match other.downcast::<DataFusionError>() {
                Ok(df) => from_datafusion(*df),
                Err(other) => {
                    let m = other.to_string();
                    Error::user(execution_state(&m), m)
                }
            },
        },
        // A shared error (e.g. from a scalar subquery run once for many rows): classified by its
        // message, as the inner error cannot be taken out of the Arc.
        DataFusionError::Shared(e) => {
            let m = e.to_string();
            Error::user(execution_state(&m), clean(&m))
        }
        DataFusionError::ResourcesExhausted(m) => Error::External {
            state: SqlState("53200"),
            message: m,
            retryable: true,
        },
        DataFusionError::IoError(e) => Error::io("I/O", e),
        DataFusionError::Diagnostic(_, inner) => from_datafusion(*inner),
        DataFusionError::Collection(mut errs) => match errs.pop() {
            Some(e) => from_datafusion(e),
            None => Error::internal("empty error collection"),
        },
        other => Error::internal(other.to_string()),
    }
}

pub fn from_arrow(e: ArrowError) -> Error {
    match e {
        ArrowError::DivideByZero => Error::user(SqlState::DIVISION_BY_ZERO, "division by zero"),
        ArrowError::CastError(m) | ArrowError::ParseError(m) => Error::user(cast_state(&m), m),
        ArrowError::ComputeError(m) if m.contains("Overflow") || m.contains("overflow") => {
            Error::user(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, m)
        }
        ArrowError::ArithmeticOverflow(m) => Error::user(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, m),
        ArrowError::ExternalError(e) => match e.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => match other.downcast::<DataFusionError>() {
                Ok(df) => from_datafusion(*df),
                Err(other) => {
                    let m = other.to_string();
                    Error::user(execution_state(&m), m)
                }
            },
        },
        other => Error::user(SqlState::DATA_EXCEPTION, other.to_string()),
    }
}

fn cast_state(m: &str) -> SqlState {
    if m.contains("verflow")
        || m.contains("too large")
        || m.contains("out of range")
        || m.contains("Can't cast value")
        || m.contains("precision")
    {
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE
    } else {
        SqlState::INVALID_TEXT_REPRESENTATION
    }
}

fn plan_state(m: &str) -> SqlState {
    if m.contains("table") && (m.contains("not found") || m.contains("does not exist")) {
        SqlState::UNDEFINED_TABLE
    } else if m.contains("Invalid function") || m.contains("No function matches") || m.contains("not found in registry")
    {
        SqlState::UNDEFINED_FUNCTION
    } else if m.contains("No field named") || m.contains("not found") {
        SqlState::UNDEFINED_COLUMN
    } else if m.contains("Cannot infer common") || m.contains("type") && m.contains("coerc") {
        SqlState::DATATYPE_MISMATCH
    } else if m.contains("Unsupported") || m.contains("not supported") {
        SqlState::FEATURE_NOT_SUPPORTED
    } else {
        SqlState::SYNTAX_ERROR
    }
}

fn execution_state(m: &str) -> SqlState {
    if m.contains("Divide by zero") || m.contains("division by zero") {
        SqlState::DIVISION_BY_ZERO
    } else if m.contains("verflow") {
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE
    } else if m.contains("Cannot cast") || m.contains("Error parsing") || m.contains("Invalid") {
        SqlState::INVALID_TEXT_REPRESENTATION
    } else if m.contains("more than one row") {
        SqlState::CARDINALITY_VIOLATION
    } else {
        SqlState::DATA_EXCEPTION
    }
}

/// Drops DataFusion's internal prefixes ("Error during planning: ") from a message.
fn clean(m: &str) -> String {
    let mut s = m.trim();
    for p in [
        "Error during planning: ",
        "Schema error: ",
        "This feature is not implemented: ",
    ] {
        if let Some(rest) = s.strip_prefix(p) {
            s = rest;
        }
    }
    s.to_string()
}
