//! Logging set-up shared by the binaries: `RUST_LOG`-style filtering, and JSON lines when
//! `LOG_FORMAT=json` (for log shippers).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset or empty (as
/// `RUST_LOG=` in a `.env` copied from `.env.example` leaves it); a filter that does not parse is
/// reported on stderr and replaced by the default.
pub fn init_logging(default_filter: &str) {
    let filter = match crate::config::Env.raw("RUST_LOG") {
        Some(spec) => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!(
                "RUST_LOG={spec:?} is not a valid log filter ({e}); using {default_filter:?}"
            );
            EnvFilter::new(default_filter)
        }),
        None => EnvFilter::new(default_filter),
    };
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests start several components in one process) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}
