//! HTTP API (axum): `GET /health`, `POST /v1/sql`.
//!
//! `POST /v1/sql` with `{"sql": "..."}` runs the statements in a fresh session and answers the
//! last one's result as `{"columns": [...], "rows": [[...]], "tag": "..."}`, or
//! `{"error": {"code": "<SQLSTATE>", "message": "..."}}` with status 400 (500 for internal errors).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::database::Database;
use crate::error::Error;
use crate::serve::text::format_cell;
use crate::session::{Output, Session};

#[derive(Deserialize)]
struct SqlRequest {
    sql: String,
}

pub fn router(db: Arc<Database>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/sql", post(sql))
        .with_state(db)
}

async fn health(State(db): State<Arc<Database>>) -> Json<Value> {
    Json(json!({"status": "ok", "epoch": db.coordinator.current().epoch}))
}

fn error_response(e: &Error) -> Response {
    let status = match e {
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Error::External { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::User { .. } => StatusCode::BAD_REQUEST,
    };
    (
        status,
        Json(json!({"error": {"code": e.code().code(), "message": e.to_string()}})),
    )
        .into_response()
}

/// A JSON value for `array[row]`: numbers and booleans natively, everything else as
/// PostgreSQL's text form.
fn json_cell(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => json!(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => json!(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => json!(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => json!(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => json!(array.as_primitive::<Float64Type>().value(row)),
        _ => format_cell(array, row).map(Value::String).unwrap_or(Value::Null),
    }
}

async fn sql(State(db): State<Arc<Database>>, Json(req): Json<SqlRequest>) -> Response {
    let mut session = Session::new(db, "freshet", "freshet");
    let results = session.run_sql(&req.sql).await;
    let mut last = json!({"columns": [], "rows": []});
    for r in results {
        match r {
            Err(e) => return error_response(&e),
            Ok(Output::Rows {
                schema,
                mut stream,
                tag,
            }) => {
                let columns: Vec<Value> = schema
                    .fields()
                    .iter()
                    .map(|f| json!({"name": f.name(), "type": crate::catalog::SqlType::from_field(f).name()}))
                    .collect();
                let mut rows = Vec::new();
                while let Some(batch) = stream.next().await {
                    let batch = match batch {
                        Ok(b) => b,
                        Err(e) => return error_response(&Error::from(e)),
                    };
                    for i in 0..batch.num_rows() {
                        rows.push(Value::Array(batch.columns().iter().map(|c| json_cell(c, i)).collect()));
                    }
                }
                last = json!({"columns": columns, "rows": rows, "tag": tag});
            }
            Ok(Output::Command { tag, rows }) => {
                let tag = match rows {
                    Some(n) => format!("{tag} {n}"),
                    None => tag,
                };
                last = json!({"columns": [], "rows": [], "tag": tag});
            }
            Ok(Output::TxnStart(tag)) | Ok(Output::TxnEnd(tag)) => {
                last = json!({"columns": [], "rows": [], "tag": tag})
            }
            Ok(Output::CopyIn { .. }) | Ok(Output::CopyOut { .. }) => {
                return error_response(&Error::unsupported("COPY over HTTP (use pgwire)"));
            }
            Ok(Output::Empty) => {}
        }
    }
    Json(last).into_response()
}

/// Serves HTTP on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    db: Arc<Database>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(db))
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}
