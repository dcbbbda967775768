//! What the writing verbs print: kubectl's one-line message, or the object
//! with `-o yaml|json|name`; `--dry-run` marks the message as kubectl does.

use super::args::{DryRun, OutputFormat};
use super::{CliError, RESOURCE};
use crate::api::DeploymentLite;

/// The suffix kubectl appends to the message of a dry run.
fn dry_run_suffix(dry_run: DryRun) -> &'static str {
    match dry_run {
        DryRun::None => "",
        DryRun::Client => " (dry run)",
        DryRun::Server => " (server dry run)",
    }
}

/// The text for `obj` after `verb` ("paused", "image updated", ...).
/// managedFields are left out, as kubectl does unless asked.
pub fn render(
    obj: &DeploymentLite,
    name: &str,
    verb: &str,
    format: Option<OutputFormat>,
    dry_run: DryRun,
) -> Result<String, CliError> {
    let mut obj = obj.clone();
    obj.metadata.managed_fields = None;
    Ok(match format {
        None => format!("{RESOURCE}/{name} {verb}{}\n", dry_run_suffix(dry_run)),
        Some(OutputFormat::Name) => format!("{RESOURCE}/{name}\n"),
        Some(OutputFormat::Json) => {
            // kubectl indents JSON by four spaces.
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(&obj, &mut ser)
                .map_err(|e| CliError::msg(format!("encoding JSON: {e}")))?;
            let mut s = String::from_utf8(buf).expect("serde_json writes UTF-8");
            s.push('\n');
            s
        }
        Some(OutputFormat::Yaml) => {
            // Through a JSON value so keys come out sorted, as in kubectl's
            // YAML printer (which converts from JSON).
            let value = serde_json::to_value(&obj)
                .map_err(|e| CliError::msg(format!("encoding YAML: {e}")))?;
            serde_saphyr::to_string(&value)
                .map_err(|e| CliError::msg(format!("encoding YAML: {e}")))?
        }
    })
}
