//! The log: its filter, and its format (text, or one JSON object per line).

/// The log filter when `RUST_LOG` is unset: our events at `info` (one line per request, in its
/// span), Rocket's start-up report, but not Rocket's own per-request lines (`rocket::server::_`: "Matched", "Outcome", "Response succeeded", catcher
/// and failed-guard notices, and "No matching routes" at `error` with the whole query string,
/// for every 404 and for every HEAD answered by its GET route). They repeat what the access
/// line says, cost a write each, and would let any client fill the error log (and put a
/// secret sent in a query string there). A handler that panics still shows: the access line
/// has the 500, and the panic message goes to stderr. PostgreSQL's notices at `info` are off
/// too: the migrator's `CREATE TABLE IF NOT EXISTS` draws "relation already exists, skipping"
/// at every start.
pub const DEFAULT_LOG_FILTER: &str = "info,rocket::server=error,rocket::server::_=off,rocket::shield=warn,\
     tasklane_server::auth::_=error,tasklane_server::tasks::_=error,tasklane_server::ops::_=error,\
     sqlx::postgres::notice=warn";

/// Installs the log subscriber: `LOG_FORMAT=json` for one JSON object per line, else text
/// (coloured only on a terminal). `RUST_LOG` filters (default [`DEFAULT_LOG_FILTER`]).
pub fn init_logging() -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // Unset or empty (as compose passes an unset variable) means the default.
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::try_new(&directives).map_err(|e| format!("RUST_LOG: {e} in {directives:?}"))?
        }
        _ => EnvFilter::new(DEFAULT_LOG_FILTER),
    };
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stdout().is_terminal());
    match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().flatten_event(true).with_current_span(true).init(),
        Ok("text") | Err(_) => builder.init(),
        Ok(other) => return Err(format!("LOG_FORMAT: expected text or json, got {other:?}")),
    }
    Ok(())
}
