//! The catcher that gives Rocket's own errors (unknown route, wrong method, failed guard,
//! panic) the problem shape, and what Rocket's router leaves to it: the `Allow` list of a known
//! path requested with the wrong method, and the name of a path parameter that is not an id.

use rocket::http::{Method, Status};
use rocket::{Catcher, Request};

use crate::error::ApiError;

/// Every status Rocket raises itself ends here.
#[rocket::catch(default)]
fn problem_catcher(status: Status, req: &Request<'_>) -> ApiError {
    if let Some(err) = ApiError::stashed(req, status) {
        return err;
    }
    if status == Status::BadRequest && crate::middleware::salvaged(req) {
        // Rocket could not parse the request line: a method it does not know (such as
        // `QUERY`), or a target without a path. On a path the app serves, that is a 405 like
        // any other wrong method; on any other path, a 404 like any other unknown route.
        let allowed = allowed_methods(req);
        if !allowed.is_empty() {
            return ApiError::MethodNotAllowed(allowed);
        }
        return ApiError::for_status(Status::NotFound);
    }
    if status == Status::NotFound {
        let allowed = allowed_methods(req);
        if !allowed.is_empty() && !allowed.contains(&req.method()) {
            return ApiError::MethodNotAllowed(allowed);
        }
    }
    if status == Status::UnprocessableEntity {
        // A path that a route names exactly (`/tasks/changes`) asked with another method: 405,
        // not the id it is not, for the route beside it (`/tasks/<id>`).
        let exact = exact_route_methods(req);
        if !exact.is_empty() && !exact.contains(&req.method()) {
            return ApiError::MethodNotAllowed(exact);
        }
        return ApiError::Validation(malformed_path_params(req));
    }
    if status == Status::InternalServerError {
        return ApiError::Internal(format!(
            "{} {} failed (handler panic or bad responder)",
            req.method(),
            req.uri()
        ));
    }
    ApiError::for_status(status)
}

/// The catchers to register at `/`.
pub fn catchers() -> Vec<Catcher> {
    rocket::catchers![problem_catcher]
}

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

/// The methods of the routes without parameters that name this request's path exactly.
fn exact_route_methods(req: &Request<'_>) -> Vec<Method> {
    let path = req.uri().path().as_str();
    let mut methods: Vec<Method> = req
        .rocket()
        .routes()
        .filter(|r| !r.uri.path().contains('<') && route_matches(r.uri.path(), path))
        .map(|r| r.method)
        .collect();
    if methods.contains(&Method::Get) {
        methods.push(Method::Head);
    }
    methods.sort_by_key(|m| m.as_str());
    methods.dedup();
    methods
}

/// The methods the app serves at this request's path; empty for an unknown path.
fn allowed_methods(req: &Request<'_>) -> Vec<Method> {
    // A path a route names exactly is that route's (`/tasks/changes`), not the `/tasks/<id>`
    // beside it.
    let exact = exact_route_methods(req);
    if !exact.is_empty() {
        return exact;
    }
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
fn malformed_path_params(req: &Request<'_>) -> Vec<tasklane::types::FieldError> {
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
