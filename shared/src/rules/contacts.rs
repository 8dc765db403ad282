//! contact.updated: what changed between the stored snapshot and the new contact, with dotted
//! paths for nested fields (docs/design.md §6).

use serde_json::{Map, Value};

/// Changed fields between two snapshots: dotted paths for nested objects (`custom_fields.tier`),
/// with the old and new values (`null` when absent).
pub fn contact_diff(previous: &Map<String, Value>, current: &Map<String, Value>) -> (Vec<String>, Value, Value) {
    let mut changed = Vec::new();
    let mut old = Map::new();
    let mut new = Map::new();
    diff_into("", previous, current, &mut changed, &mut old, &mut new);
    (changed, Value::Object(old), Value::Object(new))
}

fn diff_into(
    prefix: &str,
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    changed: &mut Vec<String>,
    old: &mut Map<String, Value>,
    new: &mut Map<String, Value>,
) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (a.get(key), b.get(key)) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => diff_into(&path, x, y, changed, old, new),
            // A nested object appearing or disappearing: report its fields one by one.
            (Some(Value::Object(x)), None) => diff_into(&path, x, &Map::new(), changed, old, new),
            (None, Some(Value::Object(y))) => diff_into(&path, &Map::new(), y, changed, old, new),
            (x, y) if x != y => {
                changed.push(path.clone());
                old.insert(path.clone(), x.cloned().unwrap_or(Value::Null));
                new.insert(path, y.cloned().unwrap_or(Value::Null));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contact_diffs_name_nested_fields() {
        let a = json!({"name": "Dana", "email": "d@x.com", "custom_fields": {"tier": "gold", "city": "Leeds"}});
        let b = json!({"name": "Dana S", "custom_fields": {"tier": "platinum", "city": "Leeds"}, "phone": "+1"});
        let (changed, old, new) = contact_diff(a.as_object().unwrap(), b.as_object().unwrap());
        assert_eq!(changed, vec!["custom_fields.tier", "email", "name", "phone"]);
        assert_eq!(
            old,
            json!({"custom_fields.tier": "gold", "email": "d@x.com", "name": "Dana", "phone": null})
        );
        assert_eq!(
            new,
            json!({"custom_fields.tier": "platinum", "email": null, "name": "Dana S", "phone": "+1"})
        );
        // No prior snapshot: every field is new.
        let (changed, old, _) = contact_diff(&Map::new(), b.as_object().unwrap());
        assert_eq!(
            changed,
            vec!["custom_fields.city", "custom_fields.tier", "name", "phone"]
        );
        assert_eq!(old["name"], Value::Null);
    }
}
