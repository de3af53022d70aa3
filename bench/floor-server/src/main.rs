//! The smallest HTTP server that answers `GET /tasks/` like Tasklane's scenario 1: hyper (or
//! Rocket, below), one PostgreSQL statement per request (the server's list statement, limit
//! 50), the rows encoded as the same JSON. No authentication, logging, metrics or middleware: a floor for what any server
//! on this machine can do, to set Tasklane's figures against.
//!
//! ```sh
//! cargo build --release --manifest-path bench/floor-server/Cargo.toml
//! MODE=tp CONNS=16 READER=1 DATABASE_URL=postgres://... PORT=8791 \
//!     bench/floor-server/target/release/tasklane-floor-server
//! BENCH_LUA_DIR=bench/lua BENCH_TOKEN=x wrk -t2 -c64 -d8s -s bench/lua/list.lua http://127.0.0.1:8791
//! ```
//!
//! `MODE`: `tp` (tokio-postgres, a pool of `CONNS` connections, one statement on each at a
//! time), `tp-pipe` (tokio-postgres, `CONNS` shared connections, statements pipelined), `sqlx`
//! (sqlx connections in the same pool as `tp`). `READER` is the user whose tasks are listed.
//! `SQL` replaces the statement (same binds, same first seven columns). `HTTP`: `hyper` (the
//! default: hyper's own connection loop) or `rocket` (Rocket 0.5.1, the version Tasklane runs,
//! with one route and nothing attached: what Rocket itself costs per request, before
//! Tasklane's fairing, guards, access line and metrics). `bench/run.py` runs both, `tp-pipe`
//! with 2 connections and the statement the server sent.
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

/// The list statement: `SQL` from the environment (the harness passes the one Tasklane sent),
/// else this copy of it. Binds: the user, the limit, the offset.
fn sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| std::env::var("SQL").unwrap_or_else(|_| DEFAULT_SQL.to_owned()))
}

const DEFAULT_SQL: &str =
    "SELECT id, user_id, title, description, status, created_at, updated_at FROM tasks \
                   WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3";
const LIMIT: i64 = 50;

/// The allocator Tasklane runs with, so that the two differ only in what they do per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Serialize, sqlx::FromRow)]
struct Task {
    id: i64,
    title: String,
    description: Option<String>,
    status: String,
    user_id: i64,
    #[serde(serialize_with = "rfc3339")]
    created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "rfc3339")]
    updated_at: chrono::DateTime<chrono::Utc>,
}

/// Timestamps as Tasklane writes them (`tasklane::types`): one string, not chrono's dozen
/// pieces each escaped on its own.
fn rfc3339<S: serde::Serializer>(
    at: &chrono::DateTime<chrono::Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// Exclusive connections: a request takes one, runs its statement, gives it back.
struct Pool<T> {
    free: Mutex<Vec<T>>,
    permits: Semaphore,
}

impl<T> Pool<T> {
    async fn get(&self) -> T {
        self.permits.acquire().await.expect("never closed").forget();
        self.free.lock().await.pop().expect("a permit means a connection")
    }

    async fn put(&self, conn: T) {
        self.free.lock().await.push(conn);
        self.permits.add_permits(1);
    }
}

type Prepared = (tokio_postgres::Client, tokio_postgres::Statement);

enum Db {
    Tp(Pool<Prepared>),
    Pipelined(Vec<Prepared>, AtomicUsize),
    Sqlx(Pool<sqlx::PgConnection>),
}

fn task(row: &tokio_postgres::Row) -> Task {
    Task {
        id: row.get(0),
        user_id: row.get(1),
        title: row.get(2),
        description: row.get(3),
        status: row.get(4),
        created_at: row.get(5),
        updated_at: row.get(6),
    }
}

async fn list(db: &Db, reader: i64) -> Vec<Task> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&reader, &LIMIT, &0i64];
    match db {
        Db::Tp(pool) => {
            let conn = pool.get().await;
            let rows = conn.0.query(&conn.1, &params).await.expect("list");
            pool.put(conn).await;
            rows.iter().map(task).collect()
        }
        Db::Pipelined(conns, next) => {
            let conn = &conns[next.fetch_add(1, Ordering::Relaxed) % conns.len()];
            conn.0.query(&conn.1, &params).await.expect("list").iter().map(task).collect()
        }
        Db::Sqlx(pool) => {
            let mut conn = pool.get().await;
            let query = sqlx::query_as::<_, Task>(sql()).bind(reader).bind(LIMIT).bind(0i64);
            let rows = query.fetch_all(&mut conn).await.expect("list");
            pool.put(conn).await;
            rows
        }
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().map_or(default, |v| v.parse().ok().expect(name))
}

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let mode: String = env("MODE", "tp".to_owned());
    let conns: usize = env("CONNS", 16);
    let reader: i64 = env("READER", 1);
    let port: u16 = env("PORT", 8791);
    let db = match mode.as_str() {
        "sqlx" => {
            use sqlx::Connection;
            let mut all = Vec::new();
            for _ in 0..conns {
                all.push(sqlx::PgConnection::connect(&url).await.expect("connect"));
            }
            Db::Sqlx(Pool { free: Mutex::new(all), permits: Semaphore::new(conns) })
        }
        "tp" | "tp-pipe" => {
            let mut all = Vec::new();
            for _ in 0..conns {
                let (client, connection) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
                tokio::spawn(connection);
                let statement = client.prepare(sql()).await.expect("prepare");
                all.push((client, statement));
            }
            if mode == "tp" {
                Db::Tp(Pool { free: Mutex::new(all), permits: Semaphore::new(conns) })
            } else {
                Db::Pipelined(all, AtomicUsize::new(0))
            }
        }
        other => panic!("MODE: expected tp, tp-pipe or sqlx, got {other}"),
    };
    let db = Arc::new(db);
    if env("HTTP", "hyper".to_owned()) == "rocket" {
        return serve_rocket(db, reader, port).await;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    eprintln!("floor server: {mode}, {conns} connections, on 127.0.0.1:{port}");
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let db = db.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_: Request<Incoming>| {
                let db = db.clone();
                async move {
                    let tasks = list(&db, reader).await;
                    let body = serde_json::to_vec(&tasks).expect("encode");
                    let response = Response::builder()
                        .header("content-type", "application/json")
                        .header("x-total-count", tasks.len())
                        .body(Full::new(Bytes::from(body)))
                        .expect("response");
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The JSON body and its `X-Total-Count`.
#[derive(rocket::Responder)]
#[response(content_type = "json")]
struct Listed {
    body: Vec<u8>,
    count: rocket::http::Header<'static>,
}

#[rocket::get("/tasks")]
async fn rocket_list(db: &rocket::State<Arc<Db>>, reader: &rocket::State<i64>) -> Listed {
    let tasks = list(db, **reader).await;
    let count = rocket::http::Header::new("x-total-count", tasks.len().to_string());
    Listed { body: serde_json::to_vec(&tasks).expect("encode"), count }
}

/// For the harness scripts, which wait for `/health` before loading a server.
#[rocket::get("/health")]
fn rocket_health() -> &'static str {
    r#"{"status":"ok"}"#
}

async fn serve_rocket(db: Arc<Db>, reader: i64, port: u16) {
    let figment = rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("port", port))
        .merge(("log_level", "off"));
    eprintln!("floor server on Rocket, on 127.0.0.1:{port}");
    let _ = rocket::custom(figment)
        // An empty Shield replaces the default one, as in Tasklane.
        .attach(rocket::shield::Shield::new())
        .manage(db)
        .manage(reader)
        .mount("/", rocket::routes![rocket_list, rocket_health])
        .launch()
        .await
        .expect("launch");
}
