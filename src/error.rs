//! The one error type of Freshet.
//!
//! Every error that can reach a client carries a PostgreSQL SQLSTATE. Variants are grouped by who
//! must act: the user (bad SQL, constraint violations), the outside world (I/O, an unreachable
//! upstream), or us (`Internal`: a bug, reported as XX000).

use std::fmt;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A PostgreSQL SQLSTATE code (five characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState(pub &'static str);

impl SqlState {
    /// The SQLSTATE for a code another system sent (an upstream PostgreSQL's errors). Each
    /// distinct code is stored once for the life of the process.
    pub fn intern(code: &str) -> SqlState {
        use std::collections::HashSet;
        use std::sync::{Mutex, OnceLock};
        static CODES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
        let code = if code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            code
        } else {
            "XX000"
        };
        let mut codes = CODES.get_or_init(Default::default).lock().expect("lock");
        match codes.get(code) {
            Some(c) => SqlState(c),
            None => {
                let c: &'static str = Box::leak(code.to_string().into_boxed_str());
                codes.insert(c);
                SqlState(c)
            }
        }
    }

    pub const SYNTAX_ERROR: SqlState = SqlState("42601");
    pub const UNDEFINED_TABLE: SqlState = SqlState("42P01");
    pub const UNDEFINED_COLUMN: SqlState = SqlState("42703");
    pub const UNDEFINED_FUNCTION: SqlState = SqlState("42883");
    pub const UNDEFINED_OBJECT: SqlState = SqlState("42704");
    pub const INVALID_SCHEMA_NAME: SqlState = SqlState("3F000");
    pub const DUPLICATE_TABLE: SqlState = SqlState("42P07");
    pub const DUPLICATE_SCHEMA: SqlState = SqlState("42P06");
    pub const DUPLICATE_COLUMN: SqlState = SqlState("42701");
    pub const DUPLICATE_OBJECT: SqlState = SqlState("42710");
    pub const DATATYPE_MISMATCH: SqlState = SqlState("42804");
    pub const INVALID_TABLE_DEFINITION: SqlState = SqlState("42P16");
    pub const WRONG_OBJECT_TYPE: SqlState = SqlState("42809");
    pub const DEPENDENT_OBJECTS_STILL_EXIST: SqlState = SqlState("2BP01");
    pub const AMBIGUOUS_COLUMN: SqlState = SqlState("42702");
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState("22023");
    pub const UNDEFINED_PARAMETER: SqlState = SqlState("42704");
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
    pub const UNIQUE_VIOLATION: SqlState = SqlState("23505");
    pub const NOT_NULL_VIOLATION: SqlState = SqlState("23502");
    pub const CHECK_VIOLATION: SqlState = SqlState("23514");
    pub const INVALID_TEXT_REPRESENTATION: SqlState = SqlState("22P02");
    pub const NUMERIC_VALUE_OUT_OF_RANGE: SqlState = SqlState("22003");
    pub const STRING_DATA_RIGHT_TRUNCATION: SqlState = SqlState("22001");
    pub const DIVISION_BY_ZERO: SqlState = SqlState("22012");
    pub const INVALID_DATETIME_FORMAT: SqlState = SqlState("22007");
    pub const DATETIME_FIELD_OVERFLOW: SqlState = SqlState("22008");
    pub const DATA_EXCEPTION: SqlState = SqlState("22000");
    pub const BAD_COPY_FILE_FORMAT: SqlState = SqlState("22P04");
    pub const CARDINALITY_VIOLATION: SqlState = SqlState("21000");
    pub const IN_FAILED_TRANSACTION: SqlState = SqlState("25P02");
    pub const ACTIVE_SQL_TRANSACTION: SqlState = SqlState("25001");
    pub const NO_ACTIVE_SQL_TRANSACTION: SqlState = SqlState("25P01");
    pub const SERIALIZATION_FAILURE: SqlState = SqlState("40001");
    pub const QUERY_CANCELED: SqlState = SqlState("57014");
    pub const PROTOCOL_VIOLATION: SqlState = SqlState("08P01");
    pub const CONNECTION_EXCEPTION: SqlState = SqlState("08000");
    pub const IO_ERROR: SqlState = SqlState("58030");
    pub const INTERNAL_ERROR: SqlState = SqlState("XX000");
    pub const DATA_CORRUPTED: SqlState = SqlState("XX001");

    pub fn code(&self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Freshet's error enum.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The user's statement is wrong (bad SQL, unknown object, constraint violation, bad value).
    #[error("{message}")]
    User {
        state: SqlState,
        message: String,
        detail: Option<String>,
    },
    /// The outside world failed: disk, network, an upstream system.
    #[error("{message}")]
    External {
        state: SqlState,
        message: String,
        retryable: bool,
    },
    /// A bug in Freshet.
    #[error("internal error (this is a bug in Freshet): {0}")]
    Internal(String),
}

impl Error {
    /// A user error with the given SQLSTATE.
    pub fn user(state: SqlState, message: impl Into<String>) -> Self {
        Error::User {
            state,
            message: message.into(),
            detail: None,
        }
    }

    /// A user error with a DETAIL line.
    pub fn user_detail(state: SqlState, message: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::User {
            state,
            message: message.into(),
            detail: Some(detail.into()),
        }
    }

    /// "X is not supported" (0A000).
    pub fn unsupported(what: impl fmt::Display) -> Self {
        Error::user(SqlState::FEATURE_NOT_SUPPORTED, format!("{what} is not supported"))
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Error::user(SqlState::SYNTAX_ERROR, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    pub fn io(context: impl fmt::Display, err: impl fmt::Display) -> Self {
        Error::External {
            state: SqlState::IO_ERROR,
            message: format!("{context}: {err}"),
            retryable: false,
        }
    }

    /// The SQLSTATE reported to clients.
    pub fn code(&self) -> SqlState {
        match self {
            Error::User { state, .. } | Error::External { state, .. } => *state,
            Error::Internal(_) => SqlState::INTERNAL_ERROR,
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            Error::User { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        Error::io("storage", e)
    }
}

impl From<sqlparser::parser::ParserError> for Error {
    fn from(e: sqlparser::parser::ParserError) -> Self {
        let msg = match e {
            sqlparser::parser::ParserError::ParserError(m) | sqlparser::parser::ParserError::TokenizerError(m) => m,
            sqlparser::parser::ParserError::RecursionLimitExceeded => "statement nests too deeply".into(),
        };
        Error::syntax(format!("syntax error: {msg}"))
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        crate::query::errors::from_datafusion(e)
    }
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        crate::query::errors::from_arrow(e)
    }
}
