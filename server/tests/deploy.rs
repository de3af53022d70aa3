//! Static checks of the container files, since no Docker engine runs where CI does: the compose
//! services, their health checks and variables, and the Dockerfile's stages and user.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose() -> Yaml {
    YamlLoader::load_from_str(&repo_file("docker-compose.yml")).expect("valid YAML").remove(0)
}

fn strings(yaml: &Yaml) -> Vec<String> {
    match yaml {
        Yaml::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
        Yaml::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[test]
fn compose_has_db_redis_and_server_with_health_checks() {
    let compose = compose();
    let services = &compose["services"];
    let db = &services["db"];
    assert!(db["image"].as_str().unwrap().starts_with("postgres:"));
    assert!(strings(&db["healthcheck"]["test"]).join(" ").contains("pg_isready"));
    assert!(
        strings(&db["volumes"]).iter().any(|v| v.ends_with(":/var/lib/postgresql/data")),
        "db keeps a volume"
    );
    assert!(!compose["volumes"]["pgdata"].is_badvalue());

    let redis = &services["redis"];
    assert!(redis["image"].as_str().unwrap().starts_with("redis:"));
    assert!(strings(&redis["healthcheck"]["test"]).join(" ").contains("redis-cli ping"));

    let server = &services["server"];
    assert_eq!(server["build"].as_str(), Some("."));
    assert_eq!(strings(&server["ports"]), vec!["8000:8000"]);
    for dep in ["db", "redis"] {
        assert_eq!(server["depends_on"][dep]["condition"].as_str(), Some("service_healthy"), "{dep}");
    }
    let env = &server["environment"];
    assert!(env["DATABASE_URL"].as_str().unwrap().starts_with("postgres://"));
    assert!(env["DATABASE_URL"].as_str().unwrap().contains("@db:5432/"));
    assert_eq!(env["REDIS_URL"].as_str(), Some("redis://redis:6379"));
    // SECRET_KEY must come from the user: compose refuses to start without it (`:?`).
    assert!(env["SECRET_KEY"].as_str().unwrap().starts_with("${SECRET_KEY:?"), "{:?}", env["SECRET_KEY"]);
}

#[test]
fn env_example_documents_every_variable() {
    let example = repo_file(".env.example");
    let readme = repo_file("README.md");
    // Every setting the server reads, and Rocket's, the log's and the traces' that operators set
    // most.
    let mut variables = tasklane_server::Config::variables();
    variables.extend(
        [
            "ROCKET_ADDRESS",
            "ROCKET_PORT",
            "ROCKET_IP_HEADER",
            "RUST_LOG",
            "LOG_FORMAT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_SERVICE_NAME",
        ]
        .map(str::to_owned),
    );
    for var in variables {
        assert!(example.contains(&format!("{var}=")), ".env.example lacks {var}");
        assert!(readme.contains(&format!("`{var}`")), "README's configuration table lacks {var}");
    }
    // Every variable compose passes to the server is one the example documents.
    let compose = compose();
    if let Yaml::Hash(env) = &compose["services"]["server"]["environment"] {
        for key in env.keys() {
            let key = key.as_str().unwrap();
            assert!(example.contains(key), ".env.example lacks {key}");
        }
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_health_check() {
    let dockerfile = repo_file("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let stages: Vec<&str> = lines.iter().filter(|l| l.starts_with("FROM ")).copied().collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[0].ends_with(" AS build"));
    assert!(stages[1].ends_with(" AS runtime"));
    assert!(dockerfile.contains("cargo build --release"));
    assert!(dockerfile.contains("COPY --from=build"));
    // The last USER before the entry point is not root.
    let runtime = dockerfile.split(stages[1]).nth(1).unwrap();
    let user = runtime.lines().map(str::trim).rev().find(|l| l.starts_with("USER ")).expect("a USER line");
    assert!(!matches!(user, "USER root" | "USER 0"), "{user}");
    assert!(runtime.contains("HEALTHCHECK") && runtime.contains("healthcheck"), "HEALTHCHECK on /health");
    assert!(runtime.contains("ROCKET_ADDRESS=0.0.0.0") && runtime.contains("ROCKET_PORT=8000"));
    assert!(runtime.contains("EXPOSE 8000"));
}
