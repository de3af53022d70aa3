//! The schema migrations, on both backends: a database of the previous release, with its data,
//! migrated by this one, reads back unchanged, the new fields at their defaults.

mod common;

use std::path::{Path, PathBuf};

use common::{scratch_config, Backend, TestApp, SECRET};
use serde_json::{json, Value};
use sqlx::migrate::Migrator;
use tasklane_server::auth::jwt::{JwtKeys, TokenKind};
use tasklane_server::config::DatabaseUrl;

/// The first release's migrations only (`<backend>/20261126000001_init.sql`), in a directory of
/// their own.
async fn first_release(backend: &str) -> (tempfile::TempDir, Migrator) {
    let dir = tempfile::tempdir().unwrap();
    let source: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "migrations", backend, "20261126000001_init.sql"].iter().collect();
    std::fs::copy(&source, dir.path().join("20261126000001_init.sql")).unwrap();
    let migrator = Migrator::new(Path::new(dir.path())).await.unwrap();
    (dir, migrator)
}

/// What the first release wrote: a user and three tasks, one of them done.
const SEED: &str = "
    INSERT INTO users (username, password_hash, created_at) VALUES ('old', 'x', '2026-11-26T10:00:00+00:00');
    INSERT INTO tasks (user_id, title, description, status, created_at, updated_at) VALUES
        (1, 'Ship it', 'all of it', 'pending', '2026-11-26T10:01:00+00:00', '2026-11-26T10:01:00+00:00'),
        (1, 'Write the docs', NULL, 'in_progress', '2026-11-26T10:02:00+00:00', '2026-11-27T09:00:00+00:00'),
        (1, 'Buy ÄPFEL', NULL, 'done', '2026-11-26T10:03:00+00:00', '2026-11-28T12:30:00+00:00');
";

async fn previous_release_data_reads_back_with_defaults(backend: Backend) {
    let Some((config, scratch)) = scratch_config(backend).await else { return };
    let (_dir, migrator) = match &config.database_url {
        DatabaseUrl::Postgres(url) => {
            let (dir, migrator) = first_release("postgres").await;
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            migrator.run(&pool).await.unwrap();
            sqlx::raw_sql(SEED).execute(&pool).await.unwrap();
            pool.close().await;
            (dir, migrator)
        }
        DatabaseUrl::Sqlite(url) => {
            let (dir, migrator) = first_release("sqlite").await;
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
            let pool = sqlx::SqlitePool::connect_with(options.create_if_missing(true)).await.unwrap();
            migrator.run(&pool).await.unwrap();
            sqlx::raw_sql(SEED).execute(&pool).await.unwrap();
            pool.close().await;
            (dir, migrator)
        }
    };
    assert_eq!(migrator.iter().count(), 1, "the previous release's schema only");

    // This release starts on it and migrates it.
    let app = TestApp::with_config(config, backend, Some(scratch)).await;
    let (token, _) = JwtKeys::new(SECRET).issue(
        TokenKind::Access,
        1,
        None,
        chrono::Utc::now(),
        std::time::Duration::from_secs(60),
    );
    let res = app.get("/tasks/?sort=created_at", &token).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let tasks = res.json();
    let fields = |task: &Value| {
        ["title", "description", "status", "created_at", "updated_at"].map(|f| task[f].clone()).to_vec()
    };
    assert_eq!(
        tasks.as_array().unwrap().iter().map(fields).collect::<Vec<_>>(),
        vec![
            vec![
                json!("Ship it"),
                json!("all of it"),
                json!("pending"),
                json!("2026-11-26T10:01:00Z"),
                json!("2026-11-26T10:01:00Z")
            ],
            vec![
                json!("Write the docs"),
                Value::Null,
                json!("in_progress"),
                json!("2026-11-26T10:02:00Z"),
                json!("2026-11-27T09:00:00Z")
            ],
            vec![
                json!("Buy ÄPFEL"),
                Value::Null,
                json!("done"),
                json!("2026-11-26T10:03:00Z"),
                json!("2026-11-28T12:30:00Z")
            ],
        ],
        "read back unchanged"
    );
    for task in tasks.as_array().unwrap() {
        assert_eq!(
            (
                task["due_at"].clone(),
                task["priority"].clone(),
                task["labels"].clone(),
                task["version"].clone()
            ),
            (Value::Null, json!("none"), json!([]), json!(1))
        );
        let completed = if task["status"] == "done" { task["updated_at"].clone() } else { Value::Null };
        assert_eq!(
            task["completed_at"], completed,
            "done before the migration: completed when it last changed"
        );
    }
    // The new indexes cover the old rows: search, and the new sorts.
    let found = app.get("/tasks/?q=%C3%A4pfel", &token).await.json();
    assert_eq!(found[0]["title"], "Buy ÄPFEL");
    assert_eq!(app.get("/tasks/?q=docs", &token).await.json()[0]["title"], "Write the docs");
    assert_eq!(app.get("/tasks/?sort=-priority", &token).await.json().as_array().unwrap().len(), 3);
    // And they change like any task.
    let id = tasks[0]["id"].clone();
    let changed = app
        .send("PATCH", &format!("/tasks/{id}"), Some(&token), Some(json!({"labels": ["old"]})))
        .await
        .json();
    assert_eq!((changed["version"].clone(), changed["labels"].clone()), (json!(2), json!(["old"])));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_previous_release_data_reads_back_with_defaults() {
    previous_release_data_reads_back_with_defaults(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_previous_release_data_reads_back_with_defaults() {
    previous_release_data_reads_back_with_defaults(Backend::Postgres).await;
}
