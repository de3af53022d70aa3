//! The Tasklane reference server: the HTTP API of `docs/API.md` on Rocket.
//!
//! [`build`] is the one place the app is assembled: it applies the migrations, hands the pools
//! to rocket_db_pools (opened at ignite, closed at shutdown), mounts each area's routes and
//! their OpenAPI document, Swagger UI at `/docs`, the problem-JSON catchers and the request
//! fairing. `main.rs` only reads the settings and launches.
//!
//! The request path reads straight down: route → guard (who is calling) → store trait → SQL.
//!
//! With the `testing` feature, `testing::TestServer` runs the server in-process on a temporary
//! SQLite database, for the tests of an application that uses the API.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod app;
pub mod auth;
pub mod body;
pub mod catchers;
pub mod config;
pub mod cors;
pub mod error;
pub mod keys;
pub mod launch;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod responders;
pub mod store;
pub mod tasks;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

/// The Rocket the server is built on: for fairings of one's own on the very same version (as
/// the `testing` feature's `TestServerBuilder::attach` takes), and the types of [`build`].
pub use rocket;

use rocket::fairing::AdHoc;
use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use rocket::{Build, Rocket};
use rocket_db_pools::Database;

use crate::app::{Redis, Sql};

pub use crate::app::App;
pub use crate::config::Config;
pub use crate::launch::{
    rocket_figment, spawn, with_tasklane_defaults, Running, StartError, SHUTDOWN_GRACE_SECS,
    SHUTDOWN_MERCY_SECS,
};

/// Builds the app on the environment's Rocket settings (`ROCKET_ADDRESS`, `ROCKET_PORT`, ...).
pub async fn build(config: Config) -> Result<Rocket<Build>, StartError> {
    build_with(config, rocket_figment()).await
}

/// Builds the app on the given Rocket settings (tests pick a port or a log level this way).
///
/// What can fail because of a setting is tried here, before Rocket ignites, so that it fails
/// with one line naming the variable: the signing key, Redis refusing the URL, and the
/// database (waited for, migrated).
pub async fn build_with(config: Config, figment: Figment) -> Result<Rocket<Build>, StartError> {
    let key = keys::signing_key(config.secret_key.as_ref().map(|k| k.expose()), &config.database_url)
        .map_err(StartError::KeyFile)?;
    if let Some(url) = &config.redis_url {
        let pool = store::RedisPool::new(url).map_err(|e| StartError::Redis(e.to_string()))?;
        pool.check().await.map_err(StartError::Redis)?;
    }
    let grace = figment.extract_inner::<u64>("shutdown.grace").unwrap_or(u64::from(SHUTDOWN_GRACE_SECS));
    let sql = store::Settings {
        url: config.database_url.clone(),
        max_connections: config.database_max_connections,
        startup_wait_seconds: config.database_startup_wait_seconds.as_secs(),
        shutdown_grace_seconds: grace,
    };
    store::migrate(&sql).await?;
    let cors = cors::fairing(&config.cors_origins()).map_err(StartError::Internal)?;

    let mut figment = figment.merge(Serialized::default("databases.sql", &sql));
    if let Some(url) = &config.redis_url {
        figment = figment
            .merge(Serialized::default("databases.redis.url", url))
            .merge(Serialized::default("databases.redis.shutdown_grace_seconds", grace));
    }
    let mut rocket = rocket::custom(figment);
    if config.redis_url.is_some() {
        rocket = rocket.attach(Redis::init());
    }
    rocket = rocket.attach(Sql::init()).attach(AdHoc::try_on_ignite("Tasklane", move |rocket| async move {
        match App::assemble(&rocket, &config, &key) {
            Some(app) => Ok(rocket.manage(app)),
            None => Err(rocket),
        }
    }));
    rocket = rocket.attach(AdHoc::on_liftoff("Tasklane: tombstones, live events", |rocket| {
        Box::pin(async move {
            app::prune_tombstones(rocket);
            if let Some(app) = rocket.state::<App>() {
                tokio::spawn(app.live.clone().listen(rocket.shutdown()));
            }
        })
    }));
    if let Some(cors) = cors {
        rocket = rocket.attach(cors);
    }

    let settings = rocket_okapi::settings::OpenApiSettings::default();
    let mut specs = Vec::new();
    for (base, (routes, spec)) in [
        ("/auth", auth::routes(&settings)),
        ("/tasks", tasks::routes(&settings)),
        ("/", ops::routes(&settings)),
    ] {
        rocket = rocket.mount(base, middleware::traced(routes));
        specs.push((base, spec));
    }
    let document = openapi::document(&specs).map_err(StartError::Internal)?;
    // Every route runs in its request's trace span (middleware::Traced).
    Ok(rocket
        .mount("/", middleware::traced(vec![document]))
        .mount("/docs", middleware::traced(openapi::swagger_ui()))
        .mount("/", middleware::traced(rocket::routes![openapi::docs_index, ops::scrape]))
        .register("/", catchers::catchers())
        .attach(middleware::RequestFairing)
        // `middleware::finish` sets the security headers (for requests Rocket could not parse
        // too); an empty Shield keeps Rocket from attaching its default one, which would set
        // them first and differently.
        .attach(rocket::shield::Shield::new()))
}

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "testing"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
