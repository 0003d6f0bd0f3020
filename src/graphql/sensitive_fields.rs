//! At most one of each code-sending, code-checking or account-changing mutation per operation
//! (`requestCode`, `verifyCode`, the phone change, `deleteAccount`), aliases and fragments
//! included. Each sending alias would send an SMS and each checking alias would be a guess, so
//! a document asking for more is refused before anything executes.

use std::collections::HashMap;

use async_graphql::{
    ServerError,
    parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet},
};

use crate::error::code;

/// Fields allowed once per operation.
const ONCE_PER_OPERATION: &[&str] = &[
    "requestCode",
    "verifyCode",
    "requestPhoneChange",
    "confirmPhoneChange",
    "deleteAccount",
];

/// How deep fragments are followed. The schema's recursive-depth limit (32) refuses deeper
/// documents anyway; this check runs before it, so it must not recurse without bound itself.
const MAX_NESTING: usize = 32;

/// Refuses a document whose mutations hold `requestCode` or `verifyCode` more than once, or
/// nest fragments too deeply to count them.
pub fn check(document: &ExecutableDocument) -> Result<(), ServerError> {
    for (_, operation) in document.operations.iter() {
        if operation.node.ty != OperationType::Mutation {
            continue;
        }
        for field in ONCE_PER_OPERATION {
            let mut memo = HashMap::new();
            let count = count_root_fields(
                document,
                &operation.node.selection_set.node,
                field,
                &mut memo,
                0,
            );
            let message = match count {
                Ok(count) if count <= 1 => continue,
                Ok(_) => format!("An operation may contain {field} only once."),
                // Refused, not passed: an uncounted fragment could hide a second one.
                Err(TooDeep) => "Fragments are nested too deeply.".to_owned(),
            };
            let mut error = ServerError::new(message, Some(operation.pos));
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", code::BAD_USER_INPUT);
            return Err(error);
        }
    }
    Ok(())
}

/// Fragments nested past [`MAX_NESTING`].
struct TooDeep;

/// Occurrences of `name` at the root of a selection set, following fragments. Each fragment's
/// count is worked out once (`memo`), so repeated spreads are cheap; a fragment that spreads
/// itself counts as 0 inside itself (such a document fails validation anyway).
fn count_root_fields(
    document: &ExecutableDocument,
    selection_set: &SelectionSet,
    name: &str,
    memo: &mut HashMap<String, Option<usize>>,
    nesting: usize,
) -> Result<usize, TooDeep> {
    if nesting > MAX_NESTING {
        return Err(TooDeep);
    }
    let mut total = 0;
    for selection in &selection_set.items {
        total += match &selection.node {
            Selection::Field(field) => usize::from(field.node.name.node.as_str() == name),
            Selection::InlineFragment(fragment) => count_root_fields(
                document,
                &fragment.node.selection_set.node,
                name,
                memo,
                nesting + 1,
            )?,
            Selection::FragmentSpread(spread) => {
                let fragment_name = spread.node.fragment_name.node.as_str();
                match memo.get(fragment_name) {
                    Some(Some(count)) => *count,
                    Some(None) => 0, // in progress: a cycle
                    None => {
                        memo.insert(fragment_name.to_owned(), None);
                        let count = match document.fragments.get(fragment_name) {
                            Some(f) => count_root_fields(
                                document,
                                &f.node.selection_set.node,
                                name,
                                memo,
                                nesting + 1,
                            )?,
                            None => 0,
                        };
                        memo.insert(fragment_name.to_owned(), Some(count));
                        count
                    }
                }
            }
        };
    }
    Ok(total)
}
