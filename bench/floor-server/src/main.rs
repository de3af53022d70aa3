//! The floor of the list benchmark: Rocket 0.5.1 answering `GET /tasks/` with Tasklane's own
//! SQL pool (`tasklane_server::store::pool`), driver (sqlx) and list statement, and the same
//! JSON, with no authentication, request id, log line, metrics or extra headers. What Tasklane
//! serves beyond that is its own work per request; `bench/run.py` reports the share.
//!
//! ```sh
//! cargo build --release -p tasklane-floor-server
//! DATABASE_URL=postgres://... READER=1 SQL="$(the server's list statement)" PORT=8791 \
//!     target/release/tasklane-floor-server
//! ```
//!
//! `SQL` binds the user, the limit and the offset, and selects a task's columns first.

use chrono::{DateTime, Utc};
use rocket::serde::json::Json;
use rocket::State;
use sqlx::PgConnection;
use tasklane::types::{Priority, Task};
use tasklane_server::store::pool::SqlPool;

/// The allocator Tasklane runs with, so that the two differ only in what they do per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor {
    pool: SqlPool<PgConnection>,
    sql: String,
    reader: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    user_id: i64,
    title: String,
    description: Option<String>,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    due_at: Option<DateTime<Utc>>,
    priority: i16,
    labels: String,
    completed_at: Option<DateTime<Utc>>,
    version: i64,
}

#[rocket::get("/tasks")]
async fn list(floor: &State<Floor>) -> Json<Vec<Task>> {
    let rows: Vec<Row> = sqlx::query_as(&floor.sql)
        .bind(floor.reader)
        .bind(50_i64)
        .bind(0_i64)
        .fetch_all(&floor.pool)
        .await
        .expect("the list statement");
    Json(
        rows.into_iter()
            .map(|r| Task {
                id: r.id,
                title: r.title,
                description: r.description,
                status: r.status.parse().expect("a status"),
                user_id: r.user_id,
                created_at: r.created_at,
                updated_at: r.updated_at,
                due_at: r.due_at,
                priority: Priority::from_rank(r.priority).expect("a priority"),
                labels: serde_json::from_str(&r.labels).expect("labels"),
                completed_at: r.completed_at,
                version: r.version,
            })
            .collect(),
    )
}

/// For the harness, which waits for `/health` before loading a server.
#[rocket::get("/health")]
fn health() -> &'static str {
    r#"{"status":"ok"}"#
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is required"))
}

#[rocket::launch]
fn rocket() -> _ {
    let options: sqlx::postgres::PgConnectOptions = env("DATABASE_URL").parse().expect("DATABASE_URL");
    let figment = rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("port", env("PORT").parse::<u16>().expect("PORT")))
        .merge(("log_level", "off"));
    rocket::custom(figment)
        // An empty Shield replaces the default one, as in Tasklane.
        .attach(rocket::shield::Shield::new())
        .attach(rocket::fairing::AdHoc::on_ignite("pool", move |rocket| async move {
            // Tasklane's default pool size.
            let pool = SqlPool::new(options, 16).expect("a pool");
            rocket.manage(Floor { pool, sql: env("SQL"), reader: env("READER").parse().expect("READER") })
        }))
        .mount("/", rocket::routes![list, health])
}
