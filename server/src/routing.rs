//! What Rocket's router leaves to us: the `Allow` list of a known path requested with the wrong method, and the `X-Request-Id` of every
//! response.

use std::time::Instant;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::{Header, Method};
use rocket::{Data, Request, Response};

/// Whether a route path such as `/tasks/<id>` matches a request path such as `/tasks/7`.
/// A trailing slash is not significant, as in Rocket's own matching (`/tasks` is `/tasks/`).
fn route_matches(route_path: &str, request_path: &str) -> bool {
    let trim = |p: &'_ str| if p.len() > 1 { p.trim_end_matches('/').to_owned() } else { p.to_owned() };
    let (route_path, request_path) = (trim(route_path), trim(request_path));
    let mut route = route_path.split('/');
    let mut request = request_path.split('/');
    loop {
        match (route.next(), request.next()) {
            (None, None) => return true,
            (Some(r), _) if r.starts_with('<') && r.ends_with("..>") => return true,
            (Some(r), Some(q)) if r.starts_with('<') && r.ends_with('>') && !q.is_empty() => {}
            (Some(r), Some(q)) if r == q => {}
            _ => return false,
        }
    }
}

/// The methods the app serves at this request's path; empty for an unknown path.
pub fn allowed_methods(req: &Request<'_>) -> Vec<Method> {
    let path = req.uri().path().as_str();
    let mut methods: Vec<Method> =
        req.rocket().routes().filter(|r| route_matches(r.uri.path(), path)).map(|r| r.method).collect();
    if methods.contains(&Method::Get) {
        // Rocket answers HEAD for every GET route.
        methods.push(Method::Head);
    }
    methods.sort_by_key(|m| m.as_str());
    methods.dedup();
    methods
}

/// Path parameters of this request that are not the integers the matching route expects. Every
/// dynamic path segment of this API is an id, so Rocket's bare 422 for a bad one can name it.
pub fn malformed_path_params(req: &Request<'_>) -> Vec<tasklane::types::FieldError> {
    let path = req.uri().path().as_str();
    let Some(route) =
        req.rocket().routes().find(|r| r.method == req.method() && route_matches(r.uri.path(), path))
    else {
        return Vec::new();
    };
    route
        .uri
        .path()
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(pattern, value)| {
            let name = pattern.strip_prefix('<')?.strip_suffix('>')?;
            (!name.ends_with("..") && value.parse::<i64>().is_err())
                .then(|| tasklane::types::FieldError::new(name, "must be an integer"))
        })
        .collect()
}

/// Per-request bookkeeping: the request id and the start time.
struct RequestMeta {
    id: String,
    started: Instant,
}

/// The id of the request being served: the client's `X-Request-Id` when it is 1–128 characters
/// of `[A-Za-z0-9._:-]`, else a generated one.
pub fn request_id<'r>(req: &'r Request<'_>) -> &'r str {
    &meta(req).id
}

fn meta<'r>(req: &'r Request<'_>) -> &'r RequestMeta {
    req.local_cache(|| {
        let given = req.headers().get_one("X-Request-Id").filter(|id| {
            (1..=128).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        });
        RequestMeta {
            id: given.map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned),
            started: Instant::now(),
        }
    })
}

/// Tags each request with its id and logs each response.
pub struct RequestFairing;

#[rocket::async_trait]
impl Fairing for RequestFairing {
    fn info(&self) -> Info {
        Info { name: "request id, access log", kind: Kind::Request | Kind::Response }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        meta(req);
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let meta = meta(req);
        res.set_header(Header::new("X-Request-Id", meta.id.clone()));
        tracing::info!(
            request_id = %meta.id,
            method = %req.method(),
            path = %req.uri().path(),
            status = res.status().code,
            latency_us = meta.started.elapsed().as_micros() as u64,
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::route_matches;

    #[test]
    fn route_paths_match_like_rocket() {
        assert!(route_matches("/tasks/<id>", "/tasks/7"));
        assert!(route_matches("/tasks/<id>", "/tasks/abc"));
        assert!(!route_matches("/tasks/<id>", "/tasks/"));
        assert!(!route_matches("/tasks/<id>", "/tasks/7/x"));
        assert!(route_matches("/tasks/", "/tasks/"));
        assert!(route_matches("/tasks", "/tasks/"));
        assert!(route_matches("/tasks/", "/tasks"));
        assert!(route_matches("/docs/<path..>", "/docs/a/b"));
        assert!(!route_matches("/auth/login", "/auth/logout"));
    }
}
