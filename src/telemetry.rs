//! Logging and process plumbing shared by the binaries.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The `--log-level` flag, shared by both binaries.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// Log verbosity: error, warn, info, debug or trace, or a full filter
    /// such as `info,dlite=debug`. Takes precedence over RUST_LOG, which
    /// applies only when this flag is not given; without both: info.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "DLITE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// The filter in force: `--log-level`, else RUST_LOG, else `info`. A bad
/// value is an error naming where it came from, not a silent fallback.
pub fn filter(log_level: Option<&str>, rust_log: Option<&str>) -> anyhow::Result<EnvFilter> {
    let (source, directives) = match (log_level, rust_log) {
        (Some(level), _) => ("--log-level", level),
        (None, Some(env)) if !env.is_empty() => ("RUST_LOG", env),
        _ => return Ok(EnvFilter::new("info")),
    };
    // A lone word must be a level: EnvFilter would read "verbose" as a
    // target name and silently log nothing of ours.
    let is_word = directives.chars().all(|c| c.is_ascii_alphanumeric());
    if is_word
        && !["off", "error", "warn", "info", "debug", "trace"]
            .contains(&directives.to_ascii_lowercase().as_str())
    {
        anyhow::bail!(
            "{source}: invalid log level {directives:?}: use off, error, warn, info, debug or trace, or filter directives such as info,dlite=debug"
        );
    }
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| anyhow::anyhow!("{source}: invalid log level {directives:?}: {e}"))
}

/// Structured logs to stderr, filtered by [`filter`].
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(args.log_level.as_deref(), rust_log.as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C, so controllers can finish in-flight work.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_beats_rust_log_which_beats_the_default() {
        let f = |l: Option<&str>, e: Option<&str>| filter(l, e).unwrap().to_string();
        assert_eq!(f(None, None), "info");
        assert_eq!(f(None, Some("")), "info");
        assert_eq!(f(None, Some("warn")), "warn");
        assert_eq!(f(Some("debug"), Some("warn")), "debug");
        assert_eq!(f(Some("info,dlite=trace"), None), "dlite=trace,info");
        assert_eq!(f(Some("DEBUG"), None), "debug");
    }

    #[test]
    fn bad_levels_name_their_source() {
        let e = |l: Option<&str>, env: Option<&str>| filter(l, env).unwrap_err().to_string();
        assert!(
            e(Some("verbose"), None).starts_with(r#"--log-level: invalid log level "verbose""#),
            "{}",
            e(Some("verbose"), None)
        );
        assert!(e(None, Some("loud")).starts_with(r#"RUST_LOG: invalid log level "loud""#));
        assert!(e(Some("dlite=notalevel"), None).starts_with("--log-level: invalid log level"));
    }

    #[test]
    fn log_flags_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            log: LogArgs,
        }
        let t = T::try_parse_from(["t", "--log-level=debug", "--log-format", "json"]).unwrap();
        assert_eq!(t.log.log_level.as_deref(), Some("debug"));
        assert_eq!(t.log.log_format, LogFormat::Json);
        let t = T::try_parse_from(["t"]).unwrap();
        assert_eq!(t.log.log_level, None);
    }
}
