//! Custom client: the SDK over a `reqwest::Client` you configure yourself, handed to
//! `Client::builder(url).http_client(..)`. Do this to set timeouts, a proxy, a user agent, extra
//! root certificates, or to share one connection pool with the rest of your application.
//!
//! Start a server, then run the example against it:
//!
//! ```sh
//! cargo run -p tasklane-server                           # terminal 1
//! cargo run -p tasklane-examples --bin custom_client     # terminal 2
//! ```
//!
//! By default reqwest takes its proxy from `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`; this
//! example goes through the proxy named by `TASKLANE_PROXY` when it is set, and straight to
//! the server otherwise. `TASKLANE_URL` points it at another server; the account is
//! `custom-client-demo` unless `TASKLANE_USER` and `TASKLANE_PASSWORD` name another.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use tasklane::{reqwest, Client};

/// What this program calls itself in each request's `User-Agent`.
const USER_AGENT: &str = concat!("tasklane-custom-client-example/", env!("CARGO_PKG_VERSION"));

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => tasklane_examples::report("custom_client", &*err),
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let url = tasklane_examples::server_url();
    let (username, password) = tasklane_examples::demo_account("custom-client-demo");

    let http = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        // Give up on a server that does not accept the connection within 3 s, and on any
        // request that is not answered within 10 s (the SDK's retry policy then takes over).
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        // Close pooled connections idle for 30 s, before a proxy or load balancer drops them.
        .pool_idle_timeout(Duration::from_secs(30));
    let http = match std::env::var("TASKLANE_PROXY") {
        Ok(proxy) => http.proxy(reqwest::Proxy::all(&proxy)?),
        Err(_) => http.no_proxy(),
    };
    // The reqwest client is itself cheap to clone: keep a clone for your other HTTP calls.
    let client = Client::builder(&url).http_client(http.build()?).build()?;

    let health = client.health().await?;
    println!("{url} is {} (asked as {USER_AGENT})", health.status);

    tasklane_examples::register_or_login(&client, &username, &password).await?;
    let me = client.me().await?;
    println!("logged in as {} (user #{}) through the custom client", me.username, me.id);

    client.logout().await?;
    println!("logged out");
    Ok(())
}
