//! Runnable programs that show the Tasklane SDK in real use; see the files under `examples/`.

/// The server address every example talks to: `TASKLANE_URL`, or the server's default address.
pub fn server_url() -> String {
    std::env::var("TASKLANE_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".to_owned())
}
