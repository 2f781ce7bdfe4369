//! Serving: the PostgreSQL wire protocol and HTTP, plus value formatting shared by both.

pub mod http;
pub mod pgwire;
pub mod text;
