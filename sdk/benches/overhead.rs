//! The SDK's per-call overhead: the same requests through `tasklane::Client` and through a
//! plain `reqwest::Client` (bearer header, JSON decode into the same types), against one local
//! server started in-process on SQLite.
//!
//!     cargo bench -p tasklane --bench overhead
//!
//! Each round times `CALLS` sequential calls per way, ways interleaved so drift hits both; the
//! figures are medians over `ROUNDS` rounds. Prints microseconds per call and the ratio.

use std::time::{Duration, Instant};

use tasklane::types::Task;
use tasklane::{Client, NewTask};

const CALLS: usize = 500;
const ROUNDS: usize = 7;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn time<F, Fut>(mut call: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    for _ in 0..CALLS {
        call().await;
    }
    started.elapsed().as_secs_f64() * 1e6 / CALLS as f64
}

#[tokio::main]
async fn main() {
    let server = tasklane_server::testing::TestServer::start().await;
    let base = server.url().to_owned();

    let sdk = Client::new(&base).unwrap();
    let tokens = sdk.register("bench", "correct horse").await.unwrap();
    let mut one = None;
    for i in 0..20 {
        one = Some(sdk.tasks().create(NewTask::new(format!("task {i}"))).await.unwrap().id);
    }
    let one = one.unwrap();
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let bearer = format!("Bearer {}", tokens.access_token().expose());

    let mut figures: Vec<(&str, Vec<f64>, Vec<f64>)> =
        vec![("GET /tasks/{id}", Vec::new(), Vec::new()), ("GET /tasks/ (20 tasks)", Vec::new(), Vec::new())];
    for _ in 0..ROUNDS {
        figures[0].1.push(time(|| async { sdk.tasks().get(one).await.map(drop).unwrap() }).await);
        figures[0].2.push(
            time(|| async {
                let res = plain
                    .get(format!("{base}/tasks/{one}"))
                    .header("Authorization", &bearer)
                    .send()
                    .await
                    .unwrap();
                assert!(res.status().is_success());
                res.json::<Task>().await.map(drop).unwrap();
            })
            .await,
        );
        figures[1].1.push(time(|| async { sdk.tasks().list().await.map(drop).unwrap() }).await);
        figures[1].2.push(
            time(|| async {
                let res = plain
                    .get(format!("{base}/tasks/"))
                    .header("Authorization", &bearer)
                    .send()
                    .await
                    .unwrap();
                assert!(res.status().is_success());
                let _total = res.headers().get("x-total-count").cloned();
                res.json::<Vec<Task>>().await.map(drop).unwrap();
            })
            .await,
        );
    }

    println!(
        "SDK overhead: {CALLS} sequential calls x {ROUNDS} rounds, median us/call (same process, SQLite)"
    );
    println!("{:<24} {:>12} {:>12} {:>8}", "request", "sdk", "reqwest", "ratio");
    for (name, sdk_us, plain_us) in figures {
        let (s, p) = (median(sdk_us), median(plain_us));
        println!("{name:<24} {s:>12.1} {p:>12.1} {:>7.3}x", s / p);
    }
}
