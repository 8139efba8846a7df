//! The JSON Schema of the playbook format, for editors and CI linters.

use schemars::generate::SchemaSettings;

use crate::actions::ActionKind;
use crate::spec::PlaybookFile;

/// The schema, with each action's `with` parameters attached to its action id.
pub fn playbook_schema() -> serde_json::Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.root_schema_for::<PlaybookFile>().to_value();
    let mut rules = Vec::new();
    for action in ActionKind::ALL {
        let params = action.params_schema(&mut generator);
        rules.push(serde_json::json!({
            "if": { "properties": { "action": { "const": action.id() } }, "required": ["action"] },
            "then": { "properties": { "with": params } }
        }));
    }
    let ids: Vec<&str> = ActionKind::ALL.iter().map(|a| a.id()).collect();
    if let Some(step) = schema.pointer_mut("/$defs/StepFile") {
        step["allOf"] = serde_json::Value::Array(rules);
        step["properties"]["action"]["enum"] = serde_json::json!(ids);
    }
    let extra: serde_json::Map<String, serde_json::Value> = generator.take_definitions(true);
    if let Some(defs) = schema.get_mut("$defs").and_then(|d| d.as_object_mut()) {
        for (k, v) in extra {
            defs.entry(k).or_insert(v);
        }
    }
    schema
}
