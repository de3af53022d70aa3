//! CORS for the browser origins of `CORS_ALLOWED_ORIGINS`, by rocket_cors.

use rocket::{Build, Rocket};

use crate::error::ApiError;

/// Where rocket_cors mounts the route it sends refused requests to (`GET /cors/<status>`).
const CORS_ERROR_ROUTES: &str = "/cors";

/// CORS for the configured browser origins: rocket_cors, shown only the requests that are its
/// business.
///
/// rocket_cors refuses (403) any request whose `Origin` is not listed, but a browser sends
/// `Origin` with a page's own POST, PUT, PATCH and DELETE too: with origins configured, Swagger
/// UI at `/docs` and every other same-origin page could no longer write. And it takes any
/// OPTIONS with an `Origin` for a preflight (400 without `Access-Control-Request-Method`). So
/// it sees the requests from a listed origin (preflights and actual requests) and nothing else;
/// other requests go on as if they carried no `Origin`: they get no CORS headers, and the
/// browser keeps a cross-origin page from reading the answer, as the protocol intends.
///
/// Around it: an `Origin` that does not parse is a 400 (sent to rocket_cors's error route, with
/// its detail); a request for that error route itself is sent to it as a 404, since the route
/// answers anyone who asks (`/cors/0` as a 500); and a preflight answered with no route found
/// loses the 405's `Allow` and problem content type that rocket_cors leaves on its 204.
pub struct Cors {
    inner: rocket_cors::Cors,
    /// The listed origins, serialized as rocket_cors serializes a request's; `None` for `*`.
    /// The one check of an origin: rocket_cors, seeing only listed ones, allows any.
    allowed: Option<std::collections::HashSet<String>>,
}

/// Whether rocket_cors handles the request (see [`Cors`]).
struct CorsHandled(bool);

impl Cors {
    /// Sends `req` to rocket_cors's error route for `status`.
    fn route_to_error(req: &mut rocket::Request<'_>, status: u16) {
        if let Ok(uri) = rocket::http::uri::Origin::parse_owned(format!("{CORS_ERROR_ROUTES}/{status}")) {
            req.set_method(rocket::http::Method::Get);
            req.set_uri(uri);
        }
    }

    /// Whether rocket_cors is to handle `req` (its `Origin` parsed as `origin`).
    fn handles(&self, req: &rocket::Request<'_>, origin: &rocket_cors::headers::Origin) -> bool {
        let listed = self.allowed.as_ref().is_none_or(|allowed| allowed.contains(&origin.to_string()));
        let not_a_preflight = req.method() == rocket::http::Method::Options
            && req.headers().get_one("Access-Control-Request-Method").is_none();
        listed && !not_a_preflight
    }
}

#[rocket::async_trait]
impl rocket::fairing::Fairing for Cors {
    fn info(&self) -> rocket::fairing::Info {
        use rocket::fairing::Kind;
        rocket::fairing::Info { name: "CORS", kind: Kind::Ignite | Kind::Request | Kind::Response }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> rocket::fairing::Result {
        self.inner.on_ignite(rocket).await
    }

    async fn on_request(&self, req: &mut rocket::Request<'_>, data: &mut rocket::Data<'_>) {
        use std::str::FromStr;
        let rest = req.uri().path().as_str().strip_prefix(CORS_ERROR_ROUTES);
        let handled = if rest.is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
            Self::route_to_error(req, 404);
            false
        } else if let Some(origin) = req.headers().get_one("Origin") {
            match rocket_cors::headers::Origin::from_str(origin) {
                Ok(origin) => self.handles(req, &origin),
                Err(_) => {
                    let detail = format!("the Origin header is not a web origin: {origin:?}");
                    ApiError::BadRequest(detail).stash(req);
                    Self::route_to_error(req, 400);
                    false
                }
            }
        } else {
            false
        };
        if handled {
            self.inner.on_request(req, data).await;
        }
        req.local_cache(|| CorsHandled(handled));
    }

    async fn on_response<'r>(&self, req: &'r rocket::Request<'_>, res: &mut rocket::Response<'r>) {
        if !req.local_cache(|| CorsHandled(false)).0 {
            return;
        }
        self.inner.on_response(req, res).await;
        if req.method() == rocket::http::Method::Options && res.status() == rocket::http::Status::NoContent {
            res.remove_header("Allow");
            res.remove_header("Content-Type");
        }
    }
}

/// The CORS fairing for `origins` (none: no fairing): bearer tokens, no cookies, so no
/// credentials mode; the paging and request-id headers are exposed to scripts.
pub fn fairing(origins: &[String]) -> Result<Option<Cors>, String> {
    use rocket_cors::{AllowedHeaders, AllowedOrigins, CorsOptions};
    use std::str::FromStr;
    if origins.is_empty() {
        return Ok(None);
    }
    let invalid = |e: String| format!("CORS_ALLOWED_ORIGINS: {e}");
    let allowed = if origins.iter().any(|o| o == "*") {
        None
    } else {
        let allowed = origins
            .iter()
            .map(|o| rocket_cors::headers::Origin::from_str(o).map(|o| o.to_string()))
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        Some(allowed)
    };
    let options = CorsOptions {
        // Only listed origins reach rocket_cors (`Cors::handles`), so it need not check again.
        allowed_origins: AllowedOrigins::all(),
        allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .filter_map(|m| m.parse::<rocket::http::Method>().ok().map(Into::into))
            .collect(),
        allowed_headers: AllowedHeaders::some(&["Authorization", "Content-Type", "X-Request-Id"]),
        expose_headers: ["X-Total-Count", "Link", "Location", "X-Request-Id", "Retry-After"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        allow_credentials: false,
        // Browsers cap it anyway (Chromium at 2 h); an hour saves most preflights.
        max_age: Some(3600),
        fairing_route_base: CORS_ERROR_ROUTES.to_owned(),
        ..Default::default()
    };
    let inner = options.to_cors().map_err(|e| invalid(e.to_string()))?;
    Ok(Some(Cors { inner, allowed }))
}
