//! Every variable a document declares must be given a scalar (or nothing): no argument of this
//! schema takes a list or an input object, so such a value can only be refused. It is refused
//! here, before async-graphql validates the document, because that validation copies a
//! variable's value once per argument that uses it: a 60 KiB list used by a thousand fields
//! cost seconds of CPU before it was refused (found in review).

use async_graphql::{ServerError, Value, Variables, parser::types::ExecutableDocument};

use crate::error::document_refused;

/// Refuses a request that gives a list or an object to a variable its document declares.
pub fn check(document: &ExecutableDocument, variables: &Variables) -> Result<(), ServerError> {
    for (_, operation) in document.operations.iter() {
        for definition in &operation.node.variable_definitions {
            let name = &definition.node.name.node;
            if let Some(Value::List(_) | Value::Object(_)) = variables.get(name) {
                return Err(document_refused(
                    format!(
                        "Variable \"${name}\" is a list or an object; every argument here is \
                         a string, a number or a boolean."
                    ),
                    definition.pos,
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn refused(query: &str, variables: serde_json::Value) -> Option<String> {
        let document = parse_query(query).expect("the test document parses");
        check(&document, &Variables::from_json(variables))
            .err()
            .map(|error| error.message)
    }

    #[test]
    fn lists_and_objects_are_refused_and_scalars_pass() {
        let query = "query($n: Int, $a: String) { users(first: $n, after: $a) { totalCount } }";
        for scalar in [
            serde_json::json!({ "n": 5 }),
            serde_json::json!({ "n": null, "a": "x" }),
            serde_json::json!({ "n": "5", "a": true }),
            serde_json::json!({}),
            // Not declared: ignored, as GraphQL ignores it.
            serde_json::json!({ "other": [1, 2] }),
        ] {
            assert_eq!(refused(query, scalar.clone()), None, "{scalar}");
        }
        assert_eq!(
            refused(query, serde_json::json!({ "n": [[0], [0]] })).as_deref(),
            Some(
                "Variable \"$n\" is a list or an object; every argument here is a string, a \
                 number or a boolean."
            )
        );
        assert!(refused(query, serde_json::json!({ "a": { "x": 1 } })).is_some());
        // In any operation of the document.
        assert!(
            refused(
                "query A { me { id } } query B($n: Int) { users(first: $n) { totalCount } }",
                serde_json::json!({ "n": [1] })
            )
            .is_some()
        );
    }
}
