//! dlite-scheduler's configuration: a YAML file (`--config`) in the
//! vocabulary of KubeSchedulerConfiguration, overridden field by field by
//! flags, validated as a whole with errors that name the field.
//!
//! ```yaml
//! schedulerName: dlite-scheduler
//! percentageOfNodesToScore: 0        # 0 = adaptive, as upstream
//! parallelism: 2                     # threads that filter and score nodes
//! bindConcurrency: 128               # bindings in flight at once
//! clientConnection:
//!   qps: 50
//!   burst: 100
//! pluginWeights:
//!   TaintToleration: 3
//!   ImageLocality: 0                 # 0 = does not influence the choice
//! scoringStrategy:
//!   type: MostAllocated              # or LeastAllocated (default)
//!   resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use super::framework::{Profile, ResourceSpec, ScoringStrategy, ScoringStrategyType};
use super::plugins::names;

/// kube-scheduler's default client limits (docs/scheduler.md §5): QPS 50,
/// burst 100, shared with dlite-controller.
pub use crate::runtime::rate_limit::{DEFAULT_BURST, DEFAULT_QPS};
pub const DEFAULT_BIND_CONCURRENCY: usize = 128;
const MAX_PARALLELISM: usize = 64;
const MAX_BIND_CONCURRENCY: usize = 10_000;
const MAX_WEIGHT: i64 = 100;

/// Score plugins whose weight can be configured.
pub const SCORE_PLUGINS: &[&str] = &[
    names::TAINT_TOLERATION,
    names::NODE_AFFINITY,
    names::NODE_RESOURCES_FIT,
    names::POD_TOPOLOGY_SPREAD,
    names::INTER_POD_AFFINITY,
    names::NODE_RESOURCES_BALANCED_ALLOCATION,
    names::IMAGE_LOCALITY,
];

/// Command-line flags; each overrides the config file's field of the same
/// meaning.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Flags {
    /// YAML configuration file (see the README for its fields).
    #[arg(long, env = "DLITE_SCHEDULER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Schedule pods whose spec.schedulerName is this [default: dlite-scheduler].
    #[arg(long)]
    pub scheduler_name: Option<String>,
    /// Share of nodes to examine in large clusters, 0-100 (0: adaptive).
    #[arg(long, allow_negative_numbers = true)]
    pub percentage_of_nodes_to_score: Option<i64>,
    /// NodeResourcesFit scoring: LeastAllocated or MostAllocated.
    #[arg(long)]
    pub scoring_strategy: Option<String>,
    /// Score plugin weight as NAME=WEIGHT (repeatable), e.g. ImageLocality=0.
    #[arg(long = "plugin-weight", value_name = "NAME=WEIGHT")]
    pub plugin_weights: Vec<String>,
    /// --kube-api-qps and --kube-api-burst, shared with dlite-controller;
    /// they override clientConnection.qps and .burst.
    #[command(flatten)]
    pub rate: crate::runtime::rate_limit::RateLimitArgs,
    /// Threads that filter and score nodes [default: CPUs, at most 16].
    #[arg(long, allow_negative_numbers = true)]
    pub parallelism: Option<i64>,
    /// Bindings in flight at once [default: 128].
    #[arg(long, allow_negative_numbers = true)]
    pub bind_concurrency: Option<i64>,
    /// --kubeconfig and --context, shared with dlite-controller;
    /// --kubeconfig overrides clientConnection.kubeconfig.
    #[command(flatten)]
    pub client: crate::runtime::args::ClientArgs,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientConnectionFile {
    qps: Option<f64>,
    burst: Option<i64>,
    kubeconfig: Option<PathBuf>,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct ResourceFile {
    name: String,
    weight: i64,
}

#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct ScoringStrategyFile {
    #[serde(rename = "type")]
    type_: Option<String>,
    resources: Option<Vec<ResourceFile>>,
}

/// The file as written: everything optional, unknown fields rejected so a
/// typo is an error rather than a silently ignored setting.
#[derive(Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    scheduler_name: Option<String>,
    percentage_of_nodes_to_score: Option<i64>,
    parallelism: Option<i64>,
    bind_concurrency: Option<i64>,
    #[serde(default)]
    plugin_weights: BTreeMap<String, i64>,
    scoring_strategy: Option<ScoringStrategyFile>,
    client_connection: Option<ClientConnectionFile>,
}

/// The effective, validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    pub profile: Profile,
    pub qps: f64,
    pub burst: u32,
    pub parallelism: usize,
    pub bind_concurrency: usize,
    pub kubeconfig: Option<PathBuf>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            profile: Profile::default(),
            qps: DEFAULT_QPS,
            burst: DEFAULT_BURST,
            parallelism: default_parallelism(),
            bind_concurrency: DEFAULT_BIND_CONCURRENCY,
            kubeconfig: None,
        }
    }
}

fn default_parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16)
}

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path in the file, with the flag when the value came
    /// from one: `clientConnection.qps (--kube-api-qps)`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        // Boxed: serde-saphyr's error carries a source snippet and is large.
        source: Box<serde_saphyr::Error>,
    },
    #[error("invalid configuration: {}", join(.0))]
    Invalid(Vec<FieldError>),
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A value and where it came from, for error messages.
struct Sourced<T> {
    value: T,
    flag: Option<&'static str>,
}

fn pick<T>(flag_value: Option<T>, flag: &'static str, file_value: Option<T>) -> Option<Sourced<T>> {
    match flag_value {
        Some(value) => Some(Sourced {
            value,
            flag: Some(flag),
        }),
        None => file_value.map(|value| Sourced { value, flag: None }),
    }
}

struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: &str, flag: Option<&str>, message: String) {
        let field = match flag {
            Some(flag) => format!("{field} ({flag})"),
            None => field.to_string(),
        };
        self.0.push(FieldError { field, message });
    }
}

/// Whether `name` can be a `spec.schedulerName`: the API server requires a
/// DNS-1123 subdomain.
fn valid_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn parse_strategy(s: &str) -> Option<ScoringStrategyType> {
    match s {
        "LeastAllocated" => Some(ScoringStrategyType::LeastAllocated),
        "MostAllocated" => Some(ScoringStrategyType::MostAllocated),
        _ => None,
    }
}

impl SchedulerConfig {
    /// Reads `flags.config` if given, applies the flags over it, validates.
    pub fn load(flags: &Flags) -> Result<SchedulerConfig, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => ConfigFile::default(),
        };
        resolve(file, flags)
    }

    /// Parses a config file's text (no flags), validated.
    pub fn from_yaml(text: &str) -> Result<SchedulerConfig, ConfigError> {
        let file = serde_saphyr::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            source: Box::new(source),
        })?;
        resolve(file, &Flags::default())
    }

    pub fn scheduler_name(&self) -> &str {
        &self.profile.scheduler_name
    }
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(ConfigFile::default());
    }
    serde_saphyr::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

fn resolve(file: ConfigFile, flags: &Flags) -> Result<SchedulerConfig, ConfigError> {
    let mut errors = Errors(Vec::new());
    let mut config = SchedulerConfig::default();
    let client = file.client_connection.unwrap_or_default();

    if let Some(name) = pick(
        flags.scheduler_name.clone(),
        "--scheduler-name",
        file.scheduler_name,
    ) {
        if valid_dns_subdomain(&name.value) {
            config.profile.scheduler_name = name.value;
        } else {
            errors.add(
                "schedulerName",
                name.flag,
                format!(
                    "Invalid value: {:?}: must be a lowercase DNS-1123 subdomain (letters, digits, '-' and '.'), as spec.schedulerName is",
                    name.value
                ),
            );
        }
    }
    if let Some(p) = pick(
        flags.percentage_of_nodes_to_score,
        "--percentage-of-nodes-to-score",
        file.percentage_of_nodes_to_score,
    ) {
        if (0..=100).contains(&p.value) {
            config.profile.percentage_of_nodes_to_score = Some(p.value as u32).filter(|&v| v > 0);
        } else {
            errors.add(
                "percentageOfNodesToScore",
                p.flag,
                format!(
                    "Invalid value: {}: must be between 0 and 100 (0 means adaptive)",
                    p.value
                ),
            );
        }
    }
    if let Some(p) = pick(flags.parallelism, "--parallelism", file.parallelism) {
        if (1..=MAX_PARALLELISM as i64).contains(&p.value) {
            config.parallelism = p.value as usize;
        } else {
            errors.add(
                "parallelism",
                p.flag,
                format!(
                    "Invalid value: {}: must be between 1 and {MAX_PARALLELISM}",
                    p.value
                ),
            );
        }
    }
    if let Some(b) = pick(
        flags.bind_concurrency,
        "--bind-concurrency",
        file.bind_concurrency,
    ) {
        if (1..=MAX_BIND_CONCURRENCY as i64).contains(&b.value) {
            config.bind_concurrency = b.value as usize;
        } else {
            errors.add(
                "bindConcurrency",
                b.flag,
                format!(
                    "Invalid value: {}: must be between 1 and {MAX_BIND_CONCURRENCY}",
                    b.value
                ),
            );
        }
    }
    if let Some(q) = pick(flags.rate.kube_api_qps, "--kube-api-qps", client.qps) {
        match crate::runtime::rate_limit::check_qps(q.value) {
            Ok(qps) => config.qps = qps,
            Err(e) => errors.add("clientConnection.qps", q.flag, e),
        }
    }
    if let Some(b) = pick(flags.rate.kube_api_burst, "--kube-api-burst", client.burst) {
        match crate::runtime::rate_limit::check_burst(b.value) {
            Ok(burst) => config.burst = burst,
            Err(e) => errors.add("clientConnection.burst", b.flag, e),
        }
    }
    config.kubeconfig = flags.client.kubeconfig.clone().or(client.kubeconfig);

    // Weights: the file's, then each flag over it.
    let mut weights: Vec<(String, i64, Option<&'static str>)> = file
        .plugin_weights
        .into_iter()
        .map(|(k, v)| (k, v, None))
        .collect();
    for entry in &flags.plugin_weights {
        match entry
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim().parse::<i64>()))
        {
            Some((name, Ok(weight))) => {
                weights.retain(|(k, _, _)| k != name);
                weights.push((name.to_string(), weight, Some("--plugin-weight")));
            }
            _ => errors.add(
                "pluginWeights",
                Some("--plugin-weight"),
                format!("Invalid value: {entry:?}: expected NAME=WEIGHT, e.g. ImageLocality=2"),
            ),
        }
    }
    for (name, weight, flag) in weights {
        let field = format!("pluginWeights.{name}");
        if !SCORE_PLUGINS.contains(&name.as_str()) {
            errors.add(
                &field,
                flag,
                format!("not a score plugin; known: {}", SCORE_PLUGINS.join(", ")),
            );
        } else if !(0..=MAX_WEIGHT).contains(&weight) {
            errors.add(
                &field,
                flag,
                format!("Invalid value: {weight}: must be between 0 and {MAX_WEIGHT}"),
            );
        } else {
            config.profile.plugin_weights.insert(name, weight);
        }
    }

    let file_strategy = file.scoring_strategy.unwrap_or_default();
    if let Some(t) = pick(
        flags.scoring_strategy.clone(),
        "--scoring-strategy",
        file_strategy.type_,
    ) {
        match parse_strategy(&t.value) {
            Some(strategy) => config.profile.scoring_strategy.type_ = strategy,
            None => errors.add(
                "scoringStrategy.type",
                t.flag,
                format!(
                    "Unsupported value: {:?}: supported values: \"LeastAllocated\", \"MostAllocated\"",
                    t.value
                ),
            ),
        }
    }
    if let Some(resources) = file_strategy.resources {
        if resources.is_empty() {
            errors.add(
                "scoringStrategy.resources",
                None,
                "must name at least one resource".into(),
            );
        }
        let mut specs = Vec::new();
        for (i, r) in resources.into_iter().enumerate() {
            if r.name.trim().is_empty() {
                errors.add(
                    &format!("scoringStrategy.resources[{i}].name"),
                    None,
                    "must not be empty".into(),
                );
            }
            if !(1..=MAX_WEIGHT).contains(&r.weight) {
                errors.add(
                    &format!("scoringStrategy.resources[{i}].weight"),
                    None,
                    format!(
                        "Invalid value: {}: must be between 1 and {MAX_WEIGHT}",
                        r.weight
                    ),
                );
            }
            specs.push(ResourceSpec {
                name: r.name,
                weight: r.weight,
            });
        }
        config.profile.scoring_strategy = ScoringStrategy {
            type_: config.profile.scoring_strategy.type_,
            resources: specs,
        };
    }

    if errors.0.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(errors.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::DEFAULT_SCHEDULER_NAME;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: Flags,
    }

    fn flags(args: &[&str]) -> Flags {
        Cli::try_parse_from(std::iter::once("dlite-scheduler").chain(args.iter().copied()))
            .unwrap()
            .flags
    }

    fn invalid(result: Result<SchedulerConfig, ConfigError>) -> Vec<String> {
        match result {
            Err(ConfigError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = SchedulerConfig::load(&Flags::default()).unwrap();
        assert_eq!(c.scheduler_name(), DEFAULT_SCHEDULER_NAME);
        assert_eq!((c.qps, c.burst), (50.0, 100));
        assert_eq!(c.profile, Profile::default());
        assert!(c.parallelism >= 1);
    }

    #[test]
    fn file_then_flags() {
        let c = SchedulerConfig::from_yaml(
            "schedulerName: batch\n\
             percentageOfNodesToScore: 30\n\
             parallelism: 2\n\
             bindConcurrency: 16\n\
             clientConnection: {qps: 200, burst: 400}\n\
             pluginWeights: {ImageLocality: 0, TaintToleration: 5}\n\
             scoringStrategy:\n  type: MostAllocated\n  resources: [{name: cpu, weight: 2}]\n",
        )
        .unwrap();
        assert_eq!(c.scheduler_name(), "batch");
        assert_eq!(c.profile.percentage_of_nodes_to_score, Some(30));
        assert_eq!(
            (c.qps, c.burst, c.parallelism, c.bind_concurrency),
            (200.0, 400, 2, 16)
        );
        assert_eq!(
            crate::scheduler::plugins::registry::weight(&c.profile, names::IMAGE_LOCALITY),
            0
        );
        assert_eq!(
            crate::scheduler::plugins::registry::weight(&c.profile, names::TAINT_TOLERATION),
            5
        );
        assert_eq!(
            crate::scheduler::plugins::registry::weight(&c.profile, names::NODE_AFFINITY),
            2,
            "defaults stay"
        );
        assert_eq!(
            c.profile.scoring_strategy.type_,
            ScoringStrategyType::MostAllocated
        );
        assert_eq!(
            c.profile.scoring_strategy.resources,
            [ResourceSpec {
                name: "cpu".into(),
                weight: 2
            }]
        );

        let dir = std::env::temp_dir().join(format!("dlite-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(&path, "schedulerName: batch\nclientConnection: {qps: 200}\npluginWeights: {ImageLocality: 3}\n").unwrap();
        let c = SchedulerConfig::load(&flags(&[
            "--config",
            path.to_str().unwrap(),
            "--scheduler-name",
            "other",
            "--kube-api-qps",
            "75",
            "--plugin-weight",
            "ImageLocality=4",
            "--scoring-strategy",
            "MostAllocated",
        ]))
        .unwrap();
        assert_eq!(c.scheduler_name(), "other", "flags win");
        assert_eq!(c.qps, 75.0);
        assert_eq!(c.burst, DEFAULT_BURST);
        assert_eq!(
            crate::scheduler::plugins::registry::weight(&c.profile, names::IMAGE_LOCALITY),
            4
        );
        assert_eq!(
            c.profile.scoring_strategy.type_,
            ScoringStrategyType::MostAllocated
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            invalid(SchedulerConfig::from_yaml(
                "schedulerName: Not_Valid\n\
                 percentageOfNodesToScore: 150\n\
                 parallelism: 0\n\
                 clientConnection: {qps: 0, burst: -1}\n\
                 pluginWeights: {Foo: 1, ImageLocality: 101}\n\
                 scoringStrategy: {type: Balanced, resources: [{name: '', weight: 0}]}\n"
            )),
            [
                "schedulerName: Invalid value: \"Not_Valid\": must be a lowercase DNS-1123 subdomain (letters, digits, '-' and '.'), as spec.schedulerName is",
                "percentageOfNodesToScore: Invalid value: 150: must be between 0 and 100 (0 means adaptive)",
                "parallelism: Invalid value: 0: must be between 1 and 64",
                "clientConnection.qps: Invalid value: 0: must be greater than 0",
                "clientConnection.burst: Invalid value: -1: must be at least 1",
                "pluginWeights.Foo: not a score plugin; known: TaintToleration, NodeAffinity, NodeResourcesFit, PodTopologySpread, InterPodAffinity, NodeResourcesBalancedAllocation, ImageLocality",
                "pluginWeights.ImageLocality: Invalid value: 101: must be between 0 and 100",
                "scoringStrategy.type: Unsupported value: \"Balanced\": supported values: \"LeastAllocated\", \"MostAllocated\"",
                "scoringStrategy.resources[0].name: must not be empty",
                "scoringStrategy.resources[0].weight: Invalid value: 0: must be between 1 and 100",
            ]
        );
        assert_eq!(
            invalid(SchedulerConfig::load(&flags(&[
                "--kube-api-qps",
                "-5",
                "--plugin-weight",
                "ImageLocality",
                "--percentage-of-nodes-to-score",
                "-1",
            ]))),
            [
                "percentageOfNodesToScore (--percentage-of-nodes-to-score): Invalid value: -1: must be between 0 and 100 (0 means adaptive)",
                "clientConnection.qps (--kube-api-qps): Invalid value: -5: must be greater than 0",
                "pluginWeights (--plugin-weight): Invalid value: \"ImageLocality\": expected NAME=WEIGHT, e.g. ImageLocality=2",
            ]
        );
        let err = SchedulerConfig::load(&flags(&["--scheduler-name", ""])).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "invalid configuration: schedulerName (--scheduler-name): Invalid value: \"\""
            ),
            "{err}"
        );
    }

    #[test]
    fn typos_in_the_file_are_errors() {
        let err = SchedulerConfig::from_yaml("percentageOfNodeToScore: 10\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("unknown field `percentageOfNodeToScore`"),
            "{msg}"
        );
        let err = SchedulerConfig::from_yaml("clientConnection: {qsp: 10}\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `qsp`"), "{err}");
        let missing = SchedulerConfig::load(&Flags {
            config: Some(PathBuf::from("/nonexistent/dlite.yaml")),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("reading /nonexistent/dlite.yaml: "),
            "{missing}"
        );
    }
}
