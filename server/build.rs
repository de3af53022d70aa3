// `sqlx::migrate!` embeds the migrations at compile time, but cargo only rebuilds when a file it
// knows of changes; this makes a new or edited migration rebuild the server too.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
