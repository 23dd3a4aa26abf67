//! JSON Schemas of the reports, generated from their types (schemars), with the three
//! provenance keys every JSON report starts with. `udprange schema COMMAND` prints one; the
//! same text is committed in `schemas/COMMAND.schema.json`, and a test keeps both equal and
//! validates real outputs against them.

use schemars::JsonSchema;

/// The commands with a JSON report; `merge` reports what `simulate` does.
pub const COMMANDS: [&str; 5] = ["plan", "simulate", "merge", "blast", "audit"];

fn of<T: JsonSchema>(command: &str) -> schemars::Schema {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.insert(
        "title".into(),
        format!("udprange {command} --format json").into(),
    );
    let object = schema.as_object_mut().expect("a report is an object");
    let properties = object
        .entry("properties")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(properties) = properties.as_object_mut() {
        properties.insert(
            "udprange_version".into(),
            serde_json::json!({"type": "string", "description": "The udprange that wrote the report."}),
        );
        properties.insert(
            "command_line".into(),
            serde_json::json!({"type": "string", "description": "The command line, as a POSIX shell reads it back."}),
        );
        properties.insert(
            "started_at".into(),
            serde_json::json!({"type": "string", "description": "When the run started, RFC 3339 in UTC.", "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z$"}),
        );
    }
    let required = object
        .entry("required")
        .or_insert_with(|| serde_json::json!([]));
    if let Some(required) = required.as_array_mut() {
        for key in ["udprange_version", "command_line", "started_at"] {
            required.push(key.into());
        }
    }
    schema
}

/// Every object with named properties takes no others: a renamed or added key is a
/// change of the report's vocabulary, and the schema says so.
fn closed(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            if object.contains_key("properties") && !object.contains_key("additionalProperties") {
                object.insert("additionalProperties".into(), false.into());
            }
            for child in object.values_mut() {
                closed(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(closed),
        _ => {}
    }
}

/// The schema of `command`'s JSON report, as pretty JSON; `None` for a command without one.
pub fn schema_text(command: &str) -> Option<String> {
    let schema = match command {
        "plan" => of::<crate::report::PlanReport>(command),
        "simulate" | "merge" => of::<crate::sim::Summary>(command),
        "blast" => of::<crate::blast::BlastReport>(command),
        "audit" => of::<super::audit::AuditReport>(command),
        _ => return None,
    };
    let mut value = serde_json::to_value(&schema).expect("schemas serialize");
    closed(&mut value);
    let mut text = serde_json::to_string_pretty(&value).expect("schemas serialize");
    text.push('\n');
    Some(text)
}
